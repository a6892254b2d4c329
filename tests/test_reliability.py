"""No silent wrong numbers, clear errors for bad arguments: the digits main job through every file the
project writes, the command line's argument checks, safe-loading messages, and the fold check."""

import argparse
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import repghost
from repghost.checkpoint import read_metadata
from repghost.cli import build_parser, main
from repghost.deploy import onnx_metadata, session
from repghost.limits import Number
from repghost.preprocess import Preprocess
from repghost.reparam import verify_fold
from repghost.train import resolve_config, train


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The main job, shortened: repghostnet_050 on the built-in digits, 3 epochs (~90 % top-1)."""
    out = tmp_path_factory.mktemp("runs")
    result = train(resolve_config(epochs=3, seed=1, output=str(out), name="digits", progress=False, workers=0))
    assert result.best_top1 > 50, result.best_top1  # a trained model, far from 10 % chance
    return result.run_dir


def _eval(path, tmp_path, *flags) -> dict:
    out = tmp_path / f"{Path(path).name}.json"
    assert main(["eval", str(path), "--workers", "0", "--json", str(out), *flags]) == 0
    return json.loads(out.read_text())


# -- Found 1, 2, 3: the preprocessing travels; every file is accepted --------------------------------
def test_every_file_of_the_main_job_evaluates_to_the_same_top1(digits_run, tmp_path, capsys):
    """best.pt → convert → export ONNX + int8: every step evaluates within 0.1 point of the
    checkpoint, and the int8 report gives the real change (what eval measures on the int8 file)."""
    run = digits_run
    ref = _eval(run / "best.pt", tmp_path)
    assert ref["preprocess"]["input_size"] == 32 and ref["preprocess"]["mean"] == [0.5, 0.5, 0.5]
    deploy = tmp_path / "deploy.safetensors"
    assert main(["convert", str(run / "best_model.safetensors"), str(deploy)]) == 0   # no --model needed
    assert Preprocess.from_json(read_metadata(deploy)["repghost_preprocess"]).input_size == 32
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(deploy), str(onnx_path), "--int8"]) == 0
    printed = capsys.readouterr().out
    assert session(onnx_path).get_inputs()[0].shape[2:] == [32, 32]      # the recorded size, not 224
    assert json.loads(onnx_metadata(onnx_path)["repghost_preprocess"])["std"] == [0.5, 0.5, 0.5]
    for path in (run / "best_model.safetensors", run / "best_deploy.safetensors", deploy, onnx_path):
        assert abs(_eval(path, tmp_path)["top1"] - ref["top1"]) <= 0.1, path
    int8 = _eval(tmp_path / "model.int8.onnx", tmp_path)
    line = next(li for li in printed.splitlines() if "change" in li)
    fp32_rep, int8_rep = map(float, re.search(r"top-1 fp32 ([\d.]+)%, int8 ([\d.]+)%", line).groups())
    assert abs(fp32_rep - ref["top1"]) <= 0.1 and abs(int8_rep - int8["top1"]) <= 0.1, line
    # The change is printed from the unrounded top-1s, so it may differ from the difference of the two printed
    # (rounded) ones by up to one unit in the last place: 83.888… → 84.444… is "+0.56" beside 83.89 and 84.44.
    change = float(re.search(r"change ([+-][\d.]+) points", line).group(1))
    assert abs(change - (int8_rep - fp32_rep)) <= 0.01 + 1e-9, line


def test_training_checkpoints_convert_export_and_load_without_model_name(digits_run, tmp_path):
    for name in ("last.pt", "best.pt"):
        model = repghost.load_model(digits_run / name)
        assert model.model_name == "repghostnet_050" and model.num_classes == 10
        assert main(["convert", str(digits_run / name), str(tmp_path / f"{name}.safetensors")]) == 0
    assert main(["export", str(digits_run / "last.pt"), str(tmp_path / "m.pt"), "--format", "torchscript"]) == 0
    files = {"repghost_preprocess.json": ""}
    torch.jit.load(str(tmp_path / "m.pt"), _extra_files=files)
    assert Preprocess.from_json(files["repghost_preprocess.json"]).input_size == 32


def test_a_file_without_the_contract_says_which_default_it_uses(tmp_path, capsys):
    model = repghost.create_model("repghostnet_050", num_classes=10).eval()
    torch.save(model.state_dict(), tmp_path / "official.pth")
    assert main(["export", str(tmp_path / "official.pth"), str(tmp_path / "m.onnx"), "--model", "repghostnet_050",
                 "--img-size", "64"]) == 0
    out = capsys.readouterr().out
    assert out.count("records no preprocessing") == 1 and "224² RGB" in out
    assert session(tmp_path / "m.onnx").get_inputs()[0].shape[2:] == [64, 64]   # the flag overrides


# -- Found 7: the fold check on trained weights ------------------------------------------------------
def test_fold_check_passes_trained_weights_and_catches_a_wrong_bias(digits_run, monkeypatch):
    model = repghost.load_model(digits_run / "best_model.safetensors")
    deployed = repghost.reparameterize(model)
    check = verify_fold(model, deployed, (4, 3, 32, 32))
    assert check.ok and check.max_rel_f64 < 1e-12, check
    with torch.no_grad():   # one bias of one conv off by 1e-3 of its scale
        conv = [m for m in deployed.modules() if isinstance(m, torch.nn.Conv2d)][10]
        conv.bias[0] += 1e-3 * conv.bias.abs().max()
    assert not verify_fold(model, deployed, (4, 3, 32, 32)).ok
    # A wrong folding rule (eps ignored) is caught by the float64 comparison itself.
    from repghost.layers import fuse

    right = fuse.fold_bn_tensors
    monkeypatch.setattr(fuse, "fold_bn_tensors", lambda k, b, m, v, g, be, eps=1e-5: right(k, b, m, v, g, be, 0.0))
    wrong = repghost.reparameterize(model)
    bad = verify_fold(model, wrong, (4, 3, 32, 32))
    assert not bad.ok and bad.max_rel_f64 > 1e-9


# -- Found 4: metrics after a mid-epoch resume ----------------------------------------------------------
# (tests/test_train.py::test_resume_after_interruption_is_bit_identical compares metrics.csv too)


# -- Found 5: every numeric flag of every command -------------------------------------------------------
def _commands(parser=None, prefix=()):
    """``(argv prefix, parser)`` of every command, nested ones (``costmodel fit``) included."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


def _numeric_flags():
    for command, parser in _commands():
        for action in parser._actions:
            if action.option_strings and action.type in (int, float):
                raise AssertionError(f"{' '.join(command)} {action.option_strings[0]} has an unchecked numeric type")
            if action.option_strings and isinstance(action.type, Number):
                yield command, action


@pytest.mark.parametrize("value", ["0", "-1"])
def test_every_numeric_flag_refuses_out_of_range_values(value, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    checked = 0
    for command, action in _numeric_flags():
        number: Number = action.type
        if number.problem(number.kind(value)) is None:
            continue  # 0 is allowed for this flag (e.g. --warmup 0)
        nargs = action.nargs if isinstance(action.nargs, int) else 1
        code = main([*command, action.option_strings[0], *[value] * nargs])
        err = capsys.readouterr().err.strip()
        assert code == 2, (command, action.option_strings, code)
        assert len(err.splitlines()) == 1 and err.startswith(f"repghost {' '.join(command)}: error: argument"), err
        checked += 1
    assert checked >= 30 and list(tmp_path.iterdir()) == []   # no file or directory was made


def test_bad_paths_and_values_are_one_line_usage_errors(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["train", "--output", str(afile)], "is a file"),
        (["train", "--batch-size", "-5"], "--batch-size: expected an integer >= 1, got -5"),
        (["bench", "repghostnet_050", "--batch", "0"], "--batch: expected an integer >= 1"),
        (["export", "foo_model", str(tmp_path / "x.onnx")], "neither a checkpoint file nor a model name; models:"),
        (["convert", str(tmp_path), str(tmp_path / "d.safetensors")], "is a directory; expected a checkpoint"),
        (["eval", str(tmp_path / "none.pt")], "checkpoint not found"),
        (["train", "--model", "repghostnet_999"], "unknown model 'repghostnet_999'"),
        (["export", "repghostnet_050", str(tmp_path / "x.onnx"), "--int8", "--recipe", "fp16"], "FORMAT"),
        # The output's extension and --format must agree; a name without a known extension needs --format.
        (["export", "repghostnet_050", str(tmp_path / "x.mnn"), "--format", "onnx"], "named like a mnn file"),
        (["export", "repghostnet_050", str(tmp_path / "x.param"), "--format", "torchscript"], "like a ncnn file"),
        (["export", "repghostnet_050", str(tmp_path / "x")], "cannot tell the format from the name"),
        (["export", "repghostnet_050", str(tmp_path / "x.pt"), "--int8"], "--int8 is available for"),
        # A single output file goes into a directory that exists (output directories are created).
        (["convert", str(afile), str(tmp_path / "no" / "dir" / "d.safetensors")], "directory"),
        (["export", "repghostnet_050", str(tmp_path / "no" / "x.onnx")], f"directory {tmp_path / 'no'} does not"),
        (["eval", str(afile), "--json", str(tmp_path / "no" / "r.json")], "does not exist"),
        (["export", "repghostnet_050", str(afile / "x.onnx")], "is a file, not a directory"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_unwritable_output_directory_is_refused(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes anywhere: let the permission check see what a user would
        from repghost.cli import args

        real = os.access
        monkeypatch.setattr(args.os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"never read")
    for argv in (["train", "--output", str(locked / "runs")], ["eval", str(ckpt), "--json", str(locked / "r.json")]):
        assert main(argv) == 2
        assert "permission denied" in capsys.readouterr().err
    assert list(locked.iterdir()) == []


def test_a_recipe_with_bad_values_is_refused_before_any_work(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 0\n")
    assert main(["train", "--recipe", str(recipe), "--output", str(tmp_path / "runs")]) == 2
    assert "--epochs: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_create_model_downloads_nothing_and_says_how_to_load_a_file():
    with pytest.raises(ValueError, match=r"downloads no weights.*load_checkpoint\(model, path\)") as err:
        repghost.create_model("repghostnet_050", pretrained=True)
    assert "\n" not in str(err.value)
    model = repghost.create_model("repghostnet_050", pretrained=False, num_classes=3)   # timm's habit: accepted
    assert model.model_kwargs == {"num_classes": 3}   # and not recorded in its checkpoints


@pytest.mark.parametrize("mistake,code", [("garbage", 1), ("missing", 2), ("directory", 2), ("unknown model", 2)])
def test_eval_and_bench_give_the_same_code_for_the_same_mistake(mistake, code, tmp_path, monkeypatch, capsys):
    """2 when the command line is wrong (caught before any work), 1 when reading the file fails."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "m.pt"
    if mistake == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif mistake == "directory":
        path.mkdir()
    eval_argv, bench_argv = ["eval", str(path)], ["bench", str(path), "--runs", "1"]
    if mistake == "unknown model":
        eval_argv, bench_argv = ["eval", str(path), "--model", "repghostnet_999"], ["bench", "repghostnet_999"]
        path.write_bytes(b"never read")
    for argv in (eval_argv, bench_argv):
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
    assert [p.name for p in tmp_path.iterdir()] == (["m.pt"] if mistake != "missing" else [])


# -- Found 6: safe-loading messages ------------------------------------------------------------------------
class _Exploit:
    def __reduce__(self):
        return (os.system, ("true",))


def test_safe_loading_tells_garbage_from_code_and_never_suggests_unsafe_loading(tmp_path, capsys):
    garbage = tmp_path / "random.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save({"state_dict": {"w": _Exploit()}}, tmp_path / "evil.pt")
    for path, expected in ((garbage, "is not a checkpoint"), (tmp_path / "evil.pt", "references posix.system")):
        assert main(["eval", str(path)]) == 1
        err = capsys.readouterr().err
        assert expected in err and "weights_only" not in err, err
        assert len(err.strip().splitlines()) == 1


# -- Found 8: unreadable images in int8 calibration are skipped and counted --------------------------------
def _folder(root: Path) -> Path:
    for split in ("train", "val"):
        for k, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
            d = root / split / f"c{k}"
            d.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (20, 20), colour).save(d / f"{i}.png")
    return root


def test_int8_calibration_skips_and_counts_unreadable_images(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    (data / "train" / "c0" / "broken.png").write_bytes(b"not a png")
    model = repghost.create_model("repghostnet_050", num_classes=2).eval()
    ckpt = repghost.save_checkpoint(model, tmp_path / "m.safetensors",
                                    preprocess=Preprocess(32, (0.5,) * 3, (0.5,) * 3, crop_pct=1.0))
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), str(out), "--int8", "--calib", str(data), "--num-calib", "16"]) == 0
    text = capsys.readouterr().out
    assert "skipped unreadable image:" in text and "broken.png" in text and "(1 unreadable skipped)" in text
    assert (tmp_path / "m.int8.onnx").is_file()
    # Nothing readable to calibrate on: a failure, and no file is written at all.
    empty = tmp_path / "junk"
    for split in ("train", "val"):
        (empty / split / "c0").mkdir(parents=True)
        (empty / split / "c0" / "x.png").write_bytes(b"junk")
    out2 = tmp_path / "n.onnx"
    assert main(["export", str(ckpt), str(out2), "--int8", "--calib", str(empty)]) == 1
    assert "no readable" in capsys.readouterr().err and not out2.exists()


def test_input_files_of_the_wrong_shape_name_the_file_and_what_was_expected(tmp_path, capsys):
    recipe = tmp_path / "list.yaml"
    recipe.write_text("- epochs: 3\n")
    assert main(["train", "--recipe", str(recipe), "--output", str(tmp_path / "runs")]) == 2
    assert "expected a mapping of settings" in capsys.readouterr().err
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train").mkdir()
    ann = root / "annotations" / "instances_train.json"
    for body, expected in (([], "its top level is a list"),
                           ({"images": [[1, 2]], "annotations": [], "categories": []}, "images[0] is a list")):
        ann.write_text(json.dumps(body))
        assert main(["det-train", "--data", str(root), "--output", str(tmp_path / "det")]) == 1
        err = capsys.readouterr().err
        assert expected in err and str(ann) in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "det").exists()
