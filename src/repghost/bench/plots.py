"""Matplotlib figures of the benchmark results (written headless, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_savefig  # noqa: E402


def plot_latency(results: Sequence, path: str | Path) -> Path:
    """Latency vs MACs (left) and vs the paper's ImageNet top-1 (right), one marker per runtime,
    at the first (threads, batch, input size) setting of ``results``."""
    timed = [r for r in results if r.median_ms is not None]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    if timed:
        first = (timed[0].threads, timed[0].batch, timed[0].img_size)
        timed = [r for r in timed if (r.threads, r.batch, r.img_size) == first]
        markers = dict(zip(sorted({r.runtime for r in timed}), "osD^v<>", strict=False))
        for ax, x_of, xlabel in ((axes[0], lambda r: r.macs_m, "MACs (M)"),
                                 (axes[1], lambda r: r.paper_top1, "paper ImageNet top-1 (%)")):
            for runtime, marker in markers.items():
                points = [r for r in timed if r.runtime == runtime and x_of(r) is not None]
                ax.scatter([x_of(r) for r in points], [r.median_ms for r in points], marker=marker, label=runtime)
                for r in points:
                    ax.annotate(f"{r.model}@{r.form}", (x_of(r), r.median_ms), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
            ax.set_xlabel(xlabel)
            ax.set_ylabel("median latency (ms)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        threads, batch, size = first
        fig.suptitle(f"latency, {threads} thread(s), batch {batch}, {size}×{size}")
    if not any(r.paper_top1 is not None for r in timed):
        axes[1].text(0.5, 0.5, "no model with a known paper top-1", ha="center", transform=axes[1].transAxes)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_study(rows: Sequence, out_dir: str | Path) -> dict[str, Path]:
    """The Concat-vs-Add figures: cumulative merge-operator runtime vs batch size (paper Fig. 1) and
    each operator type's share of the total runtime (paper Fig. 2)."""
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
    runtime_png = out_dir / "concat_vs_add_runtime.png"
    atomic_savefig(fig, runtime_png, dpi=120)
    plt.close(fig)

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
    share_png = out_dir / "concat_vs_add_share.png"
    atomic_savefig(fig, share_png, dpi=120)
    plt.close(fig)
    return dict(runtime_png=runtime_png, share_png=share_png)
