import math

import pytest
import torch

import repghost
from repghost import check_equivalence, create_model, list_models, load_model, reparameterize, save_checkpoint
from repghost.layers import GhostModule

from conftest import randomize_bn

TOL = 1e-5  # max abs error / max abs output, float32


def test_registered_names():
    assert list_models("*resnet50*") == ["ghost_resnet50", "ghost_resnet50_s2", "ghost_resnet50_s4",
                                         "repghost_resnet50", "repghost_resnet50_s2", "repghost_resnet50_s4"]


@pytest.mark.parametrize("name,macs_g,params_m", [
    ("ghost_resnet50_s2", 2.15, 13.95), ("ghost_resnet50_s4", 1.18, 8.15), ("repghost_resnet50_s2", 1.17, 7.10),
])
def test_macs_at_224_match_the_papers(name, macs_g, params_m):
    # The GhostNet paper: Ghost-ResNet-50 2.2 B (s=2) and 1.2 B (s=4) MACs; PAPER.md: 2.151 / 1.182 B.
    # Params: every learnable parameter, BN and the full 2048→1000 classifier included.
    cost = repghost.profile(create_model(name), (1, 3, 224, 224))
    assert abs(cost.macs / 1e9 - macs_g) <= 0.01, cost
    assert abs(cost.params / 1e6 - params_m) <= 0.01, cost


def test_ratio_keyword_and_bad_ratio():
    assert repghost.profile(create_model("ghost_resnet50", s=4), (1, 3, 64, 64)) == \
        repghost.profile(create_model("ghost_resnet50_s4"), (1, 3, 64, 64))
    for bad in (1, 3.0, "2"):
        with pytest.raises(ValueError, match="ratio s must be an integer"):
            create_model("repghost_resnet50", s=bad)


@pytest.mark.parametrize("ratio,out_chs", [(2, 7), (3, 8), (4, 16)])
def test_ghost_module_ratio_widths(ratio, out_chs):
    module = GhostModule(5, out_chs, ratio=ratio, kernel_size=3, stride=2).eval()
    init = math.ceil(out_chs / ratio)
    assert module.primary_conv.conv.out_channels == init
    assert module.cheap_operation.conv.out_channels == (ratio - 1) * init
    assert module(torch.randn(1, 5, 9, 9)).shape == (1, out_chs, 5, 5)


def test_repghost_resnet_widths_are_divided_by_s():
    model = create_model("repghost_resnet50_s2")
    assert model.stem.conv.out_channels == 64
    assert [i["num_chs"] for i in model.feature_info] == [64, 128, 256, 512, 1024]
    assert model.classifier.in_features == 1024


@pytest.mark.parametrize("name", ["repghost_resnet50_s2", "repghost_resnet50_s4", "ghost_resnet50_s4"])
def test_deploy_equals_train_with_random_bn(name):
    model = randomize_bn(create_model(name, num_classes=10)).eval()
    deployed = reparameterize(model)
    assert repghost.is_deploy(deployed)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())
    for batch, size in ((1, 64), (2, 45)):
        err = check_equivalence(model, deployed, (batch, 3, size, size), seed=size)
        assert err["max_rel"] <= TOL, (name, batch, size, err)
    # the deploy architecture built directly takes the folded weights strictly
    direct = create_model(name, num_classes=10, deploy=True)
    direct.load_state_dict(deployed.state_dict(), strict=True)


def test_features_only_strides_and_truncation():
    model = create_model("ghost_resnet50_s4", features_only=True).eval()
    feats = model(torch.randn(1, 3, 64, 64))
    assert [64 // f.shape[-1] for f in feats] == [2, 4, 8, 16, 32]
    assert [f.shape[1] for f in feats] == [i["num_chs"] for i in model.feature_info] == [64, 256, 512, 1024, 2048]
    short = create_model("repghost_resnet50_s2", features_only=True, out_indices=(1, 2))
    assert len(short.blocks) == 2 and short.feature_info.reduction() == [4, 8]  # timm FeatureInfo: the picked levels
    with pytest.raises(ValueError, match="out of range"):
        create_model("ghost_resnet50", features_only=True, out_indices=(5,))


def test_checkpoint_round_trip_and_backbone_load(tmp_path):
    model = randomize_bn(create_model("repghost_resnet50", s=4, num_classes=5)).eval()
    deployed = reparameterize(model)
    path = save_checkpoint(deployed, tmp_path / "d.safetensors")
    loaded = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    assert repghost.is_deploy(loaded) and torch.equal(loaded(x), deployed(x))
    train_path = save_checkpoint(model, tmp_path / "t.safetensors")
    body = repghost.load_checkpoint(create_model("repghost_resnet50", s=4, features_only=True, out_indices=(2,)),
                                    train_path).eval()
    assert body(x)[0].shape == (1, 128, 8, 8)


def test_onnx_export_of_deploy_form(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from repghost.deploy.onnx_export import export_onnx

    deployed = reparameterize(randomize_bn(create_model("repghost_resnet50_s4", num_classes=10)).eval())
    path = export_onnx(deployed, tmp_path / "m.onnx", (1, 3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    ref = deployed(x).detach().numpy()
    assert abs(out - ref).max() / abs(ref).max() <= 1e-4  # onnxruntime reorders float32 sums
