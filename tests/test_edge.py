"""Edge runtimes (MNN, ncnn, OpenVINO, LiteRT): export, check against PyTorch, refusal of corrupt or
mismatching files, and the install message of a missing extra.

A runtime's tests skip when it is not installed (``pip install 'repghost[edge]'``); the
missing-extra tests simulate absence and always run. Inputs are 64² to stay fast.
"""

import json
import shutil
import sys

import pytest
import torch

import repghost
from repghost.cli import main
from repghost.deploy import ExportError
from repghost.deploy.edge import EDGE_RUNTIMES, MissingRuntimeError, edge_runtime
from repghost.deploy.pipeline import export

from conftest import randomize_bn

SIZE = 64
#: What a runtime's tests need importable: the runtime and its converter.
NEEDS = {"mnn": ("MNN",), "ncnn": ("ncnn", "pnnx"), "openvino": ("openvino",),
         "litert": ("ai_edge_litert", "litert_torch")}
OUT_NAME = {"mnn": "m.mnn", "ncnn": "m.ncnn.param", "openvino": "m.xml", "litert": "m.tflite"}


def _require(runtime):
    for module in NEEDS[runtime]:
        pytest.importorskip(module)
    return edge_runtime(runtime)


def _max_rel_error(model, run, seed=1, batch=1):
    x = torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    got = run(x.numpy())
    assert got.shape == ref.shape
    return float(abs(got - ref).max() / abs(ref).max())


@pytest.fixture(scope="module", params=list(EDGE_RUNTIMES))
def exported(request, tmp_path_factory):
    """repghostnet_050 (train form, random BN statistics) → checkpoint → ``export`` for one runtime."""
    rt = _require(request.param)
    tmp = tmp_path_factory.mktemp(request.param)
    model = randomize_bn(repghost.create_model("repghostnet_050", num_classes=10)).eval()
    ckpt = repghost.save_checkpoint(model, tmp / "train.safetensors")
    lines = []
    report = export(str(ckpt), tmp / OUT_NAME[rt.name], fmt=rt.name, img_size=SIZE, log=lines.append)
    return rt, model, report, lines


def test_export_of_repghostnet_matches_pytorch(exported):
    rt, model, report, lines = exported
    assert report.comparison.ok and report.comparison.max_rel <= 1e-4
    assert all(f.is_file() and f.stat().st_size > 0 for f in report.files)
    assert any(report.runtime_version in line and "OK" in line for line in lines)
    assert json.loads(report.sidecar.read_text())["repghost_model"] == "repghostnet_050"  # the contract beside it
    # An independent run of the file on fresh input, against the *train-form* source model.
    assert _max_rel_error(model, rt.runner(report.path, threads=1), seed=7) <= 1e-4
    if rt.name == "ncnn":  # its blobs have no batch axis: a batch runs image by image
        assert _max_rel_error(model, rt.runner(report.path, threads=2), batch=3) <= 1e-4


@pytest.mark.parametrize("runtime", list(EDGE_RUNTIMES))
def test_export_of_ghostnet_by_name_matches_pytorch(tmp_path, capsys, runtime):
    rt = _require(runtime)
    out = tmp_path / OUT_NAME[runtime]
    assert main(["export", "ghostnet_050", str(out), "--format", runtime, "--img-size", str(SIZE)]) == 0
    printed = capsys.readouterr().out
    assert f"{rt.label} ({rt.version()}) vs PyTorch" in printed and "OK" in printed
    assert all(f.is_file() for f in rt.files(out))
    # No side files: the runtime's own files and the contract beside them.
    expected = [*(f.name for f in rt.files(out)), f"{out.name}.repghost.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)


def test_truncated_file_is_refused(exported, tmp_path):
    rt, model, report, _ = exported
    copies = [shutil.copy(f, tmp_path / f.name) for f in report.files]
    damaged = tmp_path / report.files[-1].name  # the weights file where there are two
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 3])
    with pytest.raises(ExportError, match=f"{rt.label} cannot"):
        rt.check(copies[0], model, (1, 3, SIZE, SIZE))


def test_mismatching_export_is_refused_and_removed(exported, tmp_path, monkeypatch, capsys):
    """The runtime's file holds other weights than the model being exported: refused, files gone."""
    rt, _, report, _ = exported

    def export_the_other_model(model, path, input_size):
        path.parent.mkdir(parents=True, exist_ok=True)
        for f, target in zip(report.files, rt.files(path), strict=True):
            shutil.copy(f, target)
        return path

    monkeypatch.setattr(rt, "export", export_the_other_model)
    other = randomize_bn(repghost.create_model("repghostnet_050", num_classes=10), seed=3).eval()
    ckpt = repghost.save_checkpoint(other, tmp_path / "other.safetensors")
    out = tmp_path / "out" / OUT_NAME[rt.name]
    out.parent.mkdir()
    assert main(["export", str(ckpt), str(out), "--format", rt.name, "--img-size", str(SIZE)]) == 1
    err = capsys.readouterr().err
    assert "differs from PyTorch" in err and "file removed" in err
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("runtime", list(EDGE_RUNTIMES))
def test_missing_extra_names_the_extra(tmp_path, monkeypatch, capsys, runtime):
    rt = edge_runtime(runtime)
    monkeypatch.setitem(sys.modules, rt.run_modules[0], None)  # makes `import` fail as if not installed
    with pytest.raises(MissingRuntimeError):
        rt.require()
    out = tmp_path / OUT_NAME[runtime]
    assert main(["export", "repghostnet_050", str(out), "--format", runtime]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pip install 'repghost[{rt.extra}]'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert main(["bench", "repghostnet_050", "--runtimes", runtime, "--out", str(tmp_path / "b")]) == 1
    assert f"pip install 'repghost[{rt.extra}]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_openvino_int8_with_nncf_reports_the_top1_change(tmp_path, capsys):
    rt = _require("openvino")
    pytest.importorskip("nncf")
    model = randomize_bn(repghost.create_model("repghostnet_050", num_classes=10)).eval()
    ckpt = repghost.save_checkpoint(model, tmp_path / "train.safetensors")
    out = tmp_path / "m.xml"
    assert main(["export", str(ckpt), str(out), "--format", "openvino", "--int8", "--img-size", "32",
                 "--num-calib", "8", "--num-held-out", "24"]) == 0
    text = capsys.readouterr().out
    assert "int8 (NNCF) top-1 agrees with fp32" in text and "change" in text and "points" in text
    int8 = tmp_path / "m.int8.xml"
    assert 'type="FakeQuantize"' in int8.read_text() and 'type="FakeQuantize"' not in out.read_text()
    logits = rt.runner(int8)(torch.randn(1, 3, 32, 32).numpy())
    assert logits.shape == (1, 10) and bool(torch.isfinite(torch.from_numpy(logits)).all())


def test_bench_keeps_each_runtime_in_its_own_files(tmp_path):
    from repghost.bench.runtimes import edge_export_path

    files = [f for name, rt in EDGE_RUNTIMES.items() for f in rt.files(edge_export_path(tmp_path / "m.onnx", name, 1))]
    assert len(set(files)) == len(files) == 6 and tmp_path / "m.onnx" not in files


def test_int8_is_refused_for_edge_formats(tmp_path, capsys):
    assert main(["export", "repghostnet_050", str(tmp_path / "m.mnn"), "--format", "mnn", "--int8"]) == 2  # usage
    assert "--format onnx" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_bench_times_an_edge_runtime(tmp_path, capsys, runtime="mnn"):
    rt = _require(runtime)
    out = tmp_path / "bench"
    assert main(["bench", "repghostnet_050@deploy", "--runtimes", runtime, "--img-size", "32",
                 "--runs", "3", "--warmup", "1", "--out", str(out)]) == 0
    assert f"| repghostnet_050 | deploy | {runtime} |" in capsys.readouterr().out
    data = json.loads((out / "latency.json").read_text())
    assert data["environment"][runtime] == rt.version()
    row = next(r for r in data["results"] if r["runtime"] == runtime)
    assert row["error"] == "" and row["runs"] == 3 and row["median_ms"] > 0 and row["cpu_ms"] > 0
