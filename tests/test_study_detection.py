"""`repghost study detection`: architectures × seeds on the detection benchmark, resumable, mean ± SE."""

import json
import math
import statistics

import pytest

from repghost.cli import main
from repghost.detection import engine
from repghost.study import detection

SIZES = dict(num_train=4, num_search=1, num_test=2, image_size=64)
TINY = dict(benchmark_sizes=SIZES, epochs=2, batch_size=2, workers=0, warmup_iters=1, runtime="eager",
            latency_size=32, warmup=0, runs=2, progress=False)
RUNG = {k: v for k, v in TINY.items() if k in ("benchmark_sizes", "epochs", "batch_size", "workers", "warmup_iters",
                                                 "progress")}
ARGV = ["--train-images", "4", "--search-images", "1", "--test-images", "2", "--image-size", "64", "--epochs", "2",
        "--batch-size", "2", "--workers", "0", "--runtime", "eager", "--latency-size", "32", "--warmup", "0",
        "--runs", "2"]


@pytest.fixture
def calls(monkeypatch):
    """Every training the study starts: (run directory name, resumed?)."""
    real, seen = engine.train_detector, []

    def recording(config, *args, **kwargs):
        seen.append((config.output.rsplit("/", 1)[-1], config.resume))
        return real(config, *args, **kwargs)

    monkeypatch.setattr(engine, "train_detector", recording)
    return seen


def test_study_resumes_the_cut_run_skips_finished_ones_and_reports_mean_and_se(tmp_path, monkeypatch, calls):
    out = tmp_path / "study"
    real_epoch = engine._train_one_epoch

    def cut_second_seed(*args, **kwargs):  # Ctrl-C's way out of a run: KeyboardInterrupt after a saved epoch
        if args[7] == 1 and "seed1" in args[4].output:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "_train_one_epoch", cut_second_seed)
    with pytest.raises(KeyboardInterrupt):
        detection.run(out, ["repghostnet_050"], seeds=[0, 1], **TINY)
    assert calls == [("repghostnet_050-seed0", False), ("repghostnet_050-seed1", False)]
    assert (out / "runs" / "repghostnet_050-seed0" / "metrics.json").is_file()
    assert not (out / "runs" / "repghostnet_050-seed1" / "metrics.json").exists()
    monkeypatch.setattr(engine, "_train_one_epoch", real_epoch)

    calls.clear()
    result = detection.run(out, ["repghostnet_050"], seeds=[0, 1], **TINY)
    assert calls == [("repghostnet_050-seed1", True)]  # seed 0 skipped, seed 1 resumed
    (row,) = result.rows
    ap = [json.loads((out / "runs" / f"repghostnet_050-seed{s}" / "metrics.json").read_text())["bbox"]["AP"]
          for s in (0, 1)]
    assert row["seeds"] == 2 and row["ap_runs"] == [round(v, 2) for v in ap]
    assert row["ap_mean"] == pytest.approx(statistics.fmean(ap))
    assert row["ap_sd"] == pytest.approx(statistics.stdev(ap))
    assert row["ap_se"] == pytest.approx(statistics.stdev(ap) / math.sqrt(2))
    assert row["median_ms"] > 0 and row["params_m"] > 0

    calls.clear()  # everything finished: nothing is trained again
    assert detection.run(out, ["repghostnet_050"], seeds=[0, 1], **TINY).rows[0]["ap_runs"] == row["ap_runs"]
    assert calls == []


def test_a_rung_trains_to_its_epoch_only_and_the_full_study_finishes_the_same_runs(tmp_path, calls):
    """Successive halving's rung: runs stop after epoch k of the full schedule; the study later resumes them, and
    they end where an uninterrupted run ends."""
    out, whole = tmp_path / "halved", tmp_path / "whole"
    rows = detection.rung(out, ["repghostnet_050"], [0, 1], 1, **RUNG)
    assert calls == [("repghostnet_050-seed0", False), ("repghostnet_050-seed1", False)]
    for row in rows:
        run_dir = out / "runs" / f"repghostnet_050-seed{row['seed']}"
        history = json.loads((run_dir / "history.json").read_text())
        assert [h["epoch"] for h in history] == [1] and row["loss"] == history[0]["loss"]
        assert not (run_dir / "metrics.json").exists()
    assert [r["loss"] for r in rows] == sorted(r["loss"] for r in rows)

    calls.clear()  # already at the rung: nothing trained again
    assert detection.rung(out, ["repghostnet_050"], [0, 1], 1, **RUNG) == rows and calls == []

    result = detection.run(out, ["repghostnet_050"], seeds=[0, 1], **TINY)
    assert calls == [("repghostnet_050-seed0", True), ("repghostnet_050-seed1", True)]
    uninterrupted = detection.run(whole, ["repghostnet_050"], seeds=[0, 1], **TINY)
    assert result.rows[0]["ap_runs"] == uninterrupted.rows[0]["ap_runs"]
    for seed in (0, 1):
        halved, full = (json.loads((d / "runs" / f"repghostnet_050-seed{seed}" / "history.json").read_text())
                        for d in (out, whole))
        assert [h["loss"] for h in halved] == [h["loss"] for h in full]


def test_a_rung_past_the_schedule_is_refused_before_any_work(tmp_path, capsys, calls):
    out = tmp_path / "study"
    assert main(["study", "detection", "--archs", "repghostnet_050", "--seeds", "0", *ARGV, "--out", str(out),
                 "--stop-after-epoch", "3"]) == 2
    err = capsys.readouterr().err
    assert "--stop-after-epoch must be in 1…2" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and calls == []


def test_cli_rung_prints_each_runs_loss_and_writes_them(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "detection", "--archs", "repghostnet_050", "--seeds", "0", *ARGV, "--out", str(out),
                 "--stop-after-epoch", "1"]) == 0
    printed = capsys.readouterr().out
    (row,) = json.loads((out / "rung_epoch1.json").read_text())
    assert row["arch"] == "repghostnet_050" and row["epoch"] == 1
    assert f"training loss {row['loss']:.4f}" in printed and "without --stop-after-epoch" in printed
    assert not (out / "detection.json").exists()


def test_a_run_finished_by_another_study_since_the_plan_is_not_trained_again(tmp_path, calls):
    out, bench = tmp_path / "study", tmp_path / "study" / "benchmark"
    todo = detection.plan(out, ["repghostnet_050"], [0, 1], bench, SIZES, epochs=1, batch_size=2, workers=0,
                          warmup_iters=1)
    assert [r.state for r in todo.runs] == ["new", "new"]
    detection.run(out, ["repghostnet_050"], seeds=[1], **{**TINY, "epochs": 1})  # another process, seed 1
    calls.clear()
    detection.train_runs(todo, progress=False)
    assert calls == [("repghostnet_050-seed0", False)]


def test_a_run_another_process_trains_is_left_to_it_and_waited_for(tmp_path, calls, monkeypatch):
    import os
    import time

    out = tmp_path / "study"
    claimed = out / "runs" / "repghostnet_050-seed1"
    claimed.mkdir(parents=True)
    (claimed / detection.CLAIM_FILE).write_text(str(os.getppid()))  # a live process that is not this one
    waits = []

    def the_other_process_stops(seconds):  # it leaves the run unfinished: this study then trains it
        waits.append([c[0] for c in calls])
        (claimed / detection.CLAIM_FILE).unlink()

    monkeypatch.setattr(time, "sleep", the_other_process_stops)
    detection.run(out, ["repghostnet_050"], seeds=[0, 1], **{**TINY, "epochs": 1})
    assert waits == [["repghostnet_050-seed0"]]  # seed 0 first, then one wait, then seed 1 here
    assert calls == [("repghostnet_050-seed0", False), ("repghostnet_050-seed1", False)]
    assert not list(out.rglob(detection.CLAIM_FILE))


def test_a_claim_left_by_a_killed_process_is_taken_over(tmp_path):
    import os
    import subprocess
    import sys

    from repghost.io import claim

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / ".training"
    path.write_text(gone.stdout.strip())
    with claim(path) as mine:
        assert mine and path.read_text() == str(os.getpid())
    assert not path.exists()
    path.write_text(str(os.getppid()))
    with claim(path) as mine:
        assert not mine and path.exists()  # a live holder keeps it
    path.write_text("")  # just created, its id not yet written: its creator's
    with claim(path) as mine:
        assert not mine
    os.utime(path, (0, 0))  # an old file without an id: a creator killed before writing it
    with claim(path) as mine:
        assert mine


def test_summary_of_per_seed_values():
    stats = detection.summarize([30.0, 34.0, 35.0])
    assert stats["mean"] == pytest.approx(33.0)
    assert stats["sd"] == pytest.approx(math.sqrt(((-3) ** 2 + 1 ** 2 + 2 ** 2) / 2))
    assert stats["se"] == pytest.approx(stats["sd"] / math.sqrt(3))
    assert detection.summarize([12.5]) == {"mean": 12.5, "sd": None, "se": None}


@pytest.mark.parametrize("argv,message", [
    (["--archs", "repghostnet_050", "no_such_net"], "backbone 'no_such_net' is not"),
    (["--archs", "resnet50"], "backbone 'resnet50' is not"),
    (["--archs", "repghostnet_050", "repghostnet_050"], "given twice"),
    (["--archs", "repghostnet_050", "--seeds", "0", "0"], "seed 0 given twice"),
    (["--archs", "repghostnet_050", "--seeds", "-1"], "-1"),
    (["--archs", "repghostnet_050", "--seeds", "x"], "'x'"),
    (["--archs", "repghostnet_050", "--test-images", "0"], "test-images"),
])
def test_bad_input_is_refused_before_any_work(argv, message, tmp_path, capsys, calls):
    out = tmp_path / "study"
    assert main(["study", "detection", *argv, *ARGV, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("repghost study")
    assert not out.exists() and calls == []


def test_a_run_directory_with_other_settings_is_refused(tmp_path, capsys, calls):
    out = tmp_path / "study"
    run_dir = out / "runs" / "repghostnet_050-seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"epochs": 99}))
    assert main(["study", "detection", "--archs", "repghostnet_050", "--seeds", "0", *ARGV, "--out", str(out)]) == 2
    assert "holds a run with other settings" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["runs"] and calls == []


def test_cli_writes_the_table_and_its_files(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "detection", "--archs", "repghostnet_050", "mobiledet_cpu", "--seeds", "0", *ARGV,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| repghostnet_050 |" in printed and "| mobiledet_cpu |" in printed
    data = json.loads((out / "detection.json").read_text())
    assert [r["arch"] for r in data["rows"]] == ["repghostnet_050", "mobiledet_cpu"]
    assert data["meta"]["benchmark_params"]["splits"] == {"train": 4, "search": 1, "test": 2}
    assert {p.name for p in out.iterdir()} >= {"detection.md", "detection.csv", "detection.png", "runs", "benchmark"}
