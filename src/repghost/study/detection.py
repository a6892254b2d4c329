"""Stand-alone detection study: architectures × seeds, each trained alone with the benchmark recipe.

Every (architecture, seed) is an ordinary ``det-train`` run directory, ``OUT/runs/<label>-seed<k>``,
trained with :data:`repghost.detection.config.BENCHMARK_RECIPE` on the detection benchmark's ``train``
split and evaluated once, at its end, on ``test`` (the split only final comparisons touch). A study that
stops resumes the unfinished run from its ``last.pt`` and skips the finished ones (a ``metrics.json`` of the
last epoch); a run directory is reused only for the same settings (``run.json``). The table gives test AP
mean ± standard error (SE = sample SD / √n) over the seeds per architecture, beside the latency of each
architecture's SSDLite body (deploy form, maps at strides 16 and 32), all bodies timed in ONE interleaved
run so their latencies are comparable.

Several processes may share ``OUT`` (one per core, e.g. one per seed or per list of architectures): each
run is claimed while it trains (``.training`` in its directory, :func:`repghost.io.claim`), a process
skips the runs another one is training and, when nothing else is left, waits for them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_write_json
from .report import Column, StudyResult, save_figure

COLUMNS = [Column("arch", "architecture"), Column("seeds", "seeds"), Column("ap_mean", "test AP mean", ".2f"),
           Column("ap_se", "± SE", ".2f"), Column("ap_sd", "SD", ".2f"), Column("ap_runs", "AP per seed"),
           Column("ap50_mean", "AP50 mean", ".2f"), Column("median_ms", "body median ms", ".2f"),
           Column("p90_ms", "p90 ms", ".2f"), Column("params_m", "body params M", ".3f"),
           Column("macs_g", "body MACs G", ".3f")]
RUN_SETTINGS = "run.json"


@dataclass(frozen=True)
class Architecture:
    label: str     # names the run directories and the table's row
    backbone: str  # the name the body is built from (a searched architecture's inline name)


@dataclass(frozen=True)
class Run:
    arch: Architecture
    seed: int
    run_dir: Path
    state: str  # "done", "resume" or "new"


def resolve_architectures(specs: Sequence[str]) -> list[Architecture]:
    """Each spec (a registered backbone name, a searched architecture's file or inline name) resolved, or a
    ``ValueError`` naming the first bad one."""
    from ..detection.backbone import backbone_name
    from ..models import UnknownModelError

    if not specs:
        raise ValueError("give at least one architecture")
    archs = []
    for spec in specs:
        try:
            name = backbone_name(spec)
        except UnknownModelError as err:
            raise ValueError(str(err)) from None
        archs.append(Architecture(_label(spec, name), name))
    labels = [a.label for a in archs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ValueError(f"architecture {twice[0]!r} given twice")
    return archs


def _label(spec: str, name: str) -> str:
    """A registered name as it is; a file by its stem; an inline name by a short digest (it holds ':')."""
    if ":" not in name:
        return name
    if os.path.exists(spec):
        return Path(spec).stem
    return "arch-" + hashlib.sha1(name.encode()).hexdigest()[:10]


def check_seeds(seeds: Sequence[int]) -> list[int]:
    if not seeds:
        raise ValueError("give at least one seed")
    bad = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool) or s < 0]
    if bad:
        raise ValueError(f"seeds are integers ≥ 0, got {bad[0]!r}")
    twice = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if twice:
        raise ValueError(f"seed {twice[0]} given twice")
    return list(seeds)


def _settings(config, benchmark: dict) -> dict:
    """What makes two runs the same run: the detector, the data (the benchmark's definition included), the
    schedule and the seed."""
    values = config.to_dict()
    for key in ("output", "resume", "device", "threads", "workers"):  # where and how fast, not what
        values.pop(key)
    return json.loads(json.dumps({**values, "benchmark": benchmark}))


def _run_state(run_dir: Path, config, benchmark: dict) -> str:
    """``done``, ``resume`` or ``new``; a directory holding a run with other settings is an error."""
    saved = run_dir / RUN_SETTINGS
    if saved.is_file():
        old, new = json.loads(saved.read_text()), _settings(config, benchmark)
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if differ:
            raise ValueError(f"{run_dir} holds a run with other settings ({', '.join(differ)}); use another --out "
                             "or remove it")
    metrics = run_dir / "metrics.json"
    if metrics.is_file() and json.loads(metrics.read_text()).get("epoch") == config.epochs:
        return "done"
    return "resume" if (run_dir / "last.pt").is_file() else "new"


@dataclass
class Plan:
    runs: list[Run]
    configs: dict[Path, object]  # run directory → its DetTrainConfig
    benchmark: Path
    benchmark_params: dict


def plan(out: str | Path, architectures: Sequence[str], seeds: Sequence[int], benchmark: str | Path | None = None,
         benchmark_sizes: dict | None = None, **overrides) -> Plan:
    """Check everything and list the runs before any work. ``benchmark_sizes``: the benchmark's
    ``num_train`` / ``num_search`` / ``num_test`` / ``image_size`` (default
    :data:`~repghost.detection.config.BENCHMARK_SIZES`); the detector's input follows ``image_size``."""
    from ..detection.config import BENCHMARK_SIZES, benchmark_train_config
    from ..detection.synthetic import benchmark_params

    archs = resolve_architectures(architectures)
    seeds = check_seeds(seeds)
    params = benchmark_params(**{**BENCHMARK_SIZES, **(benchmark_sizes or {})})
    size = params["image_size"]
    overrides = {"min_size": size, "max_size": size, **overrides}
    runs_dir = Path(out) / "runs"
    bench = Path(benchmark) if benchmark is not None else Path(out) / "benchmark"
    runs, configs = [], {}
    # Seed-major: a study stopped early has every architecture at the first seeds rather than some at all.
    for seed in seeds:
        for arch in archs:
            run_dir = runs_dir / f"{arch.label}-seed{seed}"
            config = benchmark_train_config(str(run_dir), arch.backbone, bench, seed=seed, **overrides)
            runs.append(Run(arch, seed, run_dir, _run_state(run_dir, config, params)))
            configs[run_dir] = config
    return Plan(runs, configs, bench, params)


def generate_benchmark(todo: Plan) -> Path:
    """The plan's detection benchmark, generated unless it is there already."""
    from ..detection.synthetic import make_detection_benchmark

    params = {k: v for k, v in todo.benchmark_params.items() if k not in ("version", "splits")}
    splits = todo.benchmark_params["splits"]
    return make_detection_benchmark(todo.benchmark, num_train=splits["train"], num_search=splits["search"],
                                    num_test=splits["test"], **params)


#: A run being trained holds this file in its directory (:func:`repghost.io.claim`): a study sharing the
#: output directory (one process per core) trains the other runs and waits for this one.
CLAIM_FILE = ".training"
#: Seconds between looks at a run another process is training.
WAIT_SECONDS = 30


def epochs_done(run_dir: Path) -> int:
    """Whole epochs a run has saved (0 before its first)."""
    history = run_dir / "history.json"
    return len(json.loads(history.read_text())) if (run_dir / "last.pt").is_file() and history.is_file() else 0


def train_runs(todo: Plan, progress: bool = True, stop_after_epoch: int | None = None) -> dict[Run, dict]:
    """Generate the benchmark (unless it is there), then train (or resume, or skip) every run; the final
    test metrics per run. Runs another process is training (a study sharing ``out``) are left to it and
    waited for once nothing else is left. ``stop_after_epoch=k`` trains every run only up to epoch ``k`` of its
    schedule (successive halving's first rung; the same call without it finishes them): only runs already
    finished have metrics then."""
    import time

    from tqdm import tqdm

    from ..detection.engine import train_detector
    from ..io import claim
    from .ablation import StudyInterrupted

    generate_benchmark(todo)
    metrics, pending = {}, list(todo.runs)
    bar = tqdm(total=len(pending), desc="detection runs", disable=not progress)
    while pending:
        elsewhere = []
        for run_ in pending:
            run_.run_dir.mkdir(parents=True, exist_ok=True)
            with claim(run_.run_dir / CLAIM_FILE) as mine:
                if not mine:
                    elsewhere.append(run_)
                    continue
                config = todo.configs[run_.run_dir]
                # Read again, not the plan's: another study sharing the directory may have run it since.
                state = _run_state(run_.run_dir, config, todo.benchmark_params)
                bar.set_postfix_str(f"{run_.arch.label} seed {run_.seed} ({state})")
                if state != "done" and not (stop_after_epoch and epochs_done(run_.run_dir) >= stop_after_epoch):
                    config.resume = state == "resume"
                    atomic_write_json(run_.run_dir / RUN_SETTINGS, _settings(config, todo.benchmark_params))
                    hint = f"{run_.run_dir} saved; run the same command again to resume the study"
                    if train_detector(config, stop_note=hint, stop_after_epoch=stop_after_epoch).get("interrupted"):
                        raise StudyInterrupted(hint)
            if _run_state(run_.run_dir, todo.configs[run_.run_dir], todo.benchmark_params) == "done":
                metrics[run_] = json.loads((run_.run_dir / "metrics.json").read_text())
            bar.update(1)
        if elsewhere:
            bar.set_postfix_str(f"waiting for {len(elsewhere)} run(s) another process is training")
            time.sleep(WAIT_SECONDS)
        pending = elsewhere
    bar.close()
    return metrics


def rung(out: str | Path, architectures: Sequence[str], seeds: Sequence[int], stop_after_epoch: int,
         benchmark: str | Path | None = None, benchmark_sizes: dict | None = None, threads: int = 1,
         progress: bool = True, **overrides) -> list[dict]:
    """Successive halving's rung: every (architecture, seed) trained only up to epoch ``stop_after_epoch`` of the
    recipe's schedule (resuming, skipping runs already there), and each run's mean training loss in that epoch,
    lowest first. The runs are the study's own: :func:`run` with the same arguments finishes them."""
    todo = plan(out, architectures, seeds, benchmark, benchmark_sizes, threads=threads, **overrides)
    epochs = todo.configs[todo.runs[0].run_dir].epochs
    if not 1 <= stop_after_epoch <= epochs:
        raise ValueError(f"--stop-after-epoch must be in 1…{epochs} (the recipe's epochs), got {stop_after_epoch}")
    train_runs(todo, progress, stop_after_epoch)
    rows = []
    for run_ in todo.runs:
        history = json.loads((run_.run_dir / "history.json").read_text())
        rows.append(dict(arch=run_.arch.label, seed=run_.seed, epoch=stop_after_epoch,
                         loss=history[stop_after_epoch - 1]["loss"], run_dir=str(run_.run_dir)))
    return sorted(rows, key=lambda r: r["loss"])


def summarize(values: Sequence[float]) -> dict:
    """Mean, sample SD and standard error (SD / √n) of per-seed values; SD and SE need two values."""
    values = list(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    return dict(mean=statistics.fmean(values), sd=sd, se=sd / math.sqrt(len(values)) if sd is not None else None)


def run(out: str | Path, architectures: Sequence[str], seeds: Sequence[int] = (0, 1, 2),
        benchmark: str | Path | None = None, benchmark_sizes: dict | None = None, runtime: str = "onnxruntime",
        latency_size: int = 320, threads: int = 1, warmup: int = 10, runs: int = 50, progress: bool = True,
        **overrides) -> StudyResult:
    """Train every (architecture, seed) (resuming, skipping finished runs), then time every body in one
    interleaved run; the table of test AP mean ± SE and latency per architecture."""
    from ..bench import environment, time_modules
    from ..detection.backbone import ssdlite_body
    from ..detection.config import BENCHMARK_RECIPE
    from ..names import RUNTIMES
    from ..profile import profile

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    todo = plan(out, architectures, seeds, benchmark, benchmark_sizes, threads=threads, **overrides)
    metrics = train_runs(todo, progress)

    archs = list(dict.fromkeys(r.arch for r in todo.runs))
    bodies = {a.label: ssdlite_body(a.backbone) for a in archs}
    timing = time_modules(bodies, runtime, (1, 3, latency_size, latency_size), threads=threads, warmup=warmup,
                          runs=runs, progress=progress)
    rows = []
    for arch in archs:
        done = [r for r in todo.runs if r.arch == arch]
        ap = [metrics[r]["bbox"]["AP"] for r in done]
        stats = summarize(ap)
        cost = profile(bodies[arch.label], (1, 3, latency_size, latency_size))
        rows.append(dict(arch=arch.label, backbone=arch.backbone, seeds=len(ap), ap_mean=stats["mean"],
                         ap_se=stats["se"], ap_sd=stats["sd"], ap_runs=[round(v, 2) for v in ap],
                         ap50_mean=statistics.fmean(metrics[r]["bbox"]["AP50"] for r in done),
                         median_ms=timing[arch.label]["median_ms"], p90_ms=timing[arch.label]["p90_ms"],
                         params_m=cost.params / 1e6, macs_g=cost.macs / 1e9))
    config0 = todo.configs[todo.runs[0].run_dir]
    recipe = {**BENCHMARK_RECIPE, **overrides}
    splits = todo.benchmark_params["splits"]
    notes = [f"test AP: COCO box AP on the benchmark's test split ({splits['test']} images; trained on "
             f"{splits['train']}, {todo.benchmark_params['image_size']}²), once per run at its end; mean ± "
             f"SE (sample SD / √n) over seeds {list(seeds)}. Recipe: {_describe(recipe)}.",
             f"latency: each architecture's SSDLite body (deploy form, up to stride 32), {runtime}, batch 1, "
             f"{latency_size}², {threads} thread(s), {warmup} warm-up + {runs} rounds with every body timed once "
             "per round (one interleaved run); median and p90 per body."]
    return StudyResult(
        name="detection", title="Stand-alone SSDLite on the detection benchmark: test AP and body latency",
        columns=COLUMNS, rows=rows, notes=notes,
        meta=dict(environment=environment(), architectures={a.label: a.backbone for a in archs}, seeds=list(seeds),
                  recipe=recipe, epochs=config0.epochs, benchmark=str(todo.benchmark),
                  benchmark_params=todo.benchmark_params, runtime=runtime,
                  latency_size=latency_size, threads=threads, warmup=warmup, runs=runs,
                  runs_dir=str(Path(out) / "runs")),
        plot=_plot)


def _describe(recipe: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in recipe.items() if k not in ("workers", "eval_every"))


def claims(rows: list[dict]) -> list:
    """The study answers no paper claim; its table is the result (kept for :func:`repghost.study.rerender`)."""
    return []


def _plot(result: StudyResult, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for row in result.rows:
        ax.errorbar(row["median_ms"], row["ap_mean"], yerr=row["ap_se"] or 0, fmt="o", capsize=4)
        ax.scatter([row["median_ms"]] * len(row["ap_runs"]), row["ap_runs"], color="k", s=8, zorder=3)
        ax.annotate(row["arch"], (row["median_ms"], row["ap_mean"]), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    ax.set_xlabel(f"SSDLite body latency, median ms ({result.meta['runtime']}, {result.meta['latency_size']}²)")
    ax.set_ylabel("test AP, mean ± SE (dots: seeds)")
    ax.grid(alpha=0.3)
    ax.set_title(result.title, fontsize=9)
    fig.tight_layout()
    return {"png": save_figure(fig, Path(out_dir) / f"{result.name}.png")}
