"""Run-directory outputs: the log (console and log.txt), per-epoch metrics CSV (TensorBoard when installed),
the training-curve plot."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

from ..io import atomic_path, atomic_savefig
from ..progress import write

METRIC_COLUMNS = ["epoch", "step", "lr", "train_loss", "train_img_s", "epoch_time_s", "val_loss", "val_top1",
                  "val_top5", "ema_val_loss", "ema_top1", "ema_top5", "skipped_images"]


#: ``log.info(..., extra={FILE_ONLY: True})``: a record for log.txt that the console has already seen in other words.
FILE_ONLY = "file_only"


def setup_logging(log: logging.Logger, run_dir: Path | None, is_main: bool) -> None:
    """``log`` to the console (through the progress bars) and to ``run_dir/log.txt``, on rank 0 only."""
    log.setLevel(logging.INFO if is_main else logging.ERROR)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    if not is_main:
        return
    class ProgressHandler(logging.Handler):  # log lines that do not tear the progress bars
        def emit(self, record):
            write(self.format(record), file=sys.stderr)

    console = ProgressHandler()
    console.addFilter(lambda record: not getattr(record, FILE_ONLY, False))
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if run_dir is not None:
        file = logging.FileHandler(run_dir / "log.txt")
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(file)


class MetricsLog:
    """``metrics.csv`` (one row per epoch), kept consistent with resumes; TensorBoard scalars if available."""

    def __init__(self, run_dir: Path, resume_epoch: int | None = None):
        self.path = Path(run_dir) / "metrics.csv"
        if resume_epoch is not None and self.path.is_file():
            # Rows past the resumed checkpoint describe work that is being redone.
            rows = [r for r in self.read() if int(r["epoch"]) < resume_epoch]
            self._write_all(rows)
        elif not self.path.is_file():
            self._write_all([])
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(Path(run_dir) / "tb"))
        except ImportError:  # tensorboard is optional
            self.tb = None

    def _write_all(self, rows: list[dict]) -> None:
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def read(self) -> list[dict]:
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def append(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=METRIC_COLUMNS).writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def plot_curves(metrics_csv: Path, out_png: Path, title: str = "") -> Path:
    """Loss and top-1 per epoch (raw and EMA weights) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Path(metrics_csv).open(newline="") as f:
        rows = list(csv.DictReader(f))

    def col(name):
        pts = [(int(r["epoch"]) + 1, float(r[name])) for r in rows if r.get(name) not in ("", None)]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for name, label in (("train_loss", "train loss"), ("val_loss", "val loss"), ("ema_val_loss", "EMA val loss")):
        x, y = col(name)
        if x:
            ax_loss.plot(x, y, marker=".", label=label)
    for name, label in (("val_top1", "val top-1"), ("ema_top1", "EMA val top-1")):
        x, y = col(name)
        if x:
            ax_acc.plot(x, y, marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss (log scale)", title="loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_savefig(fig, out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
