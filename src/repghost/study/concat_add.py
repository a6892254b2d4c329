"""The paper's Concat-vs-Add study (its Fig. 1 and 2), on this machine through onnxruntime's profiler.

GhostNet 1.0× merges the two halves of each of its 32 Ghost modules with a Concat (a Slice to
the module width follows only where that width is odd); ``ghostnet_add_100`` merges the same two
tensors with an Add. Both are exported with the legacy exporter, whose node names carry the module
path (``…/ghost1/Concat``), so the 32 merge operators are told apart from the 16 shortcut Adds.
For each batch size the models run with onnxruntime's per-node profiler on; the study reports the
cumulative time of the 32 merge operators per forward pass and each operator type's share of the total.

onnxruntime's ``basic`` graph optimization is the default here: it folds constants and BNs but
keeps Concat and Add as nodes of their own; ``all`` may fuse an Add into the conv that follows
(NCHWc layout), which hides the very operator under study.

:func:`run_study` measures and returns one :class:`StudyRow` per batch size; :func:`run` judges the
paper's claim on them as a :class:`StudyResult` (``repghost study concat-add``; ``repghost bench
--concat-vs-add`` is an alias).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..bench import environment
from ..deploy.onnx_export import INPUT_NAME, export_onnx, session
from ..io import scratch_dir
from ..models import create_model
from ..progress import progress as progress_bar
from .report import Claim, Column, StudyResult, save_figure

MODELS = {"concat": "ghostnet_100", "add": "ghostnet_add_100"}


@dataclass
class StudyRow:
    batch: int
    concat_ms: float        # the 32 merge Concats, per forward pass
    slice_ms: float         # the Slices that follow them (the module width cut)
    add_ms: float           # the 32 merge Adds of ghostnet_add_100
    concat_total_ms: float  # all node time of ghostnet_100
    add_total_ms: float     # all node time of ghostnet_add_100
    merge_ops: tuple[int, int]  # how many Concat / merge-Add nodes were timed per pass
    concat_share: dict[str, float]  # op type → share of ghostnet_100's node time
    add_share: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.concat_ms / self.add_ms if self.add_ms else float("nan")


def _is_merge_add(name: str) -> bool:
    return "/ghost1/" in name or "/ghost2/" in name


def _profile(path: Path, batch: int, img_size: int, runs: int, warmup: int, threads: int, opt_level: str,
             prefix: str) -> tuple[dict[str, float], dict[str, int], float]:
    """Per-pass time (ms) by category, merge-op node count per pass, total node time per pass."""
    sess = session(path, threads=threads, opt_level=opt_level, profile_prefix=prefix)
    x = np.random.default_rng(0).standard_normal((batch, 3, img_size, img_size), dtype=np.float32)
    for _ in range(warmup + runs):
        sess.run(None, {INPUT_NAME: x})
    trace = Path(sess.end_profiling())
    events = [e for e in json.loads(trace.read_text())
              if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    trace.unlink()
    # Sequential execution runs the same nodes every pass: keep the last `runs` passes (no warm-up).
    per_pass = len(events) // (warmup + runs)
    per_type: dict[str, float] = collections.Counter()
    merge_count: dict[str, int] = collections.Counter()
    for e in events[-per_pass * runs:]:
        op, name = e["args"]["op_name"], e["name"]
        category = op
        if op == "Add":
            category = "Add (merge)" if _is_merge_add(name) else "Add (shortcut)"
        per_type[category] += e["dur"] / 1e3 / runs
        if category in ("Concat", "Add (merge)"):
            merge_count[category] += 1
    return dict(per_type), {k: v // runs for k, v in merge_count.items()}, sum(per_type.values())


def run_study(batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32), img_size: int = 224, runs: int = 10,
              warmup: int = 3, threads: int = 1, opt_level: str = "basic", progress: bool = True) -> list[StudyRow]:
    """Profile ``ghostnet_100`` and ``ghostnet_add_100`` at each batch size."""
    with scratch_dir("concat-add") as workdir:  # the exports and the profiler's traces
        return _run_study(workdir, batch_sizes, img_size, runs, warmup, threads, opt_level, progress)


def _run_study(workdir: Path, batch_sizes: Sequence[int], img_size: int, runs: int, warmup: int, threads: int,
               opt_level: str, progress: bool) -> list[StudyRow]:
    paths = {}
    for kind, name in MODELS.items():
        paths[kind] = export_onnx(create_model(name).eval(), workdir / f"{name}.onnx", (1, 3, img_size, img_size),
                                  exporter="legacy")
    rows = []
    for batch in progress_bar(batch_sizes, desc="Concat vs Add", enabled=progress, unit="batch size"):
        prof = {kind: _profile(path, batch, img_size, runs, warmup, threads, opt_level, str(workdir / kind))
                for kind, path in paths.items()}
        (c_types, c_count, c_total), (a_types, a_count, a_total) = prof["concat"], prof["add"]
        rows.append(StudyRow(
            batch=batch, concat_ms=c_types.get("Concat", 0.0), slice_ms=c_types.get("Slice", 0.0),
            add_ms=a_types.get("Add (merge)", 0.0), concat_total_ms=c_total, add_total_ms=a_total,
            merge_ops=(c_count.get("Concat", 0), a_count.get("Add (merge)", 0)),
            concat_share={k: v / c_total for k, v in sorted(c_types.items(), key=lambda kv: -kv[1])},
            add_share={k: v / a_total for k, v in sorted(a_types.items(), key=lambda kv: -kv[1])},
        ))
    return rows


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
    fields = StudyRow.__dataclass_fields__
    rows = [StudyRow(**{k: v for k, v in r.items() if k in fields}) for r in result.rows]
    paths = plot_figures(rows, out_dir, stem=result.name)
    return {"png": paths["runtime_png"], "share_png": paths["share_png"]}


def plot_figures(rows: Sequence[StudyRow], out_dir: str | Path, stem: str = "concat_add") -> dict[str, Path]:
    """The Concat-vs-Add figures: cumulative merge-operator runtime vs batch size (paper Fig. 1) and
    each operator type's share of the total runtime (paper Fig. 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    batches = [r.batch for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(batches, [r.concat_ms for r in rows], "o-", label="32 × Concat (ghostnet_100)")
    ax.plot(batches, [r.add_ms for r in rows], "s-", label="32 × Add (ghostnet_add_100)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("cumulative operator runtime (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    runtime_png = save_figure(fig, out_dir / f"{stem}.png")

    types = sorted({k for r in rows for k in (*r.concat_share, *r.add_share)},
                   key=lambda k: -max(r.concat_share.get(k, 0) + r.add_share.get(k, 0) for r in rows))[:8]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    width = 0.8 / len(types)
    for ax, attr, title in ((axes[0], "concat_share", "ghostnet_100 (Concat)"),
                            (axes[1], "add_share", "ghostnet_add_100 (Add)")):
        for i, op in enumerate(types):
            ax.bar([j + i * width for j in range(len(rows))], [100 * getattr(r, attr).get(op, 0) for r in rows],
                   width, label=op)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("share of total runtime (%)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    share_png = save_figure(fig, out_dir / f"{stem}_share.png")
    return dict(runtime_png=runtime_png, share_png=share_png)
