"""The paper's Concat-vs-Add study (its Fig. 1 and 2) as a study: the per-operator profiling lives
in :mod:`repghost.bench.concat_add`; this module turns its rows into a :class:`StudyResult`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from ..bench import environment
from ..bench.concat_add import run_study
from .report import Claim, Column, StudyResult

#: The paper's figure: on an ARM phone the 32 Concats of GhostNet 1.0× took about 2× the time of Adds on
#: tensors of the same shapes, across batch sizes (PAPER.md).
PAPER_RATIO = 2.0

COLUMNS = [Column("batch", "batch"), Column("concat_ms", "32 Concat ms", ".3f"),
           Column("add_ms", "32 Add ms", ".3f"), Column("ratio", "Concat / Add", ".2f"),
           Column("slice_ms", "Slice ms", ".3f"), Column("concat_op_share", "Concat share", ".1%"),
           Column("add_op_share", "Add share", ".1%"), Column("concat_total_ms", "ghostnet_100 ms", ".2f"),
           Column("add_total_ms", "ghostnet_add_100 ms", ".2f")]


def _times_add(excess: float) -> str:
    return f"Concat {1 + excess:.2f}× Add"


def claims(rows: list[dict]) -> list[Claim]:
    """One claim per batch size; the figure judged is the time Concat takes beyond Add's (ratio − 1)."""
    return [Claim.judged(f"Concat takes ~{PAPER_RATIO:g}× the time of Add on tensors of the same shapes (batch "
                         f"{r['batch']})", f"about {PAPER_RATIO:g}× (ARM phone, every batch size)",
                         f"{r['concat_ms']:.3f} vs {r['add_ms']:.3f} ms: {r['ratio']:.2f}×", PAPER_RATIO - 1,
                         r["ratio"] - 1, describe=_times_add)
            for r in rows]


def run(batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32), img_size: int = 224, runs: int = 10, warmup: int = 3,
        threads: int = 1, opt_level: str = "basic", progress: bool = True) -> StudyResult:
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be ≥ 1, got {list(batch_sizes)}")
    study_rows = run_study(batch_sizes, img_size, runs=runs, warmup=warmup, threads=threads, opt_level=opt_level,
                           progress=progress)
    rows = [dict(asdict(r), ratio=r.ratio, concat_op_share=r.concat_share.get("Concat", 0.0),
                 add_op_share=r.add_share.get("Add (merge)", 0.0)) for r in study_rows]
    return StudyResult(
        name="concat_add", title=f"Concat vs Add in GhostNet 1.0× (paper Fig. 1, 2): onnxruntime profiler, "
                                 f"{img_size}², {threads} thread(s), graph optimization {opt_level}",
        columns=COLUMNS, rows=rows, claims=claims(rows),
        meta=dict(environment=environment(), img_size=img_size, threads=threads, runs=runs, warmup=warmup,
                  opt_level=opt_level),
        plot=_plot)


def _plot(result: StudyResult, out_dir):
    from ..bench.concat_add import StudyRow
    from ..bench.plots import plot_study

    fields = StudyRow.__dataclass_fields__
    rows = [StudyRow(**{k: v for k, v in r.items() if k in fields}) for r in result.rows]
    paths = plot_study(rows, out_dir)
    # The study's files share its name: concat_add.png (Fig. 1) and concat_add_share.png (Fig. 2).
    return {"png": paths["runtime_png"].replace(out_dir / f"{result.name}.png"),
            "share_png": paths["share_png"].replace(out_dir / f"{result.name}_share.png")}
