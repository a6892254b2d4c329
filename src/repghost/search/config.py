"""What one search is (:class:`SearchConfig`, each setting with its allowed range, checked where it is
made) and what it gives (:class:`SearchResult`). Light on purpose (no torch): ``repghost search
--help`` is built from these fields; the set-up checks that need the cost model are in :mod:`.setup`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..detection.config import DataConfig
from ..limits import COUNT, COUNT0, NEGATIVE, POSITIVE, Number, check_limits
from ..limits import limited as _limit

CHECKPOINT_FILE = "search.pt"
ARCH_FILE = "arch.json"

#: Options a resumed search may change (they do not alter what it computes).
RUN_ONLY = ("output", "resume", "threads", "workers", "device", "measure", "log_every", "checkpoint_every",
            "allow_unfit_costmodel")


class SearchError(ValueError):
    """A search that cannot start as asked (bad cost model, target, data or resume state)."""


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
        check_limits(self, SearchError)
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
