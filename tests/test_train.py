import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import repghost
from repghost.cli import main
from repghost.train import Trainer, load_training_checkpoint, read_recipe, recipe_names, resolve_config, train
from train_helpers import make_image_folder

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
    assert set(recipe_names()) == {"digits", *(f"repghostnet_{w}" for w in WIDTHS)}
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
    assert resolve_config(data="/x", model="repghostnet_130").auto_augment == "rand-m9-mstd0.5"
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
    result = train(resolve_config(**tiny(data, tmp_path, "bad", epochs=1)))
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


def test_pretrained_replaces_a_classifier_of_another_size(tiny_run, tmp_path):
    ten = repghost.create_model("repghostnet_050", num_classes=10)
    src = repghost.save_checkpoint(ten, tmp_path / "ten.safetensors")
    cfg = resolve_config(**tiny(tiny_run[1]["data"], tmp_path, "ft", pretrained=str(src), epochs=1))
    trainer = Trainer(cfg)
    assert torch.equal(trainer.model.stem.conv.weight, ten.stem.conv.weight)
    assert trainer.model.classifier.out_features == 3


# -- distributed -----------------------------------------------------------------------------
@pytest.mark.slow
def test_torchrun_two_cpu_processes_on_digits(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "repghost", "train", "--output", str(tmp_path), "--name", "ddp", "--epochs", "1",
           "--batch-size", "128", "--img-size", "16", "--threads", "1", "--progress", "false"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp"
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "last.pt"]
    state = load_training_checkpoint(run / "last.pt")
    assert state["world_size"] == 2 and state["global_step"] == 1437 // 256
    assert proc.stderr.count("run directory:") + proc.stdout.count("run directory:") == 1  # rank 0 logs only
