"""Evolutionary search over a trained weight-sharing super-network, held at a latency target by the cost
model: Once-for-All's search, over the RepGhostNet-skeleton space.

**Why evolution over the trained super-network** (and not TuNAS's controller): the proxy fidelity study
(:mod:`repghost.study.fidelity`) measured how well *this* score — the held-out box AP of an architecture's
path after BN recalibration (:class:`~.proxy.HeldOutScorer`) — ranks architectures as stand-alone
training does. A search that ranks by exactly that score inherits the measured fidelity. TuNAS's
controller learns while the weights train, from one-minibatch rewards whose architecture effect was
measured to drown in noise (issue 17). And the cost model keeps every candidate within ±``tolerance`` of
the target, so candidates are compared at equal latency and no reward trade-off (τ) needs tuning.

**One generation**: the ``parents`` best architectures scored so far in the population are kept; the
rest of the population are children, half mutations of a random parent (each decision that matters
drawn again with probability ``mutation_prob``), half uniform crossovers of two parents, mutated the same
way (once the parents converge, their crossovers alone are the parents again). A child the cost
model puts outside the band, or one already scored, is drawn again. The first population is uniform
draws of the space inside the band (the fidelity study's prior), after the ``start_from`` architectures if
any (e.g. the hand-designed network the search is to beat: the search then begins where it is, and its
mutations explore around it).

**The measured band** (``measured_band``: a model): the cost model's error per architecture is larger than the
±3 % band (:mod:`.finalists`), so "equal latency" held by the cost model alone is not equal measured latency. With
a measured band every candidate is first drawn within the cost model's wider ``prefilter`` band, then timed
against the model (:class:`.finalists.MeasuredGate`: SSDLite bodies, up to :data:`GATE_BATCH` per interleaved
run) and scored only if its measured latency is within ±tolerance of the model's: the scores are spent inside the
band the final comparison is made in. A search that times :data:`GATE_PATIENCE` candidates in a row without one
admitted fails (:class:`.finalists.MeasuredBandError`).

**Controls** (issue 17's: what tells a working search from a lucky one), at the same number of scored
architectures:

- ``strategy="random"``: each generation's children are fresh uniform draws in the band (random search);
- ``quality="shuffled"``: each architecture's quality is a seeded pseudo-random number — selection sees no
  quality, only the band and the space's prior (ranks are all selection reads, so this is a random
  permutation of any score);
- ``quality="latency"``: quality is ``−|c/T − 1|`` (the latency-only search: TuNAS's reward with a constant
  quality term).

**Resume**: a score is appended to ``scores.jsonl`` as soon as it is computed (a timing to ``timings.jsonl``
as soon as its batch is timed); the search is a deterministic function of its seed, its scores and its
timings, so running it again replays the generations from the records on disk and scores (or times) only
what is missing (a stop loses at most the architecture being scored, or the batch being timed).
``evolution.json`` holds the settings (a re-run with others is refused) and, per generation, the best
architecture, the population and each decision's choice shares in it; ``arch.json`` the best architecture, or
with ``measure_against`` the measured pick (:mod:`.finalists`): the best score whose *measured* latency is within
±tolerance of that model's, since the cost model's error per architecture is larger than the band.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import append_jsonl, atomic_write_json, read_jsonl, repair_jsonl
from .config import ARCH_FILE, QUALITIES, STRATEGIES, EvolutionConfig, EvolutionError

__all__ = ["QUALITIES", "STRATEGIES", "Evolution", "EvolutionConfig", "EvolutionError", "EvolutionResult",
           "agreement", "run_evolution"]

EVOLUTION_FILE = "evolution.json"
EVOLUTION_FORMAT = "repghost-evolution/1"
SCORES_FILE = "scores.jsonl"
#: Draws tried for one child (or one first-population member) before the band is declared out of reach.
MAX_TRIES = 20_000
#: With a measured band: candidates timed per interleaved run, and timed in a row without one admitted before
#: the measured band is declared out of the pre-filter's reach.
GATE_BATCH, GATE_PATIENCE = 16, 256


# -- the search, on any score ----------------------------------------------------------------------
class Evolution:
    """The search over ``space`` with ``predict`` (architectures → predicted ms, vectorised) as the cost
    model and ``score`` (architecture → quality, higher better) as the judge; ``known`` scores (by
    architecture name) are used instead of calling ``score``, and every new one goes to ``record``."""

    def __init__(self, space, predict: Callable[[list], np.ndarray], score: Callable[[tuple], float],
                 config: EvolutionConfig, known: dict[str, float] | None = None,
                 record: Callable[[str, float], None] | None = None, gate=None,
                 start: Sequence[tuple[str, tuple]] = ()):
        self.space, self.predict, self._score, self.config = space, predict, score, config
        # config.start_from resolved: (as the user named it, architecture)
        self.start = [(label, space.canonical(a)) for label, a in start]
        self.scores: dict[str, float] = {}
        self.known = dict(known or {})
        self.record = record
        # The measured band (a :class:`.finalists.MeasuredGate`): names → admitted or not, and each one's ratio.
        self.gate = gate
        self.gated: set[str] = set()  # the architectures put to the gate so far (a replay puts the same ones)
        self.start_refused: dict[str, float] = {}  # start architectures the gate left out, as named: their ratios
        self.rng = np.random.default_rng([config.seed, 17])
        band = config.predicted_tolerance
        self.low, self.high = config.target_ms * (1 - band), config.target_ms * (1 + band)
        self.history: list[dict] = []

    # -- candidates ----------------------------------------------------------------------------
    def in_band(self, ms: float) -> bool:
        return self.low <= ms <= self.high

    def _uniform(self) -> tuple[str, ...]:
        return tuple(d.choices[self.rng.integers(len(d.choices))] for d in self.space.decisions)

    def _mutate(self, parent: tuple[str, ...]) -> tuple[str, ...]:
        active = self.space.active(parent)
        child = list(parent)
        for i, d in enumerate(self.space.decisions):
            if active[i] and self.rng.random() < self.config.mutation_prob:
                child[i] = d.choices[self.rng.integers(len(d.choices))]
        return tuple(child)

    def _crossover(self, a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
        pick = self.rng.random(len(a)) < 0.5
        return tuple(x if p else y for x, y, p in zip(a, b, pick, strict=True))

    def _draw(self, make: Callable[[], tuple[str, ...]], taken: set[str], what: str) -> tuple[str, ...]:
        """The first architecture ``make`` gives that is in the band and not in ``taken`` (canonical form)."""
        for _ in range(MAX_TRIES):
            arch = self.space.canonical(make())
            name = self.space.arch_name(arch)
            if name not in taken and self.in_band(float(self.predict([arch])[0])):
                taken.add(name)
                return arch
        raise EvolutionError(f"no {what} within ±{self.config.predicted_tolerance:.0%} of "
                             f"{self.config.target_ms:.2f} ms in {MAX_TRIES} draws; widen the tolerance or move the "
                             "target")

    def _admitted(self, makers: dict[str, Callable[[], tuple[str, ...]]], need: dict[str, int],
                  taken: set[str]) -> list[tuple[str, ...]]:
        """With a measured band: ``need[kind]`` architectures of each kind of ``makers`` that the gate admits.
        Each round draws up to :data:`GATE_BATCH` candidates in the cost model's band (the kinds still needed
        in turn), times them in one run and keeps the admitted ones in draw order while their kind is needed;
        the others are let go (a rejected one stays taken: it is never timed again)."""
        need, out, missed = dict(need), [], []
        while any(need.values()):
            kinds = [k for k in makers if need[k]]
            size = min(GATE_BATCH, 2 * sum(need.values()))  # fewer at the end: a surplus is timed in vain
            batch = [self._draw(makers[kinds[j % len(kinds)]], taken, kinds[j % len(kinds)]) for j in range(size)]
            names = [self.space.arch_name(a) for a in batch]
            self.gated.update(names)
            for j, (arch, ok) in enumerate(zip(batch, self.gate(names), strict=True)):
                kind = kinds[j % len(kinds)]
                if ok:
                    missed.clear()  # the band is in reach, needed or not
                if ok and need[kind]:
                    need[kind] -= 1
                    out.append(arch)
                elif ok:
                    taken.discard(names[j])  # admitted but not needed: free to come again
                else:
                    missed.append(self.gate.ratio(names[j]))
            if len(missed) >= GATE_PATIENCE:
                from .finalists import MeasuredBandError

                raise MeasuredBandError(
                    f"{len(missed)} candidates in a row outside ±{self.config.tolerance:.0%} of "
                    f"{self.config.measured_band}'s measured latency (ratios {min(missed):.2f}–{max(missed):.2f}): "
                    f"the cost model's ±{self.config.prefilter:.0%} of {self.config.target_ms:.2f} ms does not "
                    "reach it; move --target-ms nearer the reference's")
        return out

    def first_population(self, taken: set[str]) -> list[tuple[str, ...]]:
        start = self._start(taken)
        need = self.config.population - len(start)
        if self.gate is not None:
            return start + self._admitted({"uniform draw": self._uniform}, {"uniform draw": need}, taken)
        return start + [self._draw(self._uniform, taken, "uniform draw") for _ in range(need)]

    def _start(self, taken: set[str]) -> list[tuple[str, ...]]:
        """The start architectures the band holds. Without a measured band each must be in the cost model's
        band (else :class:`EvolutionError`, before anything is scored); with one, the gate judges them (timed in
        an interleaved run of their own, whatever the cost model predicts: its error per architecture is what
        the gate is for) and a refused one is left out, its ratio kept with the others'."""
        start, labels = [], {}
        for label, arch in self.start:
            name = self.space.arch_name(arch)
            if name in taken:
                continue
            labels[name] = label
            if self.gate is None and not self.in_band(ms := float(self.predict([arch])[0])):
                raise EvolutionError(f"start architecture {label} is predicted at {ms:.2f} ms, outside "
                                     f"±{self.config.tolerance:.0%} of {self.config.target_ms:.2f} ms")
            taken.add(name)
            start.append(arch)
        if self.gate is None or not start:
            return start
        names = [self.space.arch_name(a) for a in start]
        self.gated.update(names)
        admitted = self.gate(names)
        self.start_refused = {labels[n]: self.gate.ratio(n) for n, ok in zip(names, admitted, strict=True) if not ok}
        return [a for a, ok in zip(start, admitted, strict=True) if ok]

    def children(self, parents: list[tuple[str, ...]], count: int, taken: set[str]) -> list[tuple[str, ...]]:
        """``count`` new architectures: uniform draws (random strategy), else half mutations of a random parent
        (the parent drawn once per child), half mutated crossovers of two parents (drawn again with every try).
        With a measured band, only architectures the gate admits (:meth:`_admitted`; a mutation's parent is
        drawn again with every try)."""
        if self.gate is not None:
            if self.config.strategy == "random":
                return self._admitted({"uniform draw": self._uniform}, {"uniform draw": count}, taken)
            makers = {"mutation": lambda: self._mutate(parents[self.rng.integers(len(parents))]),
                      "crossover": lambda: self._mutate(self._crossover(*self._pair(parents)))}
            return self._admitted(makers, {"mutation": count // 2, "crossover": count - count // 2}, taken)
        out = []
        for k in range(count):
            if self.config.strategy == "random":
                out.append(self._draw(self._uniform, taken, "uniform draw"))
            elif k < count // 2:
                parent = parents[self.rng.integers(len(parents))]
                out.append(self._draw(lambda p=parent: self._mutate(p), taken, "mutation"))
            else:
                # Mutated too: once the parents converge, their crossovers alone are the parents again.
                out.append(self._draw(lambda: self._mutate(self._crossover(*self._pair(parents))), taken,
                                      "crossover"))
        return out

    def _pair(self, parents: list[tuple[str, ...]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        i, j = self.rng.choice(len(parents), size=2, replace=False)
        return parents[i], parents[j]

    # -- scoring -------------------------------------------------------------------------------
    def score(self, arch: tuple[str, ...]) -> float:
        name = self.space.arch_name(arch)
        if name not in self.scores:
            if name in self.known:
                self.scores[name] = self.known[name]
            else:
                value = float(self._score(arch))
                if self.record is not None:
                    self.record(name, value)
                self.scores[name] = value
        return self.scores[name]

    # -- the loop ------------------------------------------------------------------------------
    def run(self, on_generation: Callable[[Evolution], None] | None = None) -> tuple[str, ...]:
        """Every generation (the first population is generation 0); the best architecture scored."""
        config, taken, parents = self.config, set(), []
        population = self.first_population(taken)
        for generation in range(config.generations + 1):
            if generation:
                population = parents + self.children(parents, config.population - config.parents, taken)
            ranked = sorted(population, key=lambda a: (-self.score(a), self.space.arch_name(a)))
            parents = ranked[:config.parents]
            self.history.append(self._record(generation, ranked))
            if on_generation is not None:
                on_generation(self)
        return self.best()

    def best(self) -> tuple[str, ...]:
        name = max(sorted(self.scores), key=lambda n: self.scores[n])
        return self.space.from_arch_name(name)

    def _record(self, generation: int, ranked: list[tuple[str, ...]]) -> dict:
        scores = [self.scores[self.space.arch_name(a)] for a in ranked]
        best = self.best()
        shares = {}
        for i, d in enumerate(self.space.decisions):
            values = [a[i] for a in ranked]
            shares[d.name] = {c: values.count(c) / len(values) for c in d.choices}
        row = dict(generation=generation, evaluated=len(self.scores), best=self.space.arch_name(best),
                   best_score=self.scores[self.space.arch_name(best)],
                   best_ms=float(self.predict([best])[0]), population_mean=float(np.mean(scores)),
                   population=[self.space.arch_name(a) for a in ranked], population_scores=scores,
                   choice_shares=shares)
        if self.gate is not None:
            row["best_ratio"], row["timed"] = self.gate.ratio(row["best"]), len(self.gated)
        if generation == 0 and self.start_refused:
            row["start_refused"] = dict(self.start_refused)
        return row


def agreement(space, archs: Sequence[Sequence[str]]) -> float:
    """The mean, over pairs of ``archs``, of the share of decisions (active in both) on which they agree."""
    if len(archs) < 2:
        raise ValueError("agreement needs at least 2 architectures")
    shares = []
    for i in range(len(archs)):
        for j in range(i + 1, len(archs)):
            both = [a and b for a, b in zip(space.active(archs[i]), space.active(archs[j]), strict=True)]
            same = [x == y for x, y, keep in zip(archs[i], archs[j], both, strict=True) if keep]
            shares.append(sum(same) / len(same))
    return float(np.mean(shares))


# -- the search, with files ------------------------------------------------------------------------
@dataclass
class EvolutionResult:
    output: Path
    arch: tuple[str, ...]
    score: float
    predicted_ms: float
    evaluated: int
    history: list[dict]
    measured: dict | None = None  # the measured pick's table (:mod:`.finalists`), when one was asked for


def _all_known(arch) -> float:
    raise RuntimeError("a resumed search asked for a score its earlier run did not compute")


def _quality(config: EvolutionConfig, space, predict) -> Callable[[tuple], float]:
    if config.quality == "latency":
        return lambda arch: -abs(float(predict([arch])[0]) / config.target_ms - 1)
    if config.quality == "shuffled":
        def shuffled(arch):
            digest = hashlib.sha256(f"{config.seed}:{space.arch_name(arch)}".encode()).digest()
            return int.from_bytes(digest[:8], "big") / 2 ** 64
        return shuffled
    from .proxy import HeldOutScorer, TrainingSplitError
    from .supertrain import load_supernet

    try:
        scorer = HeldOutScorer(load_supernet(config.supernet), config.split)
    except TrainingSplitError:  # the user's --split: a usage error (exit 2), before anything is scored
        raise EvolutionError(f"--split {config.split} is the split {config.supernet} trained on; score on a "
                             "held-out split (the detection benchmark's: search)") from None
    return lambda arch: scorer.score(arch)[0]


def _start_archs(config: EvolutionConfig, space) -> list[tuple[str, tuple[str, ...]]]:
    from ..models.space import SpaceError

    try:
        return [(spec, space.canonical(space.load_arch(spec))) for spec in config.start_from]
    except SpaceError as err:  # the user's --start-from: a usage error (exit 2), before anything is scored
        raise EvolutionError(f"--start-from: {err}") from None


def _check_settings(out: Path, settings: dict) -> None:
    from ..io import read_format_json

    path = out / EVOLUTION_FILE
    if path.is_file():
        saved = read_format_json(path, EVOLUTION_FORMAT, EvolutionError, "evolutionary search")["settings"]
        differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if differ:
            raise EvolutionError(f"{out} holds a search with other settings ({', '.join(differ)}); run it with "
                                 "the same settings to resume, or use another --output")
    else:
        from .finalists import TIMINGS_FILE

        for name in (SCORES_FILE, TIMINGS_FILE):
            if (out / name).exists():
                raise EvolutionError(f"{out / name} has no {EVOLUTION_FILE} beside it: not this search's records")


def run_evolution(config: EvolutionConfig, progress: bool = True) -> EvolutionResult:
    """Run (or resume) ``config``'s search: see the module docstring."""
    import torch
    from tqdm import tqdm

    from ..costmodel.fit import CostModel, model_space

    out = Path(config.output)
    space = model_space(config.costmodel)
    if space.id != "repghostnet_skeleton/v1":
        raise EvolutionError(f"{config.costmodel} is a cost model of {space.id}; the evolutionary search runs over "
                             "the RepGhostNet-skeleton space the super-network shares")
    settings = config.settings()  # digests of the cost model and the super-network: read once
    start = _start_archs(config, space)
    if start:
        settings["start_from"] = [space.arch_name(a) for _, a in start]
    _check_settings(out, settings)
    if config.threads:
        torch.set_num_threads(config.threads)
    cost = CostModel.load(config.costmodel, space)

    def predict(archs):
        return cost.predict(space, archs)

    scores_path = out / SCORES_FILE
    repair_jsonl(scores_path)  # a record torn by a stop is scored again
    known = {r["arch"]: r["score"] for r in read_jsonl(scores_path)}
    quality = _quality(config, space, predict) if len(known) < config.evaluations else _all_known
    state = dict(format=EVOLUTION_FORMAT, settings=settings, history=[])
    bar = tqdm(total=config.evaluations, desc=f"{config.strategy} ({config.quality})", disable=not progress,
               initial=min(len(known), config.evaluations))

    def write(history: list[dict]) -> None:
        # Written before the first score (so the scores on disk always have their settings beside them), not
        # before: an unreachable band is refused before anything is written.
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / EVOLUTION_FILE, {**state, "history": history}, indent=1)

    def record(name: str, value: float) -> None:
        if not (out / EVOLUTION_FILE).is_file():
            write([])
        append_jsonl(scores_path, dict(arch=name, score=value))
        bar.update(1)

    def save(s: Evolution) -> None:
        write(s.history)
        last = s.history[-1]
        bar.set_postfix_str(f"gen {last['generation']} best {last['best_score']:.4g}")

    gate = None
    if config.measured_band is not None:
        from .finalists import MeasuredGate, MeasureSettings

        def settings_first() -> None:
            if not (out / EVOLUTION_FILE).is_file():
                write([])

        gate = MeasuredGate(out, MeasureSettings(reference=config.measured_band, tolerance=config.tolerance,
                                                 repeats=config.timing_repeats),
                            before_write=settings_first)
    search = Evolution(space, predict, quality, config, known, record, gate, start)
    with bar:  # closed however the search ends, so an error's line is not printed into the bar's
        best = search.run(save)
    top = search.history[-1]
    measured = None
    if config.measure_against is not None:
        from .finalists import MeasureSettings, measured_pick

        settings = MeasureSettings(reference=config.measure_against, finalists=config.finalists,
                                   tolerance=config.tolerance, repeats=config.timing_repeats)
        measured = measured_pick(out, search.scores.items(), settings, progress)
        best = space.from_arch_name(measured["pick"])
    atomic_write_json(out / ARCH_FILE, space.arch_to_json(best))
    name = space.arch_name(best)
    return EvolutionResult(out, best, search.scores[name], float(predict([best])[0]), top["evaluated"],
                           search.history, measured)
