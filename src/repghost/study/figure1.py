"""The paper's accuracy–latency figure (its Fig. 1 / Fig. 6) with latency measured on this machine.

x: median latency here (batch 1, deploy form, one runtime); y: the paper's ImageNet top-1 (we do
not retrain on ImageNet). The table puts our latency beside the paper's phone latency (ARM CPU,
MNN) and the headline claims are answered with ratios from one interleaved run.

Which GhostNet point is which width: the paper's figure gives six GhostNet points without
widths; we take 0.5× = (31.7 ms, 66.4 %), 1.0× = (74.5, 74.0), 1.3× = (117.6, 76.2), the points
whose latency ranks match the MACs of those widths (42 M, 141 M, 226 M) next to RepGhostNet's.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..names import RUNTIMES
from .report import Claim, Column, StudyResult, faster_or_slower, save_figure

#: model spec → (family, label, paper phone latency ms, paper top-1 %), from PAPER.md.
PAPER_POINTS = {
    "repghostnet_050": ("RepGhostNet", "0.5×", 25.1, 66.9), "repghostnet_058": ("RepGhostNet", "0.58×", 31.9, 68.9),
    "repghostnet_080": ("RepGhostNet", "0.8×", 44.5, 72.2), "repghostnet_100": ("RepGhostNet", "1.0×", 62.2, 74.2),
    "repghostnet_111": ("RepGhostNet", "1.11×", 71.5, 75.1), "repghostnet_130": ("RepGhostNet", "1.3×", 92.9, 76.4),
    "repghostnet_150": ("RepGhostNet", "1.5×", 116.9, 77.5), "repghostnet_200": ("RepGhostNet", "2.0×", 190.0, 78.8),
    "ghostnet_050": ("GhostNet", "0.5×", 31.7, 66.4), "ghostnet_100": ("GhostNet", "1.0×", 74.5, 74.0),
    "ghostnet_130": ("GhostNet", "1.3×", 117.6, 76.2),
    "timm:mobilenetv3_small_075": ("MobileNetV3", "S 0.75×", 26.0, 65.4),
    "timm:mobilenetv3_small_100": ("MobileNetV3", "S 1.0×", 31.9, 67.4),
    "timm:mobilenetv3_large_075": ("MobileNetV3", "L 0.75×", 72.0, 73.3),
    "timm:mobilenetv3_large_100": ("MobileNetV3", "L 1.0×", 95.2, 75.2),
}

#: (claim, the model claimed faster or as fast, the model it is compared with, whether the claim is of
#: comparable latency rather than a speed-up).
HEADLINES = [
    ("RepGhostNet 0.5× ~20 % faster than GhostNet 0.5×", "repghostnet_050", "ghostnet_050", False),
    ("RepGhostNet 1.0× 14 % faster than MobileNetV3-L 0.75×", "repghostnet_100", "timm:mobilenetv3_large_075", False),
    ("RepGhostNet 0.58× at comparable latency to GhostNet 0.5× (+2.5 % top-1)", "repghostnet_058", "ghostnet_050",
     True),
    ("RepGhostNet 1.11× at comparable latency to MobileNetV3-L 0.75× (+1.6 % top-1)", "repghostnet_111",
     "timm:mobilenetv3_large_075", True),
]
FAMILY_STYLE = {"RepGhostNet": "o-", "GhostNet": "s-", "MobileNetV3": "^-"}


COLUMNS = [Column("family", "family"), Column("width", "width"), Column("model", "model"),
           Column("params_m", "params M", ".2f"), Column("macs_m", "MACs M", ".1f"),
           Column("median_ms", "our median ms", ".2f"), Column("p90_ms", "our p90 ms", ".2f"),
           Column("min_ms", "our min ms", ".2f"),
           Column("paper_phone_ms", "paper phone ms", ".1f"), Column("paper_top1", "paper top-1 %", ".1f")]


def figure_point(name: str) -> str:
    """The model spec of a point of the figure: its spec (``timm:mobilenetv3_large_075``) or, where only one
    point has it, its bare name (``mobilenetv3_large_075``)."""
    if name in PAPER_POINTS:
        return name
    matches = [spec for spec in PAPER_POINTS if spec.rpartition(":")[2] == name]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"{name!r} is not a point of the figure; choose from {', '.join(PAPER_POINTS)}")


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    return runtime


def run(runtime: str = "onnxruntime", threads: int = 1, img_size: int = 224, warmup: int = 5, runs: int = 100,
        models: Sequence[str] | None = None, progress: bool = True) -> StudyResult:
    """Time every model of the figure (or ``models``, a subset of :data:`PAPER_POINTS`) at batch 1."""
    # Imported here, not at the top: the command line lists PAPER_POINTS in its help without torch.
    from ..bench import BenchConfig, environment, run_benchmark

    check_runtime(runtime)
    models = [figure_point(m) for m in models] if models else list(PAPER_POINTS)
    config = BenchConfig(models=[f"{m}@deploy" for m in models], runtimes=(runtime,), threads=(threads,),
                         batch_sizes=(1,), img_sizes=(img_size,), warmup=warmup, runs=runs, progress=progress)
    # run_benchmark names a result by its spec without the form: "repghostnet_050", "timm:mobilenetv3_…".
    results = {r.model: r for r in run_benchmark(config)}
    rows = []
    for m in models:
        family, label, paper_ms, top1 = PAPER_POINTS[m]
        r = results[m]
        rows.append(dict(model=m, family=family, width=label, params_m=r.params_m, macs_m=r.macs_m,
                         median_ms=r.median_ms, p90_ms=r.p90_ms, min_ms=r.min_ms, paper_phone_ms=paper_ms,
                         paper_top1=top1,
                         error=r.error))
    return StudyResult(
        name="figure1", title=f"Accuracy–latency (paper Fig. 1): {runtime}, {threads} thread(s), batch 1, "
                              f"{img_size}², deploy form",
        columns=COLUMNS, rows=rows, claims=claims(rows),
        notes=["y = the paper's ImageNet top-1 (not retrained here); x = latency measured on this machine.",
               "GhostNet widths of the paper's points are our assignment (see repghost.study.figure1)."],
        meta=dict(environment=environment(), runtime=runtime, threads=threads, img_size=img_size, warmup=warmup,
                  runs=runs),
        plot=_plot)


def claims(rows: list[dict]) -> list[Claim]:
    """The headline claims whose two models are among ``rows``, judged by :func:`~.report.judge`."""
    by_model = {r["model"]: r for r in rows}
    return [_claim(text, by_model[fast], by_model[slow], comparable) for text, fast, slow, comparable in HEADLINES
            if fast in by_model and slow in by_model]


def _claim(text: str, a: dict, b: dict, comparable: bool) -> Claim:
    """Judged on medians (the project's convention); the fastest rounds' ratio is shown beside them.
    The paper's figure is the gain ``1 − t_a / t_b`` of its phone latencies."""
    paper_fast, paper_slow = PAPER_POINTS[a["model"]][2], PAPER_POINTS[b["model"]][2]
    paper_gain = 1 - paper_fast / paper_slow
    paper = f"{paper_fast:.1f} vs {paper_slow:.1f} ms: {faster_or_slower(paper_gain)}"
    if a["median_ms"] is None or b["median_ms"] is None:
        return Claim.judged(text, paper, "not measured (runtime failed)", paper_gain, None)
    gain = 1 - a["median_ms"] / b["median_ms"]
    measured = (f"median {a['median_ms']:.2f} vs {b['median_ms']:.2f} ms: {faster_or_slower(gain)}; "
                f"min {a['min_ms']:.2f} vs {b['min_ms']:.2f} ms: {faster_or_slower(1 - a['min_ms'] / b['min_ms'])}")
    return Claim.judged(text, paper, measured, paper_gain, gain, comparable=comparable)


def _plot(result: StudyResult, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, key, xlabel in ((axes[0], "median_ms", f"latency here (ms, {result.meta['runtime']})"),
                            (axes[1], "paper_phone_ms", "paper's phone latency (ms, MNN)")):
        for family, style in FAMILY_STYLE.items():
            pts = sorted((r for r in result.rows if r["family"] == family and r[key] is not None),
                         key=lambda r: r[key])
            if not pts:
                continue
            ax.plot([r[key] for r in pts], [r["paper_top1"] for r in pts], style, label=family)
            for r in pts:
                ax.annotate(r["width"], (r[key], r["paper_top1"]), fontsize=7, textcoords="offset points",
                            xytext=(3, -9))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("paper ImageNet top-1 (%)")
    fig.suptitle(result.title, fontsize=10)
    fig.tight_layout()
    return {"png": save_figure(fig, out_dir / f"{result.name}.png")}
