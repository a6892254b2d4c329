"""Deployment: convert, ONNX / TorchScript export, int8 — on small inputs to stay fast."""

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import repghost
from repghost.cli import main
from repghost.deploy import (
    ExportError,
    Recipe,
    compare_onnx,
    export_onnx,
    export_torchscript,
    load_split,
    load_torchscript,
    op_counts,
    pipeline,
    session,
)
from repghost.deploy.pipeline import export, leftover_ops, resolve_format
from repghost.preprocess import Preprocess

from conftest import randomize_bn


def _train_checkpoint(tmp_path, name="repghostnet_050", num_classes=10):
    model = randomize_bn(repghost.create_model(name, num_classes=num_classes)).eval()
    path = repghost.save_checkpoint(model, tmp_path / "train.safetensors")
    return model, path


# -- convert ------------------------------------------------------------------------------------

def test_convert_refuses_missing_checkpoint(tmp_path, capsys):
    out = tmp_path / "deploy.safetensors"
    assert main(["convert", str(tmp_path / "missing.safetensors"), str(out)]) != 0
    assert "checkpoint not found" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_convert_refuses_unreadable_checkpoint(tmp_path, capsys):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"not a checkpoint at all")
    out = tmp_path / "deploy.safetensors"
    assert main(["convert", str(bad), str(out), "--model", "repghostnet_050"]) != 0
    assert str(bad) in capsys.readouterr().err
    assert not out.exists()


def test_convert_refuses_when_equivalence_fails(tmp_path, monkeypatch, capsys):
    _, ckpt = _train_checkpoint(tmp_path)
    # A fold that went wrong fails its check; the guard must then write nothing.
    from repghost import reparam
    from repghost.reparam import FoldCheck

    monkeypatch.setattr(reparam, "verify_fold", lambda a, b, size: FoldCheck(0.1, 5.0, "stem.conv.bias", 0.1))
    out = tmp_path / "deploy.safetensors"
    assert main(["convert", str(ckpt), str(out), "--img-size", "32"]) != 0
    assert "disagrees" in capsys.readouterr().err
    assert not out.exists()


def test_convert_writes_equivalent_deploy_checkpoint(tmp_path, capsys):
    model, _ = _train_checkpoint(tmp_path)
    # A timm-style training checkpoint without our metadata: needs --model, classes inferred.
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "last.pth")
    out = tmp_path / "deploy.safetensors"
    assert main(["convert", str(tmp_path / "last.pth"), str(out), "--model", "repghostnet_050",
                 "--img-size", "64"]) == 0
    assert "wrote" in capsys.readouterr().out
    deployed = repghost.load_model(out)
    assert repghost.is_deploy(deployed) and deployed.num_classes == 10
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, got = model(x), deployed(x)
    assert (ref - got).abs().max() <= 1e-5 * ref.abs().max()


def test_convert_without_model_name_explains(tmp_path, capsys):
    model, _ = _train_checkpoint(tmp_path)
    torch.save(model.state_dict(), tmp_path / "raw.pth")
    assert main(["convert", str(tmp_path / "raw.pth"), str(tmp_path / "d.safetensors")]) != 0
    assert "--model" in capsys.readouterr().err


# -- ONNX -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["repghostnet_050", "repghostnet_130"])
def test_onnx_matches_pytorch_and_has_no_bn_or_concat(tmp_path, name):
    model = repghost.reparameterize(randomize_bn(repghost.create_model(name)).eval())
    path = export_onnx(model, tmp_path / f"{name}.onnx", (1, 3, 64, 64))
    ops = op_counts(path)
    assert ops.get("BatchNormalization", 0) == 0 and ops.get("Concat", 0) == 0
    assert ops["Conv"] > 0
    graph = onnx.load(str(path))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in graph.graph.input] == ["input"] and [o.name for o in graph.graph.output] == ["logits"]
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    # Batch 3 differs from the export's batch 1: the batch axis is dynamic.
    comparison = compare_onnx(model, path, (3, 3, 64, 64))
    assert comparison.ok, str(comparison)
    assert comparison.max_abs <= 1e-4 * comparison.scale


def test_onnx_of_ghostnet_keeps_its_concats(tmp_path):
    """The no-Concat check above means something: GhostNet's graph has its 32 merges."""
    path = export_onnx(repghost.create_model("ghostnet_050").eval(), tmp_path / "g.onnx", (1, 3, 32, 32),
                       exporter="legacy")
    assert op_counts(path)["Concat"] == 32


def test_export_removes_file_above_tolerance(tmp_path):
    model, ckpt = _train_checkpoint(tmp_path)
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export(str(ckpt), out, img_size=32, exporter="legacy", rtol=0.0, log=lambda _: None)
    assert not out.exists()


def test_printed_node_count_is_the_files(tmp_path, capsys):
    _, ckpt = _train_checkpoint(tmp_path)
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), str(out), "--img-size", "32", "--exporter", "legacy"]) == 0
    line = next(li for li in capsys.readouterr().out.splitlines() if li.startswith(f"wrote {out}:"))
    count, per_op = re.fullmatch(r"wrote .*: (\d+) nodes: (.*)", line).groups()
    nodes = onnx.load(str(out)).graph.node
    assert int(count) == len(nodes) > 100, line
    assert dict((op, int(n)) for op, n in (item.rsplit(" ", 1) for item in per_op.split(", "))) == op_counts(out)


def test_export_refuses_a_graph_that_still_holds_batchnorm(tmp_path, monkeypatch):
    """The graph check fed a graph with BatchNormalization: a fold that silently did nothing (here:
    skipped) leaves the train form's 32 fusion BNs in a RepGhostNet graph, and the export refuses it."""
    _, ckpt = _train_checkpoint(tmp_path)
    monkeypatch.setattr(pipeline, "fold_checked", lambda loaded, size, log: (loaded.model, None))
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"still holds 32 BatchNormalization node\(s\).*file removed"):
        export(str(ckpt), out, img_size=32, exporter="legacy", log=lambda _: None)
    assert not out.exists()
    # Concat is refused in a RepGhostNet only: GhostNet merges with it by design; BN is refused in any model.
    ops = {"Conv": 9, "BatchNormalization": 2, "Concat": 3}
    assert leftover_ops(ops, "repghostnet_100") == {"BatchNormalization": 2, "Concat": 3}
    assert leftover_ops(ops, "ghostnet_100") == {"BatchNormalization": 2}
    assert leftover_ops({"Conv": 9, "Concat": 32}, "ghostnet_100") == {}


def test_export_format_follows_the_extension(tmp_path, capsys):
    assert [resolve_format(f"m{end}") for end in (".onnx", ".pt", ".mnn", ".ncnn.param", ".param", ".xml", ".tflite")] \
        == ["onnx", "torchscript", "mnn", "ncnn", "ncnn", "openvino", "litert"]
    assert resolve_format("M.ONNX") == "onnx" and resolve_format("model.bin", "onnx") == "onnx"
    for out, fmt, message in (("m.mnn", "onnx", "named like a mnn file but the format is onnx"),
                              ("m.onnx", "torchscript", "name it \\*.pt or drop --format"),
                              ("model", None, "cannot tell the format")):
        with pytest.raises(ValueError, match=message):
            resolve_format(out, fmt)
    _, ckpt = _train_checkpoint(tmp_path)
    assert main(["export", str(ckpt), str(tmp_path / "m.pt"), "--img-size", "32"]) == 0   # TorchScript, not ONNX
    assert load_torchscript(tmp_path / "m.pt")(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert "(traced, frozen)" in capsys.readouterr().out


def test_torchscript_export_matches(tmp_path):
    model = repghost.reparameterize(randomize_bn(repghost.create_model("repghostnet_050")).eval())
    path = export_torchscript(model, tmp_path / "m.pt", (1, 3, 64, 64))
    scripted = load_torchscript(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, got = model(x), scripted(x)
    assert (ref - got).abs().max() <= 1e-4 * ref.abs().max()


# -- int8 -------------------------------------------------------------------------------------------

def test_recipe_parsing():
    assert Recipe.parse("qdq") == Recipe("qdq", False, 1)
    assert Recipe.parse("qop-nodw-s16") == Recipe("qop", True, 16)
    with pytest.raises(ValueError, match="FORMAT"):
        Recipe.parse("fp16")


def test_digits_split_uses_the_models_preprocessing_and_the_val_split():
    pre = Preprocess(32, (0.5,) * 3, (0.5,) * 3, crop_pct=1.0)
    split = load_split("digits", pre, num_calib=8)
    assert split.calib.shape == (8, 3, 32, 32) and split.held_out.shape == (360, 3, 32, 32)  # all of val
    assert split.classes == [str(d) for d in range(10)] and set(split.held_out_labels) == set(range(10))
    assert -1.0 <= split.held_out.min() and split.held_out.max() <= 1.0   # (x - 0.5) / 0.5 of [0, 1] pixels
    assert not any(np.array_equal(c, h) for c in split.calib for h in split.held_out[:50])


def test_export_int8_runs_and_reports_accuracy_change(tmp_path, capsys):
    _, ckpt = _train_checkpoint(tmp_path)
    out = tmp_path / "m.onnx"
    rc = main(["export", str(ckpt), str(out), "--int8", "--recipe", "qdq-s8", "--img-size", "32",
               "--num-calib", "8", "--num-held-out", "24"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "top-1 agrees with fp32" in text and "change" in text and "points" in text
    int8 = tmp_path / "m.int8.onnx"
    ops = op_counts(int8)
    assert ops.get("DequantizeLinear", 0) > 0
    assert ops.get("Conv", 0) > 0  # the stride < 8 part stayed float
    logits = session(int8).run(["logits"], {"input": np.zeros((2, 3, 32, 32), np.float32)})[0]
    assert logits.shape == (2, 10) and np.isfinite(logits).all()


def test_calibration_from_a_folder_of_class_folders_skips_a_corrupt_image(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (40, 30), (40 * i, 80, 120)).save(tmp_path / cls / f"{i}.png")
    pre = Preprocess(32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    split = load_split(str(tmp_path), pre, num_calib=2)
    assert split.calib.shape == (2, 3, 32, 32) and len(split.held_out) == 3   # disjoint halves of 6 images
    assert split.num_classes == 2 and set(split.held_out_labels) <= {0, 1}
    (tmp_path / "b" / "bad.png").write_bytes(b"not a png")
    split = load_split(str(tmp_path), pre, num_calib=8)
    assert [Path(p).name for p in split.skipped] == ["bad.png"] and len(split.calib) + len(split.held_out) == 6


def test_every_runtime_export_takes_one_policy_legacy_then_dynamo(monkeypatch, tmp_path):
    """bench, the cost model's timings and the edge converters all export through one function: the
    TorchScript-based exporter first, dynamo only when it fails."""
    from repghost.deploy import onnx_export

    calls = []

    def fake(model, path, input_size, opset=18, exporter="dynamo", dynamic_batch=True):
        calls.append((exporter, dynamic_batch))
        if exporter == "legacy" and fail_legacy:
            raise onnx_export.ExportError("legacy cannot trace it")
        return path

    monkeypatch.setattr(onnx_export, "export_onnx", fake)
    fail_legacy = False
    assert onnx_export.export_for_runtime(None, tmp_path / "a.onnx", (1, 3, 8, 8)) == tmp_path / "a.onnx"
    assert calls == [("legacy", True)]
    calls.clear()
    fail_legacy = True
    onnx_export.export_for_runtime(None, tmp_path / "b.onnx", (1, 3, 8, 8), dynamic_batch=False)
    assert calls == [("legacy", False), ("dynamo", False)]
