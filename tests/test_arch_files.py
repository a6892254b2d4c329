"""Searched architectures as models: an architecture file or its inline name goes wherever a model name
does (create_model, checkpoints, det-train --backbone), and what is recorded never needs the file again."""

import json

import pytest
import torch

import repghost
from repghost import check_equivalence, create_model, reparameterize
from repghost.checkpoint import open_model
from repghost.cli import main
from repghost.costmodel.space import SearchSpace, SpaceError
from repghost.models import resolve_model_name

from conftest import randomize_bn

TOL = 1e-5


@pytest.fixture(scope="module")
def space():
    return SearchSpace()


@pytest.fixture(scope="module")
def arch(space):
    """Every op of the space at once (IBN, Fused, Tucker, RepGhost), as a search result would mix them."""
    ops = [n for n in space.choice_names if n.endswith(("k3_e4", "k5_e8", "r25_75"))]
    return tuple(ops[i % len(ops)] for i in range(space.num_layers))


@pytest.fixture
def arch_file(space, arch, tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({**space.arch_to_json(arch), "predicted_ms": 8.1, "measured_ms": 8.3}))
    return path


def same_layout(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_file_builds_what_the_space_builds_and_is_named_inline(space, arch, arch_file):
    model, ref = create_model(arch_file, num_classes=10).eval(), space.build(arch, num_classes=10).eval()
    assert same_layout(model, ref)
    model.load_state_dict(randomize_bn(ref).state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    name = space.arch_name(arch)
    assert model.model_name == name == resolve_model_name(str(arch_file)) == resolve_model_name(name)
    assert space.from_arch_name(name) == space.load_arch(name) == arch
    assert same_layout(create_model(model.model_name, **model.model_kwargs), model)


def test_usual_kwargs(space, arch):
    name = space.arch_name(arch)
    features = create_model(name, features_only=True)
    ref = create_model("mobiledet_cpu", features_only=True)  # the same skeleton
    assert features.feature_info.channels() == ref.feature_info.channels() == [8, 16, 32, 72, 144]
    assert features.feature_info.reduction() == [2, 4, 8, 16, 32]
    with torch.no_grad():
        maps = create_model(name, features_only=True, out_indices=(3, 4), in_chans=1)(torch.rand(1, 1, 64, 64))
    assert [m.shape[1:] for m in maps] == [(72, 4, 4), (144, 2, 2)]
    getter = create_model(name, features_only=True, feature_cls="getter", out_indices=(4,))
    assert getter(torch.rand(1, 3, 64, 64))[0].shape == (1, 144, 2, 2)
    model = create_model(name, num_classes=5, drop_rate=0.0, global_pool="max")
    assert model.drop_rate == 0.0 and model(torch.rand(2, 3, 32, 32)).shape == (2, 5)


def test_deploy_form_equals_train_form(space, arch, arch_file):
    model = randomize_bn(create_model(arch_file, features_only=True), seed=2).eval()
    deployed = reparameterize(model)
    assert repghost.is_deploy(deployed)
    assert same_layout(deployed, create_model(model.model_name, features_only=True, deploy=True))
    assert check_equivalence(model, deployed, (1, 3, 64, 64))["max_rel"] <= TOL


def test_checkpoint_rebuilds_without_the_file(arch_file, tmp_path):
    model = create_model(arch_file, num_classes=3).eval()
    path = repghost.save_checkpoint(model, tmp_path / "m.safetensors")
    assert open_model(path, model_name=str(arch_file)).model.model_name == model.model_name  # the same model
    arch_file.unlink()
    loaded = repghost.load_model(path)
    assert loaded.model_name == model.model_name
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("change,message", [
    (dict(fingerprint="0" * 16), "belongs to search space"),
    (dict(space="another_space/v1"), "belongs to search space"),
    (dict(format="something/1"), "is not a repghost architecture file"),
    (dict(layers=["ibn_k7_e4"] * 18), "unknown layer choice"),
    (dict(layers=["ibn_k3_e4"] * 17), "has 18 layers"),
    (dict(layers=[1] * 18), "layer choices are names"),
])
def test_bad_files_are_refused_naming_the_file(space, arch, tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**space.arch_to_json(arch), **change}))
    with pytest.raises(repghost.UnknownModelError, match=message) as err:
        create_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_malformed_names_and_files(space, arch, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(repghost.UnknownModelError, match=f"{path}: not valid JSON"):
        create_model(path)
    with pytest.raises(repghost.UnknownModelError, match="architecture file not found"):
        create_model(tmp_path / "missing.json")
    with pytest.raises(repghost.UnknownModelError, match="unknown model 'mobiledet_tpu'; available models"):
        create_model("mobiledet_tpu")
    other = space.arch_name(arch).replace(space.fingerprint, "f" * 16)
    with pytest.raises(repghost.UnknownModelError, match="belongs to search space"):
        create_model(other)
    with pytest.raises(SpaceError, match="not a searched architecture's name"):
        space.from_arch_name("mobiledet_cpu")


def test_detector_config_records_the_inline_name(space, arch, arch_file, tmp_path):
    from repghost.detection import DetectorConfig, build_body

    named_like_a_backbone = arch_file.rename(tmp_path / "mobiledet_found.json")  # matches "mobiledet_*"
    config = DetectorConfig(model="ssdlite", backbone=str(named_like_a_backbone), num_classes=3)
    assert config.backbone == space.arch_name(arch)
    body = build_body(named_like_a_backbone, (3, 4))
    assert body.model_name == config.backbone and body.feature_info.channels() == [72, 144]
    with pytest.raises(ValueError, match="or a searched architecture's file"):
        DetectorConfig(backbone="resnet50")


def test_det_train_on_a_file_then_eval_without_it(arch_file, tmp_path, capsys):
    out = tmp_path / "run"
    tiny = ["--synthetic-train", "4", "--synthetic-val", "2", "--synthetic-size", "64", "--min-size", "64",
            "--max-size", "64", "--batch-size", "2", "--workers", "0", "--epochs", "1", "--warmup-iters", "1"]
    assert main(["det-train", "--model", "ssdlite", "--backbone", str(arch_file), "--output", str(out), *tiny]) == 0
    name = create_model(arch_file).model_name
    assert torch.load(out / "last.pt", weights_only=True)["detector"]["backbone"] == name
    arch_file.unlink()
    assert main(["det-eval", str(out / "last.pt"), "--reparameterize", "--workers", "0",
                 "--output", str(tmp_path / "deploy.json")]) == 0
    assert json.loads((tmp_path / "deploy.json").read_text())["form"] == "deploy"
    capsys.readouterr()
    code = main(["det-train", "--model", "ssdlite", "--backbone", str(tmp_path / "missing.json"),
                 "--output", str(tmp_path / "run2")])
    err = capsys.readouterr().err
    assert code == 2 and "architecture file not found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run2").exists()


def test_train_on_a_file_names_the_run_shortly_and_evals_without_it(arch_file, tmp_path, capsys):
    from train_helpers import make_image_folder

    data = make_image_folder(tmp_path / "shapes", per_class=4, val_per_class=2, size=16)
    runs = tmp_path / "runs"
    assert main(["train", "--model", str(arch_file), "--data", str(data), "--output", str(runs), "--epochs", "1",
                 "--img-size", "32", "--batch-size", "6", "--warmup-epochs", "0", "--workers", "0",
                 "--threads", "1", "--progress", "false"]) == 0
    (run,) = runs.iterdir()
    assert run.name.endswith("-" + repghost.models.short_model_name(create_model(arch_file).model_name))
    arch_file.unlink()
    capsys.readouterr()
    assert main(["eval", str(run / "last.pt"), "--workers", "0", "--reparam"]) == 0


def test_export_bench_and_models_take_the_file_and_its_inline_name(arch_file, tmp_path, monkeypatch, capsys):
    """Wherever a model name goes: export (random weights) and bench take a searched architecture too."""
    from repghost.deploy import onnx_metadata

    monkeypatch.chdir(tmp_path)
    name = resolve_model_name(str(arch_file))
    assert main(["export", str(arch_file), "a.onnx", "--img-size", "32", "--exporter", "legacy"]) == 0
    assert onnx_metadata(tmp_path / "a.onnx")["repghost_model"] == name   # the inline name: no file needed later
    assert main(["bench", str(arch_file), f"{name}@deploy", "--runtimes", "eager", "--img-size", "32", "--runs", "1",
                 "--warmup", "0", "--out", "b"]) == 0
    models = {r["model"] for r in json.loads((tmp_path / "b" / "latency.json").read_text())["results"]}
    assert models == {str(arch_file), repghost.models.short_model_name(name)}   # a table row, not 300 characters
    capsys.readouterr()
    assert main(["models", name, "--img-size", "32"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(repghost.models.short_model_name(name))
    other = name.replace(name.split(":")[1], "f" * 16)
    for argv in (["export", other, "x.onnx"], ["bench", other], ["models", other]):
        assert main(argv) == 2, argv
        assert "belongs to search space" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_a_detector_checkpoint_says_what_it_is_and_what_to_run(tmp_path, monkeypatch, capsys):
    """`det-eval --save-deploy` writes a detector: eval names it and points to det-eval, export and bench
    (which take detectors: tests/test_detector_export.py)."""
    from repghost.detection import DetectorConfig, build_detector
    from repghost.detection.engine import save_detector

    monkeypatch.chdir(tmp_path)
    detector = build_detector(DetectorConfig(model="ssdlite", backbone="mobiledet_cpu", num_classes=2))
    path = save_detector(detector, tmp_path / "deploy.pt", [{"id": 1, "name": "thing"}])
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a repghost detector checkpoint" in err, err
    assert f"repghost det-eval {path}" in err and f"repghost export {path}" in err
    assert "not written by repghost" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.pt"]


def test_one_rule_tells_a_searched_architecture_from_a_checkpoint_or_a_name(tmp_path, monkeypatch):
    from repghost.names import is_checkpoint_path, is_searched_architecture

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run:1").mkdir()  # an existing path with a ':' is a path, not an inline name
    for spec, searched, checkpoint in [("mobiledet_search:0123abcd:ibn_k3_e4", True, False),
                                       ("arch.json", True, False), ("repghostnet_100", False, False),
                                       ("runs/last.pt", False, True), ("run:1", False, True)]:
        assert (is_searched_architecture(spec), is_checkpoint_path(spec)) == (searched, checkpoint), spec
