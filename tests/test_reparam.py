import warnings

import pytest
import torch
from torch import nn

import repghost
from repghost import check_equivalence, create_model, list_models, reparameterize
from repghost.layers import RepGhostModule

from conftest import randomize_bn

TOL = 1e-5  # max abs error / max abs output, float32
REPGHOST = list_models("repghostnet_*")
GHOST = list_models("ghostnet_*")
CASES = [(n, r) for n in REPGHOST for r in ("bn", "identity", "dw1x1", "none")] + [(n, None) for n in GHOST]


def build(name, reparam=None, seed=0, **kwargs):
    if reparam is not None:
        kwargs["reparam"] = reparam
    return randomize_bn(create_model(name, **kwargs), seed=seed).eval()


@pytest.mark.parametrize("name,reparam", CASES)
def test_deploy_equals_train(name, reparam):
    model = build(name, reparam)
    deployed = reparameterize(model)
    for size in (224, 193):
        for batch in (1, 3):
            err = check_equivalence(model, deployed, (batch, 3, size, size), seed=size + batch)
            assert err["max_rel"] <= TOL, (name, reparam, size, batch, err)


@pytest.mark.parametrize("name", ["repghostnet_050", "repghostnet_130", "ghostnet_100"])
def test_deploy_has_no_batchnorm_and_one_cheap_conv(name):
    deployed = reparameterize(build(name))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    assert repghost.is_deploy(deployed)
    for module in deployed.modules():
        if isinstance(module, RepGhostModule):
            depthwise = [m for m in module.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
            assert len(depthwise) == 1 and depthwise[0].bias is not None
            assert module.fusion is None


def test_reparameterize_leaves_input_untouched_and_is_idempotent():
    model = build("repghostnet_050")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = reparameterize(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    again = reparameterize(deployed)
    assert again is not deployed
    assert deployed.state_dict().keys() == again.state_dict().keys()
    assert all(torch.equal(deployed.state_dict()[k], again.state_dict()[k]) for k in deployed.state_dict())


def test_train_mode_model_converts_with_running_stats_and_warns():
    model = build("repghostnet_050").train()
    with pytest.warns(UserWarning, match="train mode"):
        deployed = reparameterize(model)
    assert model.training and not deployed.training
    assert check_equivalence(model, deployed, (2, 3, 96, 96))["max_rel"] <= TOL
    assert model.training  # check_equivalence restores the mode


def test_eval_model_converts_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reparameterize(build("repghostnet_050"))


@pytest.mark.parametrize("name,reparam", [("repghostnet_100", "bn"), ("repghostnet_050", "dw1x1"),
                                          ("ghostnet_add_050", None)])
def test_deploy_architecture_loads_deploy_state_strictly(name, reparam):
    deployed = reparameterize(build(name, reparam))
    direct = create_model(name, deploy=True)
    direct.load_state_dict(deployed.state_dict(), strict=True)
    assert check_equivalence(deployed, direct, (1, 3, 128, 128))["max_abs"] == 0.0


def test_torchscript_of_deploy_model_agrees():
    deployed = reparameterize(build("repghostnet_080"))
    scripted = torch.jit.script(deployed)
    x = torch.randn(2, 3, 160, 160)
    assert ((scripted(x) - deployed(x)).abs().max() / deployed(x).abs().max()).item() <= TOL


def test_torch_export_of_deploy_model_agrees():
    deployed = reparameterize(build("repghostnet_050"))
    x = torch.randn(1, 3, 128, 128)
    exported = torch.export.export(deployed, (x,))
    assert ((exported.module()(x) - deployed(x)).abs().max() / deployed(x).abs().max()).item() <= TOL


def test_onnx_export_of_deploy_model_runs(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    deployed = reparameterize(build("repghostnet_050"))
    x = torch.randn(1, 3, 128, 128)
    path = tmp_path / "m.onnx"
    torch.onnx.export(deployed, (x,), str(path), input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    graph_ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" not in graph_ops and "Concat" not in graph_ops
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    ref = deployed(x).detach().numpy()
    assert abs(out - ref).max() / abs(ref).max() <= 1e-4  # onnxruntime fuses ops: float32 reordering


@pytest.mark.parametrize("name", ["repghostnet_100", "ghostnet_050"])
def test_features_only_deploy_equals_train(name):
    model = build(name, features_only=True)
    deployed = reparameterize(model)
    err = check_equivalence(model, deployed, (2, 3, 224, 224))
    assert err["max_rel"] <= TOL


def test_timm_reparameterize_model_folds_our_models_too():
    from timm.utils import reparameterize_model

    model = build("repghostnet_050")
    deployed = reparameterize_model(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    assert check_equivalence(model, deployed, (1, 3, 160, 160))["max_rel"] <= TOL
