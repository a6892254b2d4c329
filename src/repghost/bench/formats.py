"""Accuracy per format: ``repghost bench FILE... --data DIR``.

For each model file (a checkpoint and the files ``export`` made from it, say): its format, the size
of its files, its accuracy on ``DIR`` as its own runtime computes it — top-1 for a classifier (the
path of ``repghost eval``), box AP for a detector (the path of ``repghost det-eval``) — and its
latency at batch 1, the files timed interleaved (:func:`~repghost.bench.latency.time_interleaved`).
One table, as Ultralytics' benchmark mode gives: what each format costs and what it keeps.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..deploy.runner import ModelRunner, open_model
from ..io import atomic_path, atomic_write_json, atomic_write_text, scratch_dir
from .latency import environment, time_interleaved
from .runtimes import file_runner


@dataclass
class FormatResult:
    file: str
    format: str
    runtime: str
    size_mb: float
    metric: str               # "top-1" (classifiers) or "AP" (detectors), in percent
    value: float | None
    images: int
    median_ms: float | None
    p90_ms: float | None
    error: str = ""


def benchmark_formats(paths: Sequence[str | os.PathLike], data: str, split: str = "val", threads: int = 1,
                      warmup: int = 5, runs: int = 30, progress: bool = True, log=None) -> list[FormatResult]:
    """Accuracy and latency of every file in ``paths`` (see the module's docstring). A file that
    cannot be evaluated or timed gets its error in the row instead of a number."""
    torch.set_num_threads(threads)
    rows, calls = [], {}
    for path in paths:
        runner = open_model(path, threads=threads)
        row = FormatResult(str(path), runner.label, runner.runtime, runner.size_bytes / 2**20,
                           "top-1" if runner.task == "classification" else "AP", None, 0, None, None)
        try:
            row.value, row.images = _accuracy(runner, data, split, threads, progress)
            if runner.input_size is None:
                raise ValueError(f"{Path(path).name} records no input size to time it at")
            calls[row.file] = file_runner(runner, torch.randn(1, 3, runner.input_size, runner.input_size))
        except Exception as err:  # a format that cannot run this model is a result too
            row.error = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        if log is not None:
            log(f"{row.file}: {row.metric} " + (f"{row.value:.2f} %" if row.value is not None else row.error))
        rows.append(row)
    times = time_interleaved(calls, warmup, runs, progress, "latency, batch 1")
    for row in rows:
        t = times.get(row.file)
        if t:
            row.median_ms, row.p90_ms = float(np.median(t)), float(np.percentile(t, 90))
    return rows


def _accuracy(runner: ModelRunner, data: str, split: str, threads: int, progress: bool) -> tuple[float, int]:
    if runner.task == "classification":
        from ..train.evaluate import evaluate_checkpoint

        result = evaluate_checkpoint(runner.path, data=data, split=split, workers=0, threads=threads,
                                     runtime=runner.runtime, device="cpu", progress=progress)
        return result["top1"], result["count"]
    from ..deploy.evaluation import evaluate_detector_file
    from ..detection.data import DataConfig

    with scratch_dir("bench") as tmp:  # det-eval's metrics file is not this table's output
        metrics = evaluate_detector_file(runner.path, DataConfig(root=data, val_split=split), workers=0,
                                         threads=threads, device="cpu", output=tmp / "eval.json",
                                         runtime=runner.runtime, progress=progress)
    return metrics["bbox"]["AP"], metrics["num_images"]


def format_formats_table(rows: Sequence[FormatResult]) -> str:
    """A Markdown table, one row per file; ``Δ`` is the accuracy change from the first file with a value."""
    lines = ["| file | format | runtime | size MB | metric | value % | Δ points | images | median ms | p90 ms |",
             "|" + "---|" * 10]
    ref = next((r.value for r in rows if r.value is not None), None)
    for r in rows:
        value = f"{r.value:.2f}" if r.value is not None else f"failed: {r.error[:60]}"
        delta = f"{r.value - ref:+.2f}" if r.value is not None and ref is not None else "–"
        median = f"{r.median_ms:.2f}" if r.median_ms is not None else "–"
        p90 = f"{r.p90_ms:.2f}" if r.p90_ms is not None else "–"
        lines.append(f"| {Path(r.file).name} | {r.format} | {r.runtime} | {r.size_mb:.2f} | {r.metric} | {value} "
                     f"| {delta} | {r.images} | {median} | {p90} |")
    return "\n".join(lines)


def write_formats(rows: Sequence[FormatResult], out_dir: str | Path, settings: dict) -> dict[str, Path]:
    """``formats.json`` (rows, settings, environment), ``formats.csv`` and ``formats.md`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"formats.{k}" for k in ("json", "csv", "md")}
    records = [asdict(r) for r in rows]
    atomic_write_json(paths["json"], dict(environment=environment(), settings=settings, results=records), indent=1)
    with atomic_path(paths["csv"]) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["file"])
        writer.writeheader()
        writer.writerows(records)
    atomic_write_text(paths["md"], format_formats_table(rows) + "\n")
    return paths
