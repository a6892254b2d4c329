import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import repghost
from repghost.cli import main
from repghost.train import (
    TrainConfig,
    Trainer,
    load_training_checkpoint,
    read_recipe,
    recipe_names,
    resolve_config,
    train,
)
from repghost.train.fit import ScheduleError, check_schedule, fit_to_data
from train_helpers import make_image_folder, make_photo_folder

SRC = str(Path(repghost.__file__).resolve().parents[1])
WIDTHS = ["050", "058", "080", "100", "111", "130", "150", "200"]


def _env():
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return env


def tiny(root: Path, out: Path, name: str, **kw) -> dict:
    """A few-second run: 3 classes × 12 images at 16², batch 8 (4 steps per epoch), one thread."""
    cfg = dict(recipe="digits", data=str(root), output=str(out), name=name, img_size=16, batch_size=8, epochs=3,
               warmup_epochs=1, ema_warmup=True, threads=1, workers=0, progress=False, lr=0.05)
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data") / "shapes")


# -- recipes ---------------------------------------------------------------------------------
def test_recipes_cover_every_width_with_the_paper_settings():
    assert set(recipe_names()) == {"digits", "folder", *(f"repghostnet_{w}" for w in WIDTHS)}
    for w in WIDTHS:
        r = read_recipe(f"repghostnet_{w}")
        assert r["model"] == f"repghostnet_{w}"
        assert (r["lr_base"], r["lr_base_size"], r["momentum"], r["epochs"]) == (0.6, 1024, 0.9, 300)
        assert (r["min_lr"], r["warmup_epochs"], r["warmup_lr"], r["weight_decay"]) == (1e-5, 5, 1e-4, 1e-5)
        assert (r["drop_rate"], r["smoothing"], r["ema_decay"], r["re_prob"], r["re_mode"]) == \
            (0.2, 0.1, 0.9999, 0.2, "pixel")
        assert (r["scale"], r["hflip"], r["color_jitter"], r["interpolation"]) == ([0.08, 1.0], 0.5, 0.4, "random")
        assert r["auto_augment"] == ("rand-m9-mstd0.5" if w in ("130", "150", "200") else None)


def test_flags_override_recipe_and_lr_scales_with_global_batch(tmp_path):
    cfg = resolve_config("repghostnet_100", epochs=7, batch_size=64)
    assert cfg.epochs == 7 and cfg.model == "repghostnet_100" and cfg.auto_augment is None
    assert cfg.lr_base * 64 / cfg.lr_base_size == pytest.approx(0.0375)
    assert resolve_config().data == "digits"                             # no --data: the digits recipe
    assert resolve_config("repghostnet_130", data="/x").auto_augment == "rand-m9-mstd0.5"
    with pytest.raises(ValueError, match="unknown config keys"):
        resolve_config(epoch=3)
    with pytest.raises(ValueError, match="built-in recipes: digits"):
        resolve_config("nope")


# -- a whole run, its artifacts, eval ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = tiny(folder, out, "ref", ckpt_every_steps=2, workers=1)
    result = train(resolve_config(**cfg))
    return result, cfg


def test_run_directory_holds_checkpoints_deploy_form_metrics_and_plot(tiny_run):
    result, _ = tiny_run
    run = result.run_dir
    for name in ("config.yaml", "metrics.csv", "curves.png", "last.pt", "best.pt", "best_model.safetensors",
                 "best_deploy.safetensors", "log.txt"):
        assert (run / name).is_file(), name
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["img_size"] == 16 and saved["resolved_lr"] == 0.05
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and all(r["ema_top1"] for r in rows)
    assert result.equivalence.ok and result.equivalence.max_rel_f64 < 1e-12
    deployed = repghost.load_model(run / "best_deploy.safetensors")
    assert repghost.is_deploy(deployed)
    trained = repghost.load_model(run / "best_model.safetensors")
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(trained(x), deployed(x), atol=1e-4)
    state = load_training_checkpoint(run / "last.pt")  # weights_only load
    assert {"state_dict", "state_dict_ema", "optimizer", "scheduler", "scaler", "rng", "config"} <= set(state)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (3, 0, 12)


def test_eval_train_and_deploy_forms_report_identical_top1(tiny_run, tmp_path, capsys):
    result, _ = tiny_run
    run, res = result.run_dir, {}
    for key, args in {"pt": [str(run / "best.pt")], "pt_reparam": [str(run / "best.pt"), "--reparam"],
                      "model": [str(run / "best_model.safetensors")],
                      "deploy": [str(run / "best_deploy.safetensors")]}.items():
        path = tmp_path / f"{key}.json"
        assert main(["eval", *args, "--workers", "0", "--json", str(path)]) == 0
        res[key] = json.loads(path.read_text())
    assert res["pt"]["form"] == "train" and res["pt_reparam"]["form"] == "deploy" and res["deploy"]["form"] == "deploy"
    assert res["pt"]["top1"] == res["pt_reparam"]["top1"]
    assert res["model"]["top1"] == res["deploy"]["top1"]
    assert res["model"]["loss"] == pytest.approx(res["deploy"]["loss"], abs=1e-5)
    assert res["pt"]["count"] == 12
    assert "top-1" in capsys.readouterr().out


# -- exact resume after SIGKILL and after Ctrl-C ------------------------------------------------
RUNNER = """
import json, os, signal, sys
from repghost.train import resolve_config, train
cfg = json.loads(sys.argv[1]); step = int(sys.argv[2]); sig = getattr(signal, sys.argv[3])
def hook(trainer):
    if trainer.global_step == step:
        os.kill(os.getpid(), sig)
result = train(resolve_config(**cfg), on_step=hook)
sys.exit(130 if result.interrupted else 0)
"""


def _final_weights(run: Path) -> dict:
    state = load_training_checkpoint(run / "last.pt")
    return {**{f"m.{k}": v for k, v in state["state_dict"].items()},
            **{f"e.{k}": v for k, v in state["state_dict_ema"].items()}}


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_resume_after_interruption_is_bit_identical(tiny_run, folder, tmp_path, sig):
    ref, cfg = tiny_run
    cfg = {**cfg, "output": str(tmp_path), "name": "cut"}
    # 4 steps per epoch; a step checkpoint at step 6 (epoch 1, step 2); the signal arrives after step 7.
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cfg), "7", sig], env=_env(),
                          capture_output=True, text=True, timeout=300)
    run = tmp_path / "cut"
    state = load_training_checkpoint(run / "last.pt")
    if sig == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
        assert (state["epoch"], state["step_in_epoch"]) == (1, 2)
    else:
        assert proc.returncode == 130, proc.stderr
        assert (state["epoch"], state["step_in_epoch"]) == (1, 3)  # saved at the step it was interrupted
        assert "resume with: repghost train --resume" in proc.stderr + proc.stdout
    resumed = subprocess.run([sys.executable, "-m", "repghost", "train", "--resume", str(run / "last.pt")],
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _final_weights(ref.run_dir), _final_weights(run)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    # The epoch cut in the middle reports the loss over all its steps, as the uninterrupted run does.
    timing = {"train_img_s", "epoch_time_s"}
    ref_rows = list(csv.DictReader((ref.run_dir / "metrics.csv").open()))
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows] == \
        [{k: v for k, v in r.items() if k not in timing} for r in ref_rows]


# -- bad input -------------------------------------------------------------------------------
def test_corrupt_images_are_skipped_and_counted(folder, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data)
    bad = [data / "train" / "class_0" / "003.png", data / "val" / "class_2" / "000.png"]
    for p in bad:
        p.write_bytes(b"not a png at all")
    result = train(resolve_config(**tiny(data, tmp_path, "bad", epochs=1, warmup_epochs=0)))
    log = (result.run_dir / "log.txt").read_text()
    for p in bad:
        assert f"skipped unreadable image: {p}" in log
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert rows[-1]["skipped_images"] == "2"


def test_wrong_model_lists_valid_names_and_writes_nothing(tmp_path, capsys):
    code = main(["train", "--model", "repghostnet_999", "--output", str(tmp_path / "runs"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown model 'repghostnet_999'" in err and "repghostnet_100" in err
    assert not (tmp_path / "runs").exists()


def test_bad_data_fails_before_training(tmp_path, capsys):
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    code = main(["train", "--data", str(tmp_path / "d"), "--output", str(tmp_path / "runs")])
    assert code == 1 and "class folders without images" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_eval_missing_checkpoint_fails(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope.pt"), "--json", str(tmp_path / "r.json")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


DIGIT_NAMES = [str(d) for d in range(10)]


@pytest.mark.parametrize("case", ["imagenet head", "other names", "exported, no metadata"])
def test_eval_refuses_a_model_of_other_classes_in_one_line(case, tmp_path, capsys):
    """A 1000-class model (ImageNet's head) on the 10 digits would print ~0 % top-1: refused, exit 2, naming
    both counts and how to get a model of these classes; nothing written. Same for ten other class names,
    and for an exported file that records no classes (its count read from its output)."""
    from repghost.deploy import export_onnx

    flags = ["--data", "digits", "--img-size", "32", "--workers", "0", "--json", str(tmp_path / "r.json")]
    if case == "imagenet head":
        path = repghost.save_checkpoint(repghost.create_model("repghostnet_050", num_classes=1000),
                                        tmp_path / "imagenet.safetensors")
    elif case == "other names":
        path = repghost.save_checkpoint(repghost.create_model("repghostnet_050", num_classes=10),
                                        tmp_path / "letters.safetensors", {"classes": list("abcdefghij")})
    else:
        path = export_onnx(repghost.create_model("repghostnet_050", num_classes=1000, deploy=True).eval(),
                           tmp_path / "plain.onnx", (1, 3, 32, 32), exporter="legacy")
        flags += ["--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5"]
    assert main(["eval", str(path), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("repghost eval: error: "), err
    if case == "other names":
        assert "trained on classes [a, b, c, d, e, …] (10) but digits has [0, 1, 2, 3, 4, …] (10)" in err[0]
    else:
        assert f"{path.name} has 1000 classes but digits has 10" in err[0]
        assert "train or fine-tune on this data first (repghost train --data digits" in err[0]
        assert ("--pretrained" in err[0]) == (case == "imagenet head")   # an ONNX file is no training start
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(repghost.train.ClassMismatchError):   # the library refuses, not only the command line
        repghost.train.evaluate_checkpoint(path, data="digits", img_size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                                           progress=False)


def test_eval_of_a_model_of_the_datas_classes_still_runs(tmp_path):
    """Ten classes and no names, or the digits' own names: both evaluated, the same model the same top-1."""
    model = repghost.create_model("repghostnet_050", num_classes=10)
    results = [repghost.train.evaluate_checkpoint(repghost.save_checkpoint(model, tmp_path / f"m{i}.safetensors", meta),
                                                  data="digits", img_size=32, progress=False)
               for i, meta in enumerate((None, {"classes": DIGIT_NAMES}))]
    assert [r["count"] for r in results] == [360, 360] and results[0]["top1"] == results[1]["top1"]


def test_pretrained_replaces_a_classifier_of_another_size(tiny_run, tmp_path):
    ten = repghost.create_model("repghostnet_050", num_classes=10)
    src = repghost.save_checkpoint(ten, tmp_path / "ten.safetensors")
    cfg = resolve_config(**tiny(tiny_run[1]["data"], tmp_path, "ft", pretrained=str(src), epochs=1, warmup_epochs=0))
    trainer = Trainer(cfg)
    assert torch.equal(trainer.model.stem.conv.weight, ten.stem.conv.weight)
    assert trainer.model.classifier.out_features == 3


# -- distributed -----------------------------------------------------------------------------
@pytest.mark.slow
def test_torchrun_two_cpu_processes_on_digits(tmp_path, tmp_path_factory):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "repghost", "train", "--output", str(tmp_path), "--name", "ddp", "--epochs", "1",
           "--batch-size", "128", "--img-size", "16", "--threads", "1", "--progress", "false"]
    # torchrun keeps its per-rank log directory (TMPDIR/torchelastic_*) after the run: not in the machine's /tmp.
    env = dict(_env(), TMPDIR=str(tmp_path_factory.mktemp("torchrun-tmp")))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp"
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "last.pt"]
    state = load_training_checkpoint(run / "last.pt")
    assert state["world_size"] == 2 and state["global_step"] == 1437 // 256
    assert proc.stderr.count("run directory:") + proc.stdout.count("run directory:") == 1  # rank 0 logs only


# -- the default recipe for a user's folder: fitted to the data ------------------------------------
def test_folder_recipe_derives_what_it_leaves_unset_and_a_flag_wins(folder):
    cfg = resolve_config(data=str(folder), epochs=10)  # 3 classes × 12 images of 20 px
    assert cfg.data == str(folder.resolve()) and cfg.lr_base == read_recipe("folder")["lr_base"]
    assert set(cfg.derived) == {"img_size", "batch_size", "warmup_epochs", "ema_decay", "workers"}
    assert (cfg.img_size, cfg.batch_size, cfg.warmup_epochs) == (32, 8, 1.0)  # 36 images: 4 steps per epoch
    assert cfg.ema_decay == pytest.approx(1 - 1 / 4)                         # the last ~10 % of 40 steps
    assert 0 <= cfg.workers <= 8
    given = resolve_config(data=str(folder), epochs=10, img_size=48, batch_size=4, warmup_epochs=2, ema_decay=0.5,
                           workers=0)
    assert (given.img_size, given.batch_size, given.warmup_epochs, given.ema_decay, given.workers) == (48, 4, 2, 0.5, 0)
    assert given.derived == {}


def test_fitting_rules_scale_from_a_handful_of_images_to_a_large_set():
    from PIL import Image

    from repghost.data.datasets import RawDataset

    def fitted(count, side=(300, 200), world=1, cpus=16, epochs=300):
        images = RawDataset([Image.new("RGB", side)] * count, [0] * count, ["a"])
        unfitted = TrainConfig(**{**read_recipe("folder"), "epochs": epochs})
        return fit_to_data(unfitted, images, world, cpus)

    big = fitted(100_000)        # large data, long run: the ImageNet recipes' values
    assert (big.img_size, big.batch_size, big.warmup_epochs, big.ema_decay, big.workers) == (192, 128, 5.0, 0.9999, 8)
    assert fitted(1000).batch_size == 32                  # 31 steps per epoch (64 would give 15)
    assert fitted(1000, world=2, cpus=2).batch_size == 16 and fitted(1000, world=2, cpus=2).workers == 0
    assert fitted(20).batch_size == 8 and fitted(5).batch_size == 5      # never more than the images
    assert fitted(40, side=(640, 480)).img_size == 224 and fitted(40, side=(20, 20)).img_size == 32
    short = fitted(16, epochs=2)                          # 2 steps × 2 epochs: too short to average
    assert (short.warmup_epochs, short.ema_decay) == (0.2, 0.0)


def test_a_schedule_that_cannot_work_is_refused_and_a_useless_ema_is_warned(folder, tmp_path, capsys):
    # The ImageNet recipe on a small folder for 3 epochs: 5 warm-up epochs would never end (it trained to chance).
    imagenet = resolve_config("repghostnet_050", data=str(folder), epochs=3, batch_size=8)
    with pytest.raises(ScheduleError, match=r"warm-up \(5 epochs\) is not shorter than the run \(3 epochs\)"):
        check_schedule(imagenet, 36, 1)
    code = main(["train", "--data", str(folder), "--recipe", "repghostnet_050", "--epochs", "3", "--batch-size", "8",
                 "--output", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "pass --warmup-epochs below 3" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ScheduleError, match=r"36 training images is less than one global batch \(64 × 1"):
        check_schedule(resolve_config(data=str(folder), batch_size=64), 36, 1)
    # EMA 0.9999 without warm-up over a 40-step run: the EMA weights stay the first step's.
    stale = resolve_config(**tiny(folder, tmp_path, "stale", recipe="folder", epochs=10, ema_decay=0.9999,
                                  ema_warmup=False))
    [warning] = check_schedule(stale, 36, 1)
    assert "EMA decay 0.9999 without warm-up averages over ~10000 steps but the run has 40" in warning
    Trainer(stale)
    assert "warning: EMA decay 0.9999" in capsys.readouterr().err
    assert check_schedule(resolve_config(data=str(folder), epochs=10), 36, 1) == []


@pytest.mark.slow
def test_default_recipe_on_a_small_folder_of_photos_ends_well_above_chance(tmp_path, capsys):
    """`repghost train --data DIR --epochs 10` and nothing else that changes the run (one thread and no
    loader process only keep it steady on a busy machine): 3 classes of crops of real photos, 60 train
    and 20 val per class, 40 px. The folder recipe trains at 32 px, batch 8 (22 steps per epoch),
    warm-up 1 epoch, EMA 0.955; chance is 33 %. Measured: best (and last) val top-1 86.67 %, in each of two runs."""
    data = make_photo_folder(tmp_path / "photos", per_class=60, val_per_class=20)
    code = main(["train", "--data", str(data), "--epochs", "10", "--output", str(tmp_path / "runs"), "--name", "photos",
                 "--threads", "1", "--workers", "0", "--progress", "false"])
    err = capsys.readouterr().err
    assert code == 0, err
    [derived] = [line for line in err.splitlines() if line.startswith("derived from the data")]
    assert "img_size 32 " in derived and "batch_size 8 " in derived and "warmup_epochs 1 " in derived
    rows = list(csv.DictReader((tmp_path / "runs" / "photos" / "metrics.csv").open()))
    best = max(max(float(r["val_top1"]), float(r["ema_top1"])) for r in rows)
    last = max(float(rows[-1]["val_top1"]), float(rows[-1]["ema_top1"]))
    print(f"small photo folder: best val top-1 {best:.2f} %, last epoch {last:.2f} %")
    assert best >= 65 and last >= 55, rows


# -- paths in checkpoints ------------------------------------------------------------------------
def test_files_record_the_absolute_data_path_and_old_relative_ones_say_what_to_do(folder, tmp_path, monkeypatch,
                                                                                     capsys):
    from repghost.checkpoint import read_metadata
    from repghost.preprocess import Preprocess

    work = tmp_path / "work"
    shutil.copytree(folder, work / "shapes")
    monkeypatch.chdir(work)
    result = train(resolve_config(**tiny("shapes", tmp_path / "runs", "rel", epochs=1, warmup_epochs=0)))
    deploy = result.run_dir / "best_deploy.safetensors"
    assert read_metadata(deploy)["extra"]["data"] == str(work / "shapes")
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["data"] == str(work / "shapes")
    monkeypatch.chdir(tmp_path)                    # the issue: eval from another directory
    assert main(["eval", str(deploy), "--workers", "0"]) == 0
    assert main(["eval", str(result.run_dir / "last.pt"), "--workers", "0"]) == 0
    # A file written when the path was recorded as typed:
    meta, old = read_metadata(deploy), tmp_path / "old.safetensors"
    repghost.save_checkpoint(repghost.load_model(deploy), old, metadata={**meta["extra"], "data": "shapes"},
                             preprocess=Preprocess.from_json(meta["repghost_preprocess"]))
    capsys.readouterr()
    assert main(["eval", str(old), "--workers", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert "records its data as the relative path 'shapes'" in err and "pass --data DIR" in err
    assert len(err.splitlines()) == 1
    assert main(["eval", str(old), "--workers", "0", "--data", str(work / "shapes")]) == 0
    monkeypatch.chdir(work)                        # where it resolves, an old relative path still works
    assert main(["eval", str(old), "--workers", "0"]) == 0


# -- Ctrl-C from a terminal: one line, exit 130 ----------------------------------------------------
CLI_RUNNER = """
import os, signal, sys
import repghost.train
from repghost.cli import main
step, real = int(sys.argv[1]), repghost.train.train
def hook(trainer):
    if trainer.global_step == step:
        os.killpg(0, signal.SIGINT)  # a terminal's Ctrl-C: the whole process group, loader workers included
repghost.train.train = lambda cfg, resume=None: real(cfg, resume=resume, on_step=hook)
sys.exit(main(sys.argv[2:]))
"""


def test_ctrl_c_prints_one_line_saves_at_that_step_and_exits_130(folder, tmp_path):
    args = ["train", "--data", str(folder), "--recipe", "digits", "--img-size", "16", "--batch-size", "8",
            "--epochs", "3", "--warmup-epochs", "1", "--threads", "1", "--workers", "2", "--progress", "false",
            "--output", str(tmp_path), "--name", "cut"]
    proc = subprocess.run([sys.executable, "-c", CLI_RUNNER, "6", *args], env=_env(), capture_output=True, text=True,
                          timeout=300, start_new_session=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 130, out
    lines = [line for line in out.splitlines() if "interrupt" in line]
    assert len(lines) == 1 and "resume with: repghost train --resume" in lines[0], out
    assert "Traceback" not in out
    state = load_training_checkpoint(tmp_path / "cut" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)  # global step 6 = epoch 1, step 2 of 4
    assert "interrupted at epoch 1 step 2" in (tmp_path / "cut" / "log.txt").read_text()


# -- --help shows what a run uses ----------------------------------------------------------------
def test_help_shows_effective_defaults_never_none():
    import argparse

    from repghost.cli import build_parser
    from repghost.cli.args import DefaultsFormatter

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("train", "eval", "det-train", "det-eval"):
        parser = sub.choices[command]
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: True)" not in text, command
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.default == argparse.SUPPRESS:
                continue                           # positionals, switches and --help say it in their own words
            shown = DefaultsFormatter(command)._get_help_string(action)
            assert "default" in shown.lower(), (command, action.option_strings, shown)
    train_help = " ".join(sub.choices["train"].format_help().split())
    assert "--batch-size BATCH_SIZE batch size per process (default: digits recipe: 64; folder recipe: derived " \
           "from the data at start)" in train_help
    det = sub.choices["det-train"]
    det_help = " ".join(det.format_help().split())
    assert "--amp, --no-amp mixed precision on CUDA; --no-amp trains in float32 (default: on;" in det_help
    assert "(default: 12; synthetic set: 24)" in det_help
    assert det.parse_args([]).amp is True and det.parse_args(["--no-amp"]).amp is False
