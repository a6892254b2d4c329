"""The paper's ablations on your data: the identity branch of the re-parameterization (its Fig. 9:
BN / identity / 1×1 depthwise + BN / none) and the identity shortcuts (its Fig. 10: with / without).

Each variant of RepGhostNet at one width is trained with the same recipe for every seed; each run
is an ordinary training run directory (``OUT/runs/<variant>-seed<k>``), so a study that stops
resumes the unfinished run from its ``last.pt`` and skips the finished ones (those with a
``best_deploy.safetensors``). Top-1 is the run's best validation top-1 (raw or EMA weights, as
``repghost train`` reports it); latency is of the deploy form of each variant's first seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..names import RUNTIMES
from .report import Claim, Column, StudyResult, faster_or_slower, save_figure

#: variant → (ablation, model keyword arguments). "bn" is the paper's RepGhost, the reference of both.
VARIANTS = {
    "bn": ("both (reference)", dict(reparam="bn", shortcut=True)),
    "identity": ("identity branch", dict(reparam="identity", shortcut=True)),
    "dw1x1": ("identity branch", dict(reparam="dw1x1", shortcut=True)),
    "none": ("identity branch", dict(reparam="none", shortcut=True)),
    "no-shortcut": ("shortcut", dict(reparam="bn", shortcut=False)),
}
#: The settings that make two runs the same run: a finished run is reused only when these agree.
RUN_KEYS = ("model", "model_kwargs", "data", "seed", "epochs", "batch_size", "img_size")


COLUMNS = [Column("variant", "variant"), Column("ablation", "ablation"), Column("reparam", "identity branch"),
           Column("shortcut", "shortcut"), Column("seeds", "seeds"), Column("top1_mean", "top-1 mean %", ".2f"),
           Column("top1_std", "top-1 std", ".2f"), Column("deploy_params_m", "deploy params M", ".3f"),
           Column("median_ms", "deploy median ms", ".2f"), Column("p90_ms", "p90 ms", ".2f")]
#: The identity-branch variants the paper's Fig. 9 compares with BN ("bn", the reference).
IDENTITY_BRANCH_RIVALS = ("identity", "dw1x1", "none")


class StudyInterrupted(RuntimeError):
    """A run of the study stopped on Ctrl-C, resumably; its training loop has printed the one line."""


def model_for_width(width: float) -> str:
    from ..models.repghostnet import WIDTHS

    names = [name for name, w in WIDTHS.items() if math.isclose(w, width)]
    if not names:
        raise ValueError(f"no RepGhostNet of width {width}; widths: {', '.join(str(w) for w in WIDTHS.values())}")
    return names[0]


def check_variants(variants: Sequence[str]) -> list[str]:
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise ValueError(f"unknown variant {repr(bad[0]) if bad else '(none given)'}; choose from "
                         f"{', '.join(VARIANTS)}")
    return list(dict.fromkeys(variants))


def _run_dir_state(run_dir: Path, cfg) -> str:
    """``done``, ``resume`` or ``new``; a directory holding a run with other settings is an error."""
    saved = run_dir / "config.yaml"
    if saved.is_file():
        old = yaml.safe_load(saved.read_text()) or {}
        new = {k: getattr(cfg, k) for k in RUN_KEYS}
        differ = [k for k in RUN_KEYS if old.get(k) != new[k]]
        if differ:
            raise ValueError(f"{run_dir} holds a run with other settings ({', '.join(differ)}); "
                             "use another --out or remove it")
    if (run_dir / "best_deploy.safetensors").is_file():
        return "done"
    return "resume" if (run_dir / "last.pt").is_file() else "new"


def plan(out: str | Path, data: str | None = None, width: float = 0.5, seeds: Sequence[int] = (0, 1, 2),
         variants: Sequence[str] = tuple(VARIANTS), recipe: str | None = None, **overrides) -> list[tuple]:
    """Check everything and list the runs ``(variant, seed, config, run_dir, state)`` before any training."""
    from ..data import build_datasets
    from ..train import resolve_config

    model = model_for_width(width)
    variants = check_variants(variants)
    if not seeds:
        raise ValueError("give at least one seed")
    build_datasets(data)  # an unreadable or malformed data folder fails here, before any training
    runs_dir = Path(out) / "runs"
    runs = []
    # Seed-major: a study stopped early has every variant at the first seeds rather than some at all.
    for seed in seeds:
        for variant in variants:
            name = f"{variant}-seed{seed}"
            cfg = resolve_config(recipe, model=model, model_kwargs=dict(VARIANTS[variant][1]), data=data, seed=seed,
                                 output=str(runs_dir), name=name, **overrides)
            runs.append((variant, seed, cfg, runs_dir / name, _run_dir_state(runs_dir / name, cfg)))
    return runs


def run(out: str | Path, data: str | None = None, width: float = 0.5, seeds: Sequence[int] = (0, 1, 2),
        variants: Sequence[str] = tuple(VARIANTS), recipe: str | None = None, runtime: str = "onnxruntime",
        latency_size: int = 224, threads: int = 1, warmup: int = 5, runs: int = 30, progress: bool = True,
        **overrides) -> StudyResult:
    """Train (or resume, or skip) every (variant, seed), then time each variant's deploy form."""
    # Imported here, not at the top: the command line reads VARIANTS to build its parser without torch.
    from tqdm import tqdm

    from ..bench import environment, time_modules
    from ..checkpoint import load_model, read_metadata
    from ..data import describe_data
    from ..profile import profile
    from ..train import train

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    todo = plan(out, data, width, seeds, variants, recipe, progress=progress, **overrides)
    top1: dict[str, list[float]] = {}
    deploy_paths: dict[str, Path] = {}
    bar = tqdm(todo, desc="ablation runs", disable=not progress)
    for variant, seed, cfg, run_dir, state in bar:
        bar.set_postfix_str(f"{variant} seed {seed} ({state})")
        if state != "done":
            # Ctrl-C's one line (the training loop's) says how to go on with the study, not with the run.
            hint = f"{run_dir} saved; run the same command again to resume the study"
            result = train(resume=run_dir / "last.pt", stop_note=hint) if state == "resume" else \
                train(cfg, stop_note=hint)
            if result.interrupted:
                raise StudyInterrupted(hint)
        meta = read_metadata(run_dir / "best_deploy.safetensors")
        top1.setdefault(variant, []).append(float(meta["extra"]["best_top1"]))
        deploy_paths.setdefault(variant, run_dir / "best_deploy.safetensors")

    deployed = {v: load_model(p) for v, p in deploy_paths.items()}
    timing = time_modules(deployed, runtime, (1, 3, latency_size, latency_size), threads=threads, warmup=warmup,
                          runs=runs, progress=progress)
    rows = []
    for variant in dict.fromkeys(v for v, *_ in todo):
        scores, (group, kwargs) = top1[variant], VARIANTS[variant]
        cost = profile(deployed[variant], (1, 3, latency_size, latency_size))
        rows.append(dict(variant=variant, ablation=group, reparam=kwargs["reparam"], shortcut=kwargs["shortcut"],
                         seeds=len(scores), top1_mean=statistics.fmean(scores),
                         top1_std=statistics.stdev(scores) if len(scores) > 1 else None, top1_runs=scores,
                         deploy_params_m=cost.params / 1e6, deploy_macs_m=cost.macs / 1e6,
                         median_ms=timing[variant]["median_ms"], p90_ms=timing[variant]["p90_ms"]))
    cfg0 = todo[0][2]
    notes = [f"top-1: best validation top-1 of each run, mean ± sample std over seeds {list(seeds)}; recipe: "
             f"{cfg0.epochs} epochs, batch {cfg0.batch_size}, {cfg0.img_size}² ({describe_data(data)}).",
             f"latency: deploy form of each variant's first seed, {runtime}, batch 1, {latency_size}², "
             f"{threads} thread(s). bn / identity / dw1x1 / none fold to the same deploy architecture, so their "
             "latencies differ only by noise; only the shortcut changes the deploy graph."]
    return StudyResult(
        name="ablation", title=f"RepGhostNet {width}× ablations (paper Fig. 9, 10) on {describe_data(data)}",
        columns=COLUMNS, rows=rows, claims=claims(rows), notes=notes,
        meta=dict(environment=environment(), width=width, model=cfg0.model, data=describe_data(data),
                  seeds=list(seeds), epochs=cfg0.epochs, runtime=runtime, latency_size=latency_size, threads=threads,
                  runs_dir=str(Path(out) / "runs")),
        plot=_plot)


def claims(rows: list[dict]) -> list[Claim]:
    """The paper's ablation claims that ``rows`` can answer. The paper's figures for them are not known
    (PAPER.md), so top-1 claims are judged on their direction only, and a top-1 difference no larger
    than the seeds' standard deviation is undecided."""
    by_variant = {r["variant"]: r for r in rows}
    bn = by_variant.get("bn")
    if bn is None:
        return []
    out = []
    rivals = [by_variant[v] for v in IDENTITY_BRANCH_RIVALS if v in by_variant]
    if rivals:
        best = max(rivals, key=lambda r: r["top1_mean"])
        out.append(_top1_claim("BN on the identity branch gives the best top-1 (Fig. 9)",
                               "BN best of BN / identity / 1×1 dw + BN / none", bn, best))
    if "no-shortcut" in by_variant:
        cut = by_variant["no-shortcut"]
        out.append(_top1_claim("Removing the identity shortcuts lowers top-1 (Fig. 10)", "lower top-1", bn, cut))
        if bn["median_ms"] and cut["median_ms"]:
            gain = 1 - cut["median_ms"] / bn["median_ms"]
            out.append(Claim.judged("Removing the identity shortcuts barely changes latency (Fig. 10)",
                                    "barely changes (mobile)", f"no-shortcut {cut['median_ms']:.2f} vs bn "
                                    f"{bn['median_ms']:.2f} ms: {faster_or_slower(gain)}", None, gain,
                                    comparable=True))
    return out


def _top1_claim(text: str, paper: str, bn: dict, other: dict) -> Claim:
    def mean_std(r: dict) -> str:
        return f"{r['top1_mean']:.2f}" + (f" ± {r['top1_std']:.2f}" if r["top1_std"] is not None else "") + " %"

    stds = [r["top1_std"] for r in (bn, other) if r["top1_std"] is not None]
    return Claim.judged(text, paper, f"bn {mean_std(bn)} vs {other['variant']} {mean_std(other)} (mean ± std over "
                                     f"seeds)", None, bn["top1_mean"] - other["top1_mean"],
                        describe=lambda d: f"{d:+.2f} points", noise=max(stds) if len(stds) == 2 else None)


def _plot(result: StudyResult, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows
    names = [r["variant"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].bar(names, [r["top1_mean"] for r in rows], yerr=[r["top1_std"] or 0 for r in rows], capsize=4)
    for i, r in enumerate(rows):
        axes[0].scatter([i] * len(r["top1_runs"]), r["top1_runs"], color="k", s=10, zorder=3)
    low = min(min(r["top1_runs"]) for r in rows)
    axes[0].set_ylim(max(0.0, low - 5), 100)
    axes[0].set_ylabel("val top-1 (%), mean ± std, dots = seeds")
    axes[1].bar(names, [r["median_ms"] for r in rows])
    axes[1].set_ylabel(f"deploy latency, median ms ({result.meta['runtime']})")
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(result.title, fontsize=10)
    fig.tight_layout()
    return {"png": save_figure(fig, out_dir / f"{result.name}.png")}
