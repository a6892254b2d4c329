"""A search's settings (checked where they are made), its result, and the set-up checks on the cost model
and the target that run before any training."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import SEARCH_FORMAT
from ..costmodel.fit import CostModel, CostModelError
from ..detection.data import DataConfig
from ..limits import COUNT, COUNT0, NEGATIVE, POSITIVE, Number
from ..models.searched import SearchSpace
from ..run import warmup_cosine
from .controller import LinearCost

CHECKPOINT_FORMAT = SEARCH_FORMAT  # the file contract lives in repghost.checkpoint
CHECKPOINT_FILE = "search.pt"
ARCH_FILE = "arch.json"

#: Options a resumed search may change (they do not alter what it computes).
RUN_ONLY = ("output", "resume", "threads", "workers", "device", "measure", "log_every", "checkpoint_every",
            "allow_unfit_costmodel")


class SearchError(ValueError):
    """A search that cannot start as asked (bad cost model, target, data or resume state)."""


def _limit(number: Number, **kwargs):
    return field(metadata={"limit": number}, **kwargs)


@dataclass
class SearchConfig:
    """One search. ``target_ms`` is in the cost model's unit (its timing settings: runtime, threads,
    batch, input size); ``data`` is a COCO-layout root or, when ``data.root`` is None, the built-in
    synthetic set generated into ``output/synthetic``."""

    output: str
    costmodel: str
    target_ms: float = _limit(POSITIVE, default=1.0)
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = _limit(COUNT, default=3000)
    warmup_fraction: float = _limit(Number(float, 0.0, 0.95), default=0.25)
    batch_size: int = _limit(COUNT, default=8)  # per process
    img_size: int = _limit(Number(int, 32), default=128)
    lr: float = _limit(POSITIVE, default=0.05)  # super-network SGD, cosine after a linear warm-up
    lr_warmup_steps: int = _limit(COUNT0, default=50)
    momentum: float = _limit(Number(float, 0.0, 1.0), default=0.9)
    weight_decay: float = _limit(Number(float, 0.0), default=4e-5)
    clip_grad: float = _limit(POSITIVE, default=10.0)
    tau: float = _limit(NEGATIVE, default=-0.07)
    controller_lr: float = _limit(POSITIVE, default=0.05)
    baseline_momentum: float = _limit(Number(float, 0.0, 0.999), default=0.95)
    reward_fraction: float = _limit(Number(float, 0.0, 0.5, exclusive=True), default=0.2)
    seed: int = _limit(COUNT0, default=0)
    log_every: int = _limit(COUNT, default=50)
    checkpoint_every: int = _limit(COUNT, default=250)
    workers: int = _limit(COUNT0, default=0)
    threads: int | None = None
    device: str | None = None
    measure: bool = True
    resume: bool = False
    allow_unfit_costmodel: bool = False  # search with a cost model whose held-out r² marks it unfit

    def __post_init__(self):
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        problems = [f"{f.name} {problem}" for f in dataclasses.fields(self) if "limit" in f.metadata
                    for problem in [f.metadata["limit"].problem(getattr(self, f.name))] if problem]
        if problems:
            raise SearchError("; ".join(problems))
        self.costmodel = str(Path(self.costmodel).resolve())  # a resume from another directory finds it
        if self.data.root is None and self.data.synthetic_dir is None:
            self.data.synthetic_dir = str(Path(self.output).resolve() / "synthetic")

    @property
    def warmup_steps(self) -> int:
        return int(self.steps * self.warmup_fraction)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SearchResult:
    output: Path
    arch: tuple[str, ...]
    predicted_ms: float
    measured_ms: float | None
    steps_done: int
    interrupted: bool
    history: list[dict]


# -- set-up checks: everything that can be wrong is found before any training -----------------------
def load_cost(path: str | os.PathLike, space: SearchSpace, allow_unfit: bool = False) -> tuple[CostModel, LinearCost]:
    """The cost model at ``path`` and its table; one marked unfit (see :meth:`CostModel.unfit_reason`)
    is refused unless ``allow_unfit``."""
    try:
        model = CostModel.load(path, space)
    except CostModelError as err:
        raise SearchError(f"{err}; fit a cost model on this search space with `repghost costmodel sample` "
                          "and `repghost costmodel fit`") from None
    reason = model.unfit_reason()
    if reason and not allow_unfit:
        raise SearchError(f"cost model {path} is unfit: {reason}; or pass --allow-unfit to search with it anyway")
    return model, LinearCost(model, space)


def check_target(target_ms: float, cost: LinearCost) -> None:
    """The target must lie between the cheapest and the dearest architecture the model predicts."""
    low, high = cost.cheapest[0], cost.dearest[0]
    if not low <= target_ms <= high:
        side = "below the cheapest" if target_ms < low else "above the dearest"
        raise SearchError(f"--target-ms {target_ms:g} is {side} architecture of the space ({low:.3f} … "
                          f"{high:.3f} ms predicted by the cost model); choose a target in that range")


def learning_rate(config: SearchConfig, step: int) -> float:
    """Linear warm-up over ``lr_warmup_steps``, then cosine to 0 at the last step."""
    return warmup_cosine(config.lr, step, config.lr_warmup_steps, config.steps)
