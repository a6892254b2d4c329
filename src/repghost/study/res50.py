"""Ghost-Res50 vs RepGhost-Res50 (ratio s = 2, 4): params, MACs and latency on this machine.

The paper's claim: RepGhost-Res50 (s=2) is 22 % faster than Ghost-Res50 (s=4) with MNN on a phone
CPU and 44 % faster with TensorRT on a T4 at batch 32, at comparable accuracy. Here both are
timed in their deploy form (BN folded; RepGhost branches folded) through the latency harness, at
each batch size and runtime, the four models interleaved round by round.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..bench import BenchConfig, environment, run_benchmark
from ..models import create_model
from ..models.resnet import RATIOS
from ..profile import profile
from .report import Claim, Column, StudyResult, faster_or_slower, save_figure

FAMILIES = ("ghost_resnet50", "repghost_resnet50")
#: batch size → (the paper's setting, its speed-up ``1 − t(RepGhost-Res50 s=2) / t(Ghost-Res50 s=4)``).
PAPER_SPEEDUP = {1: ("MNN, phone CPU", 0.22), 32: ("TensorRT, T4 GPU", 0.44)}
CLAIM_FAST, CLAIM_SLOW = "repghost_resnet50_s2", "ghost_resnet50_s4"

PARAMS_NOTE = ("params: every learnable parameter of the train form (conv, BN affine, the full 2048→1000 "
               "classifier for Ghost-Res50); MACs: conv + linear at batch 1 (train form). With this "
               "convention Ghost-Res50 has 13.95M (s=2) / 8.15M (s=4) params; the GhostNet paper's 13.0M / 6.5M "
               "come out only if the classifier is divided by s too.")


COLUMNS = [Column("model", "model"), Column("params_m", "params M", ".2f"), Column("macs_g", "MACs G", ".3f"),
           Column("runtime", "runtime"), Column("batch", "batch"), Column("median_ms", "median ms", ".1f"),
           Column("p90_ms", "p90 ms", ".1f"), Column("min_ms", "min ms", ".1f"),
           Column("ms_per_image", "median ms / image", ".2f")]


def check_ratios(ratios: Sequence[int]) -> list[int]:
    bad = [s for s in ratios if s not in RATIOS]
    if bad or not ratios:
        raise ValueError(f"ratio {bad[0] if bad else '()'} has no registered model; choose from "
                         f"{', '.join(map(str, RATIOS))}")
    return sorted(set(ratios))


def run(ratios: Sequence[int] = RATIOS, batch_sizes: Sequence[int] = (1, 32), runtimes: Sequence[str] = (
        "eager", "onnxruntime"), threads: int = 1, img_size: int = 224, warmup: int = 3, runs: int = 20,
        progress: bool = True) -> StudyResult:
    ratios = check_ratios(ratios)
    names = [f"{family}_s{s}" for family in FAMILIES for s in ratios]
    costs = {n: profile(create_model(n), (1, 3, img_size, img_size)) for n in names}
    config = BenchConfig(models=[f"{n}@deploy" for n in names], runtimes=tuple(runtimes), threads=(threads,),
                         batch_sizes=tuple(batch_sizes), img_sizes=(img_size,), warmup=warmup, runs=runs,
                         progress=progress)
    results = run_benchmark(config)
    rows = []
    for r in results:
        cost = costs[r.model]
        rows.append(dict(model=r.model, runtime=r.runtime, batch=r.batch, threads=r.threads,
                         params_m=cost.params / 1e6, macs_g=cost.macs / 1e9, median_ms=r.median_ms, p90_ms=r.p90_ms,
                         min_ms=r.min_ms,
                         ms_per_image=r.median_ms / r.batch if r.median_ms is not None else None, runs=r.runs,
                         error=r.error))
    return StudyResult(
        name="res50", title=f"Ghost-Res50 vs RepGhost-Res50, {img_size}², {threads} thread(s), deploy form",
        columns=COLUMNS, rows=rows, claims=claims(rows), notes=[PARAMS_NOTE],
        meta=dict(environment=environment(), ratios=ratios, batch_sizes=list(batch_sizes), runtimes=list(runtimes),
                  threads=threads, img_size=img_size, warmup=warmup, runs=runs),
        plot=_plot)


def speedups(rows: list[dict], key: str = "median_ms") -> dict[tuple[str, int], float]:
    """``1 − t(RepGhost-Res50 s=2) / t(Ghost-Res50 s=4)`` per (runtime, batch): the paper's "% faster"."""
    out = {}
    for row in rows:
        if row["model"] != CLAIM_FAST or row[key] is None:
            continue
        slow = next((r for r in rows if r["model"] == CLAIM_SLOW and r["runtime"] == row["runtime"]
                     and r["batch"] == row["batch"] and r[key] is not None), None)
        if slow is not None:
            out[row["runtime"], row["batch"]] = 1 - row[key] / slow[key]
    return out


def claims(rows: list[dict]) -> list[Claim]:
    """One claim per (runtime, batch) timed, judged on medians (the project's convention; the fastest
    rounds' ratio is shown beside them) against the paper's figure at the same batch size; at a batch
    size the paper gives no figure for, only the direction is judged."""
    by_min = speedups(rows, "min_ms")
    out = []
    for (runtime, batch), gain in speedups(rows).items():
        setting, paper_gain = PAPER_SPEEDUP.get(batch, (None, None))
        paper = (f"{faster_or_slower(paper_gain)} ({setting}, batch {batch})" if setting else
                 f"no figure at batch {batch} ("
                 + "; ".join(f"{faster_or_slower(g)} at batch {b}, {s}" for b, (s, g) in PAPER_SPEEDUP.items()) + ")")
        out.append(Claim.judged(f"RepGhost-Res50 s=2 faster than Ghost-Res50 s=4 ({runtime}, batch {batch})", paper,
                                f"median: {faster_or_slower(gain)}; min: {faster_or_slower(by_min[runtime, batch])}",
                                paper_gain, gain))
    return out


def _plot(result: StudyResult, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = sorted({(r["runtime"], r["batch"]) for r in result.rows})
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 4), squeeze=False)
    for ax, (runtime, batch) in zip(axes[0], settings, strict=True):
        rows = [r for r in result.rows if (r["runtime"], r["batch"]) == (runtime, batch) and r["median_ms"]]
        for family, marker in zip(FAMILIES, "os", strict=True):
            pts = [r for r in rows if r["model"].startswith(family + "_")]
            ax.plot([r["macs_g"] for r in pts], [r["ms_per_image"] for r in pts], marker + "-", label=family)
            for r in pts:
                ax.annotate(r["model"].rsplit("_", 1)[1], (r["macs_g"], r["ms_per_image"]), fontsize=8,
                            textcoords="offset points", xytext=(4, 4))
        ax.set_title(f"{runtime}, batch {batch}")
        ax.set_xlabel("MACs (G, 224²)")
        ax.set_ylabel("median ms per image")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return {"png": save_figure(fig, out_dir / f"{result.name}.png")}
