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
