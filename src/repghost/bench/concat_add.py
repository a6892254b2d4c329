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
"""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..deploy.onnx_export import INPUT_NAME, export_onnx, session
from ..io import atomic_write_json, atomic_write_text, scratch_dir
from ..models import create_model
from ..progress import progress as progress_bar

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


def format_study(rows: Sequence[StudyRow]) -> str:
    lines = ["| batch | 32 Concat ms | 32 Add ms | Concat / Add | Slice ms | Concat share | Add share "
             "| ghostnet_100 ms | ghostnet_add_100 ms |", "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r.batch} | {r.concat_ms:.3f} | {r.add_ms:.3f} | {r.ratio:.2f} | {r.slice_ms:.3f} "
                     f"| {r.concat_share.get('Concat', 0):.1%} | {r.add_share.get('Add (merge)', 0):.1%} "
                     f"| {r.concat_total_ms:.2f} | {r.add_total_ms:.2f} |")
    return "\n".join(lines)


def write_study(rows: Sequence[StudyRow], out_dir: str | Path, meta: dict | None = None) -> dict[str, Path]:
    """``concat_vs_add.{json,md}``, ``concat_vs_add_runtime.png`` (Fig. 1) and ``concat_vs_add_share.png`` (Fig. 2)."""
    from .plots import plot_study

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = dict(json=out_dir / "concat_vs_add.json", md=out_dir / "concat_vs_add.md")
    data = [dict(asdict(r), ratio=r.ratio) for r in rows]
    atomic_write_json(paths["json"], dict(meta=meta or {}, rows=data), indent=1)
    atomic_write_text(paths["md"], format_study(rows) + "\n")
    paths.update(plot_study(rows, out_dir))
    return paths
