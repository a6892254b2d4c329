"""The latency harness: models × runtimes × threads × batch sizes × input sizes.

For each (threads, batch, input size) it builds one runner per (model, runtime), warms each up,
then times them *interleaved*: every round runs each runner once, in a rotated order, so slow
drifts of a shared machine (other jobs, clock changes) hit all of them alike. It reports the
median and 90th percentile per runner, with params and MACs (:func:`repghost.profile`, batch 1)
and the paper's top-1 where known.
"""

from __future__ import annotations

import csv
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..deploy.edge import EDGE_RUNTIMES, edge_runtime
from ..deploy.runner import open_model as open_file
from ..io import atomic_path, atomic_write_json, atomic_write_text, scratch_dir
from ..limits import COUNT, COUNT0, check_limits, limited
from ..profile import profile
from ..progress import progress as progress_bar
from .runtimes import RUNTIMES, file_runner, make_runner
from .specs import ModelSpec


@dataclass
class Result:
    model: str
    form: str
    runtime: str
    threads: int
    batch: int
    img_size: int
    median_ms: float | None
    p90_ms: float | None
    runs: int
    params_m: float | None     # None: an exported file whose contract names no model this version builds
    macs_m: float | None
    paper_top1: float | None
    error: str = ""
    #: median process CPU time per call (all threads of this process): on a busy machine, the work
    #: a call did without the waits other jobs impose on its wall time.
    cpu_ms: float | None = None
    #: fastest round: on a shared machine, the time least hit by preemption (medians can be bimodal there)
    min_ms: float | None = None


@dataclass
class BenchConfig:
    models: Sequence[str]
    runtimes: Sequence[str] = ("eager", "onnxruntime")
    threads: Sequence[int] = limited(COUNT, default=(1,))
    batch_sizes: Sequence[int] = limited(COUNT, default=(1,))
    img_sizes: Sequence[int] = limited(COUNT, default=(224,))
    warmup: int = limited(COUNT0, default=10)
    runs: int = limited(COUNT, default=50)
    device: str = "cpu"
    num_classes: int = limited(COUNT, default=1000)
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        check_limits(self)


def environment() -> dict:
    """Machine and library versions, recorded beside every result."""
    import onnxruntime
    import timm

    from ..deploy.edge import edge_versions

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return dict(date=time.strftime("%Y-%m-%d %H:%M"), cpu=cpu, logical_cpus=os.cpu_count(),
                python=platform.python_version(), torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                timm=timm.__version__, platform=platform.platform(), **edge_versions())


def time_interleaved(runners: dict[str, callable], warmup: int, runs: int, progress: bool = False, desc: str = "",
                     cpu_times: dict | None = None) -> dict[str, list[float]]:
    """The timing loop every latency figure comes from: ``warmup`` calls of each runner, then ``runs``
    rounds in which every runner is called once, the order rotating each round so that no runner always
    follows the same neighbour (drift and caches hit all alike). Wall times (ms) per runner;
    ``cpu_times``, when given, receives the process CPU times too."""
    times = {key: [] for key in runners}
    cpu = cpu_times if cpu_times is not None else {}
    cpu.update({key: [] for key in runners})
    if not runners:  # every runtime failed for every model: nothing to time
        return times
    for run in runners.values():
        for _ in range(warmup):
            run()
    keys = list(runners)
    for round_ in progress_bar(range(runs), desc=desc, enabled=progress, leave=False, line=True, unit="round"):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start, start_cpu = time.perf_counter(), time.process_time()
            runners[key]()
            times[key].append((time.perf_counter() - start) * 1e3)
            cpu[key].append((time.process_time() - start_cpu) * 1e3)
    return times


def time_modules(modules: dict[str, torch.nn.Module], runtime: str, input_size: tuple[int, ...], threads: int = 1,
                 warmup: int = 10, runs: int = 50, progress: bool = True, device: str = "cpu") -> dict[str, dict]:
    """Time already-built models (e.g. trained checkpoints) under one runtime, interleaved like
    :func:`run_benchmark`. Returns ``label -> {median_ms, p90_ms, min_ms, runs, times_ms}``."""
    torch.set_num_threads(threads)
    with scratch_dir("bench") as onnx_dir:  # the exports live while they are timed, no longer
        runners = {label: make_runner(m, runtime, tuple(input_size), threads, torch.device(device),
                                      onnx_dir / f"{i}.onnx")
                   for i, (label, m) in enumerate(modules.items())}
        times = time_interleaved(runners, warmup, runs, progress, f"{runtime}, batch {input_size[0]}")
    return {label: dict(median_ms=float(np.median(t)), p90_ms=float(np.percentile(t, 90)), min_ms=float(np.min(t)),
                        runs=len(t), times_ms=t) for label, t in times.items()}


def run_benchmark(config: BenchConfig) -> list[Result]:
    """Measure every combination in ``config``; a runtime that fails for a model is recorded with
    its error instead of a time."""
    for runtime in config.runtimes:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be among {RUNTIMES}, got {runtime!r}")
        if runtime in EDGE_RUNTIMES:  # a missing one is the user's to install, not a result per model
            edge_runtime(runtime).require(export=True)
    specs = [ModelSpec.parse(m) for m in config.models]
    device = torch.device(config.device)
    models = {s.label: s.build(config.num_classes) for s in specs if not s.exported}
    with scratch_dir("bench") as onnx_dir:  # the exports live while they are timed, no longer
        return _run_benchmark(config, specs, models, device, onnx_dir)


def _run_benchmark(config: BenchConfig, specs: list[ModelSpec], models: dict[str, torch.nn.Module],
                   device: torch.device, onnx_dir: Path) -> list[Result]:
    results: list[Result] = []
    files = {s.label: open_file(s.name, threads=1, device=device) for s in specs if s.exported}
    runtimes = {s.label: [files[s.label].runtime] if s.exported else list(config.runtimes) for s in specs}
    for size in config.img_sizes:
        costs = {label: profile(m, (1, 3, size, size)) for label, m in models.items()}
        costs.update({label: exported_cost(runner, size) for label, runner in files.items()})
        for threads in config.threads:
            torch.set_num_threads(threads)
            for batch in config.batch_sizes:
                runners, errors = {}, {}
                for spec in specs:
                    for runtime in runtimes[spec.label]:
                        key = (spec.label, runtime)
                        try:
                            if spec.exported:
                                runners[key] = _exported_runner(spec.name, runtime, (batch, 3, size, size), threads,
                                                                device)
                            else:
                                runners[key] = make_runner(models[spec.label], runtime, (batch, 3, size, size),
                                                           threads, device,
                                                           onnx_dir / f"{spec.label.replace(':', '_')}_{size}.onnx")
                            runners[key]()  # compile / first-run failures surface here, not mid-timing
                        except Exception as err:  # a runtime that cannot run this model is a result too
                            runners.pop(key, None)
                            errors[key] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                desc = f"{threads} thread(s), batch {batch}, {size}²"
                cpu_times: dict = {}
                times = time_interleaved(runners, config.warmup, config.runs, config.progress, desc, cpu_times)
                for spec in specs:
                    for runtime in runtimes[spec.label]:
                        key, cost = (spec.label, runtime), costs[spec.label]
                        t = times.get(key)
                        results.append(Result(
                            model=spec.label.rsplit("@", 1)[0], form=spec.form, runtime=runtime, threads=threads,
                            batch=batch, img_size=size,
                            median_ms=float(np.median(t)) if t else None,
                            p90_ms=float(np.percentile(t, 90)) if t else None, runs=len(t or []),
                            params_m=cost.params / 1e6 if cost else None, macs_m=cost.macs / 1e6 if cost else None,
                            paper_top1=spec.paper_top1,
                            error=errors.get(key, ""), min_ms=float(np.min(t)) if t else None,
                            cpu_ms=float(np.median(cpu_times[key])) if t else None))
    return results


def _exported_runner(path: str, runtime: str, input_size: tuple[int, ...], threads: int, device: torch.device):
    """An exported file's timed call, opened for ``threads`` threads; a fixed input size it does not
    have is refused (its error becomes the result)."""
    runner = open_file(path, runtime=runtime, threads=threads, device=device)
    if runner.input_size and runner.input_size != input_size[-1]:
        raise ValueError(f"{os.path.basename(path)} takes {runner.input_size}² inputs (fixed at export), "
                         f"not {input_size[-1]}²")
    return file_runner(runner, torch.randn(input_size))


def exported_cost(runner, size: int):
    """Params and MACs of an exported classifier: those of the deploy model its contract names
    (``None`` where it names none this version can build)."""
    from ..models import UnknownModelError, create_model

    if not runner.model_name or runner.task != "classification":
        return None
    kwargs = {"num_classes": runner.num_classes} if runner.num_classes else {}
    try:
        model = create_model(runner.model_name, deploy=True, **kwargs).eval()
    except (UnknownModelError, TypeError, ValueError):
        return None
    return profile(model, (1, 3, size, size))


def format_table(results: Sequence[Result]) -> str:
    """A Markdown table; ``×ref`` is the median relative to the first model of the same setting."""
    header = ("| model | form | runtime | threads | batch | size | median ms | p90 ms | ×ref | params M | MACs M "
              "| paper top-1 |")
    lines = [header, "|" + "---|" * 12]
    ref: dict[tuple, float] = {}
    for r in results:
        setting = (r.runtime, r.threads, r.batch, r.img_size)
        if r.median_ms is not None:
            ref.setdefault(setting, r.median_ms)
        ratio = f"{r.median_ms / ref[setting]:.2f}" if r.median_ms is not None else "–"
        median = f"{r.median_ms:.2f}" if r.median_ms is not None else f"failed: {r.error[:60]}"
        p90 = f"{r.p90_ms:.2f}" if r.p90_ms is not None else "–"
        top1 = f"{r.paper_top1:.1f}" if r.paper_top1 is not None else "–"
        params = f"{r.params_m:.2f}" if r.params_m is not None else "–"
        macs = f"{r.macs_m:.1f}" if r.macs_m is not None else "–"
        lines.append(f"| {r.model} | {r.form} | {r.runtime} | {r.threads} | {r.batch} | {r.img_size} | {median} "
                     f"| {p90} | {ratio} | {params} | {macs} | {top1} |")
    return "\n".join(lines)


def write_results(results: Sequence[Result], out_dir: str | Path, config: BenchConfig | None = None,
                  name: str = "latency") -> dict[str, Path]:
    """Write ``NAME.json`` (results + environment + config), ``NAME.csv``, ``NAME.md`` and ``NAME.png``."""
    from .plots import plot_latency

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in results]
    paths = {k: out_dir / f"{name}.{k}" for k in ("json", "csv", "md", "png")}
    meta = dict(environment=environment(), config=asdict(config) if config else None)
    atomic_write_json(paths["json"], dict(**meta, results=rows), indent=1)
    with atomic_path(paths["csv"]) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["model"])
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(paths["md"], format_table(results) + "\n")
    plot_latency(results, paths["png"])
    return paths
