"""Logs that read well off a terminal: no carriage-return frames, one line per epoch / stage."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import repghost
from repghost.progress import LineProgress, progress
from train_helpers import make_image_folder

SRC = str(Path(repghost.__file__).resolve().parents[1])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_a_kept_bar_prints_one_line_and_a_transient_one_nothing():
    out = io.StringIO()
    for _ in progress(range(5), desc="stage", file=out, unit="round"):
        pass
    bar = progress(total=3, desc="epoch 1/2", leave=False, file=out)
    for _ in range(3):
        bar.update()
        bar.set_postfix(loss="0.5")
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    assert re.fullmatch(r"stage: 5/5 round in \d+\.\d s(, [\d.e+]+ round/s)?\n", text), text
    with progress(total=2, desc="calib", leave=False, line=True, file=out, unit="batch") as bar:
        bar.update(2)
        bar.set_postfix(a=1)
    assert out.getvalue().splitlines()[-1].startswith("calib: 2/2 batch in ") and out.getvalue().endswith("a=1\n")


def test_on_a_terminal_it_is_tqdm_and_disabled_is_silent():
    from tqdm import tqdm

    bar = progress(range(2), desc="x", file=_Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    out = io.StringIO()
    quiet = progress(range(2), desc="x", enabled=False, file=out)
    assert isinstance(quiet, LineProgress) and list(quiet) == [0, 1] and out.getvalue() == ""


def _run_to_file(args: list[str], path: Path) -> str:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    with path.open("w") as log:  # stdout and stderr into one file: neither is a terminal
        proc = subprocess.run([sys.executable, "-m", "repghost", *args], stdout=log, stderr=subprocess.STDOUT,
                              env=env, timeout=300)
    text = path.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "\r" not in text
    return text


def test_train_and_bench_logs_to_a_file_have_one_line_per_epoch_and_stage(tmp_path):
    data = make_image_folder(tmp_path / "shapes")
    text = _run_to_file(["train", "--data", str(data), "--output", str(tmp_path / "runs"), "--name", "log",
                         "--img-size", "16", "--batch-size", "8", "--epochs", "3", "--warmup-epochs", "1",
                         "--threads", "1", "--workers", "0"], tmp_path / "train.log")
    epoch_lines = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"], text
    assert all("train loss" in line and "val top-1" in line for line in epoch_lines)
    assert (tmp_path / "runs" / "log" / "log.txt").read_text().count("epoch 3/3:") == 1

    text = _run_to_file(["bench", "repghostnet_050", "repghostnet_050@deploy", "--runtimes", "eager",
                         "--img-size", "32", "--batch", "1", "2", "--warmup", "1", "--runs", "3",
                         "--out", str(tmp_path / "bench")], tmp_path / "bench.log")
    stage_lines = [line for line in text.splitlines() if re.search(r": 3/3 round in ", line)]
    assert len(stage_lines) == 2, text  # one per (size, threads, batch) stage


def test_a_loop_cut_short_prints_no_summary_line():
    import pytest

    out = io.StringIO()
    for stop in (KeyboardInterrupt, RuntimeError):
        with pytest.raises(stop):
            for i in progress(range(5), desc="stage", file=out, unit="round"):
                if i == 2:
                    raise stop
        with pytest.raises(stop), progress(total=5, desc="stage", file=out) as bar:
            bar.update(2)
            raise stop
    assert out.getvalue() == ""  # the line that explains the stop comes last, from whoever handles it
    for _ in progress(range(2), desc="stage", file=out, unit="round"):
        pass
    assert out.getvalue().startswith("stage: 2/2 round")
