"""The measured pick: a search's best-scored architectures timed against the hand-designed reference in one
interleaved run, and the best of them whose *measured* latency is within ±tolerance of the reference's.

**Why**: the cost model holds every candidate within ±3 % of the target in *predicted* ms, but its
per-architecture error is larger than that band. Measured on the detection study's SSDLite bodies (onnxruntime,
320², 1 thread), 16 uniform draws inside the predicted band at MobileDet-CPU's latency spanned 0.76–1.14×
their median, and the searches' picks landed at 0.92–1.17× their reference. "At equal latency" is a
claim about measured time, so the last step of the search measures: its scored architectures are timed best
score first, ``finalists`` at a time, each batch in one interleaved run with the reference (the ratio cancels
what the machine did meanwhile), until one is within ±``tolerance`` of the reference's latency; that one is
the pick: the best score in the measured band. The score never sees the test split, so the pick does not either.

The timing is the detection study's (:func:`repghost.study.detection.run`): each deploy-form SSDLite body up
to stride 32, batch 1, ``size``², onnxruntime, 1 thread, 10 warm-up + 50 interleaved rounds. Every timed
architecture's ms and ratio, and the pick, are kept in ``finalists.json`` after each batch: a stopped pick
resumes, and a finished one is reused as it is (a resumed search neither times again nor changes its pick).

**Time on an idle machine.** The interleaved ratio cancels a slowdown that hits every body alike, not one that
depends on the body: the same 16 architectures timed beside two training processes on this 2-core machine
moved by −0.07 to +0.09 in ratio against an idle run, enough to put a different one in the band. Each row
keeps the 1-minute load average at its batch's start.

The same timing holds a whole search to the measured band (:class:`MeasuredGate`, ``repghost evolve
--measured-band``): every candidate is timed before it is scored. **Noise and the winner's curse**: of the
hundreds timed, the best-scored in the band tends to be one whose ratio was measured low. Timed again on an
idle machine, twice, the 112 architectures a gate had admitted beside other work (load 2.0–2.4) moved by SD
0.024 and 0.029 in ratio (36 and 38 of them out of the band), while the two idle runs differed by SD 0.014
(correlation 0.90, against 0.50–0.59 with the gate's); picks admitted at 1.000× and 1.009× beside other work
measured 1.05× and 1.08× idle. A body's ratio does not depend on its neighbours beyond that noise: the same
picks timed with the reference alone, among 7 bodies and among 17 agree to ±0.02
(``benchmarks/timing_repeatability.py``). So time on an idle machine; ``repeats`` > 1 times each batch in
that many independent interleaved runs and keeps the mean ratio (rows keep each run's ratio).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write_json, read_format_json
from ..limits import COUNT, Number, check_limits, limited
from .config import EvolutionError

__all__ = ["FINALISTS_FILE", "TIMINGS_FILE", "MeasuredBandError", "MeasuredGate", "MeasureSettings", "measured_pick",
           "ranked", "time_bodies", "time_ratios"]

FINALISTS_FILE = "finalists.json"
FINALISTS_FORMAT = "repghost-finalists/1"
TIMINGS_FILE = "timings.jsonl"


class MeasuredBandError(ValueError):
    """No scored architecture is within the band of the reference's measured latency: the search ran, its pick
    failed (failed work, not a usage error)."""


@dataclass(frozen=True)
class MeasureSettings:
    reference: str
    finalists: int = limited(COUNT, default=16)
    tolerance: float = limited(Number(float, 0.0, 0.5, exclusive=True), default=0.03)
    runtime: str = "onnxruntime"
    size: int = limited(Number(int, 32), default=320)
    threads: int = limited(COUNT, default=1)
    warmup: int = 10
    runs: int = limited(COUNT, default=50)
    #: Independent interleaved runs per batch; an architecture's ratio is the mean of its runs' ratios.
    repeats: int = limited(COUNT, default=1)

    def __post_init__(self):
        check_limits(self, EvolutionError)

    def in_band(self, ratio: float) -> bool:
        """Whether a measured ratio to the reference is within ±tolerance of it: the one band rule."""
        return abs(ratio - 1) <= self.tolerance

    def record(self) -> dict:
        """The settings as kept in a file; one run per batch is left out, as files made before ``repeats`` say."""
        values = asdict(self)
        if values["repeats"] == 1:
            del values["repeats"]
        return values


def ranked(scores: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """The distinct architectures by score, best first (ties by name, as the search ranks them)."""
    best: dict[str, float] = {}
    for name, score in scores:
        best[name] = max(score, best.get(name, score))
    return sorted(best.items(), key=lambda item: (-item[1], item[0]))


def time_bodies(names: list[str], settings: MeasureSettings, progress: bool = True) -> tuple[float, list[float]]:
    """(reference ms, ``names``' ms): medians of one interleaved run of every SSDLite body."""
    from ..bench import time_modules
    from ..detection.backbone import ssdlite_body

    bodies = {"reference": ssdlite_body(settings.reference)}
    bodies.update({f"finalist {i}": ssdlite_body(name) for i, name in enumerate(names)})
    timing = time_modules(bodies, settings.runtime, (1, 3, settings.size, settings.size), threads=settings.threads,
                          warmup=settings.warmup, runs=settings.runs, progress=progress)
    return timing["reference"]["median_ms"], [timing[f"finalist {i}"]["median_ms"] for i in range(len(names))]


def time_ratios(names: list[str], settings: MeasureSettings, progress: bool = True) -> list[dict]:
    """Each of ``names`` timed against the reference in ``settings.repeats`` interleaved runs (:func:`time_bodies`):
    ``measured_ms``, ``reference_ms`` (means over the runs) and ``ratio`` (the mean of each run's ratio, which
    cancels what the machine did during that run); with more than one run, ``ratios`` too."""
    runs = [time_bodies(names, settings, progress) for _ in range(settings.repeats)]
    rows = []
    for i, name in enumerate(names):
        ratios = [measured[i] / reference for reference, measured in runs]
        row = dict(arch=name, measured_ms=float(np.mean([measured[i] for _, measured in runs])),
                   reference_ms=float(np.mean([reference for reference, _ in runs])), ratio=float(np.mean(ratios)))
        if settings.repeats > 1:
            row["ratios"] = ratios
        rows.append(row)
    return rows


def _band_miss(rows: list[dict], settings: MeasureSettings) -> str:
    ratios = [r["ratio"] for r in rows]
    return (f"none of the {len(rows)} scored architectures is within ±{settings.tolerance:.0%} of "
            f"{settings.reference}'s measured latency (ratios {min(ratios):.2f}–{max(ratios):.2f}): the cost "
            "model's target is too far from it; search again with a --target-ms nearer the reference's")


def measured_pick(out: str | Path, scores: Iterable[tuple[str, float]], settings: MeasureSettings,
                  progress: bool = True) -> dict:
    """The best-scored architecture of ``scores`` (architecture name, score) whose measured latency is within
    ±tolerance of ``settings.reference``'s: the candidates are timed best first, ``settings.finalists`` at a
    time, each batch with the reference in one interleaved run, until one is in the band. Returns the table
    (kept in ``out/finalists.json`` after every batch: the same call resumes it, and a finished one is
    returned as it is, so a pick never changes). :class:`MeasuredBandError` when no candidate is in the band."""
    candidates = ranked(scores)
    if not candidates:
        raise MeasuredBandError("no scored architecture to measure")
    path = Path(out) / FINALISTS_FILE
    state = dict(format=FINALISTS_FORMAT, settings=settings.record(), candidates=[name for name, _ in candidates],
                 rows=[], pick=None)
    if path.is_file():
        kept = read_format_json(path, FINALISTS_FORMAT, EvolutionError, "measured pick")
        if all(kept.get(k) == state[k] for k in ("settings", "candidates")):
            state = kept
    while state["pick"] is None and len(state["rows"]) < len(candidates):
        batch = candidates[len(state["rows"]):len(state["rows"]) + settings.finalists]
        load = os.getloadavg()[0]  # kept: a ratio measured beside other work is not an idle machine's
        timed = time_ratios([name for name, _ in batch], settings, progress)
        rows = [dict(arch=name, score=score, **{k: v for k, v in row.items() if k != "arch"},
                     in_band=settings.in_band(row["ratio"]), load_1min=load)
                for (name, score), row in zip(batch, timed, strict=True)]
        state["rows"] += rows
        state["pick"] = next((r["arch"] for r in rows if r["in_band"]), None)
        atomic_write_json(path, state, indent=1)
    if state["pick"] is None:
        raise MeasuredBandError(_band_miss(state["rows"], settings))
    return state


class MeasuredGate:
    """The measured band held *during* a search: ``gate(archs)`` times the architectures not timed before (their
    SSDLite bodies, with the reference, in one interleaved run: :func:`time_bodies`) and says which are within
    ±tolerance of the reference's measured latency. Every timing is appended to ``out/timings.jsonl`` when its
    batch is done and read back by the next gate on ``out``, so a resumed search replays its admissions without
    timing again (a stop loses at most the batch being timed)."""

    def __init__(self, out: str | Path, settings: MeasureSettings, progress: bool = False,
                 before_write: Callable[[], None] | None = None):
        from ..io import read_jsonl, repair_jsonl

        self.path, self.settings, self.progress = Path(out) / TIMINGS_FILE, settings, progress
        self.before_write = before_write  # e.g. the search's settings file: what the timings are of
        repair_jsonl(self.path)  # a record torn by a stop is timed again
        self.rows = {r["arch"]: r for r in read_jsonl(self.path)}

    def ratio(self, name: str) -> float:
        return self.rows[name]["ratio"]

    def __call__(self, names: list[str]) -> list[bool]:
        from ..io import append_jsonl

        new = list(dict.fromkeys(n for n in names if n not in self.rows))
        if new:
            load = os.getloadavg()[0]
            timed = time_ratios(new, self.settings, self.progress)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.before_write is not None:
                self.before_write()
            for row in timed:
                self.rows[row["arch"]] = {**row, "load_1min": load}
                append_jsonl(self.path, self.rows[row["arch"]])
        return [self.admits(n) for n in names]

    def admits(self, name: str) -> bool:
        """Whether timed ``name`` is within ±tolerance of the reference's measured latency."""
        return self.settings.in_band(self.ratio(name))
