"""What one search is (:class:`SearchConfig`, TuNAS's; :class:`EvolutionConfig`, the evolutionary search over a
trained super-network; each setting with its allowed range, checked where it is made) and what it gives
(:class:`SearchResult`). Light on purpose (no torch): ``repghost search
--help`` is built from these fields; the set-up checks that need the cost model are in :mod:`.setup`."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..detection.config import DataConfig
from ..limits import COUNT, COUNT0, NEGATIVE, POSITIVE, Number, check_limits, limited
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


# -- the evolutionary search over a trained super-network (:mod:`.evolution`) ---------------------------
STRATEGIES = ("evolution", "random")
QUALITIES = ("supernet", "shuffled", "latency")
#: Evolutionary-search settings that do not change what is computed (a resume may change them).
EVOLVE_RUN_ONLY = ("output", "threads", "measure_against", "finalists")


class EvolutionError(ValueError):
    """A search that cannot run as asked."""


@dataclass
class EvolutionConfig:
    """One evolutionary search. ``supernet`` is a finished ``supernet.pt`` (needed for ``quality="supernet"``),
    ``costmodel`` a cost model of the RepGhostNet-skeleton space, ``target_ms`` in its unit."""

    output: str
    costmodel: str
    target_ms: float = limited(Number(float, 0.0, exclusive=True))
    supernet: str | None = None
    split: str = "search"
    tolerance: float = limited(Number(float, 0.0, 0.5, exclusive=True), default=0.03)
    population: int = limited(Number(int, 4), default=16)
    parents: int = limited(Number(int, 2), default=4)
    generations: int = limited(COUNT0, default=8)
    mutation_prob: float = limited(Number(float, 0.0, 1.0, exclusive=True), default=0.1)
    strategy: str = "evolution"
    quality: str = "supernet"
    seed: int = limited(COUNT0, default=0)
    threads: int | None = limited(COUNT, default=None)
    #: The measured pick (:mod:`.finalists`): the scored architectures timed against this model, best score
    #: first, ``finalists`` per interleaved run, until one is within ±tolerance of its measured latency.
    measure_against: str | None = None
    finalists: int = limited(COUNT, default=16)
    #: The measured band (:class:`.finalists.MeasuredGate`): every candidate timed against this model before it is
    #: scored, and scored only within ±tolerance of its measured latency; the cost model then only pre-filters, at
    #: ±``prefilter`` of ``target_ms``.
    measured_band: str | None = None
    prefilter: float = limited(Number(float, 0.0, 1.0, exclusive=True), default=0.10)
    #: Independent interleaved runs each timed candidate gets (the measured band and the measured pick); its ratio
    #: is their mean.
    timing_repeats: int = limited(COUNT, default=1)
    #: Architectures the first population starts with (registered models the space holds, architecture names or
    #: files), before its uniform draws: a search that starts from the hand design (:meth:`.Evolution._start`).
    start_from: tuple[str, ...] = ()

    def __post_init__(self):
        check_limits(self, EvolutionError)
        self.start_from = tuple(self.start_from)
        if len(self.start_from) > self.population:
            raise EvolutionError(f"{len(self.start_from)} start architectures do not fit a population of "
                                 f"{self.population}")
        if self.strategy not in STRATEGIES:
            raise EvolutionError(f"strategy is one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if self.quality not in QUALITIES:
            raise EvolutionError(f"quality is one of {', '.join(QUALITIES)}, not {self.quality!r}")
        if self.parents >= self.population:
            raise EvolutionError(f"parents ({self.parents}) must be fewer than the population ({self.population})")
        for model in (self.measure_against, self.measured_band):
            if model is not None and not _is_model(model):
                raise EvolutionError(f"unknown model {model!r} to measure against; a registered model "
                                     "(repghost models) or a searched architecture's inline name")
        if self.measured_band is not None and self.prefilter < self.tolerance:
            raise EvolutionError(f"prefilter ({self.prefilter}) must be at least the tolerance ({self.tolerance}): "
                                 "the cost model's error per architecture is larger than the measured band")
        if self.quality == "supernet" and not self.supernet:
            raise EvolutionError("quality 'supernet' scores with a trained super-network: give its supernet.pt")
        for path, what in ((self.costmodel, "cost model"), (self.supernet, "super-network checkpoint")):
            if path is not None and not Path(path).is_file():
                raise EvolutionError(f"{what} not found: {path}")

    @property
    def evaluations(self) -> int:
        """Architectures scored by a finished search (the compute two strategies are compared at)."""
        return self.population + self.generations * (self.population - self.parents)

    def settings(self) -> dict:
        """What the search computes from: every setting but the run-only ones, with the files' digests."""
        values = {k: v for k, v in dataclasses.asdict(self).items() if k not in EVOLVE_RUN_ONLY}
        values["costmodel"] = _digest(self.costmodel)
        values["supernet"] = _digest(self.supernet) if self.quality == "supernet" else None
        if self.quality != "supernet":
            values["split"] = None
        if self.measured_band is None:
            values["prefilter"] = None  # unused: the searches made before the measured band resume as they were
        if self.timing_repeats == 1:
            del values["timing_repeats"]  # as the searches made before it were: they resume as they were
        # Recorded by run_evolution as the architectures' names (what a file holds, not its path), when there are any.
        del values["start_from"]
        return values

    @property
    def predicted_tolerance(self) -> float:
        """The cost model's band: the tolerance itself, or with a measured band the wider pre-filter."""
        return self.tolerance if self.measured_band is None else self.prefilter


def _is_model(name: str) -> bool:
    from ..names import MODEL_NAMES, is_searched_architecture

    return name in MODEL_NAMES or (is_searched_architecture(name) and ":" in name)


def _digest(path: str | None) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else None
