"""MobileDets: exact sizes from MOBILEDETS.md, train ≡ deploy for every block and backbone, export,
and SSDLite-MobileDet."""

import pytest
import torch
from torch import nn

import repghost
from repghost import check_equivalence, create_model, list_models, profile, reparameterize
from repghost.deploy import compare_onnx, export_onnx
from repghost.detection import DetectorConfig, build_body, build_detector, detector_body, reparameterize_detector
from repghost.detection.backbone import stage_modules
from repghost.layers import FusedInvertedBottleneck, InvertedBottleneck, TuckerConv, scale_filters

from conftest import randomize_bn

TOL = 1e-5  # max abs error / max abs output, float32
NAMES = ["mobiledet_cpu", "mobiledet_gpu", "mobiledet_dsp", "mobiledet_edgetpu"]
#: ``sum(p.numel())`` of the backbone (C1…C5) and its conv + linear MACs at 320² (MOBILEDETS.md).
BACKBONE_PARAMS = {"mobiledet_cpu": 3_006_440, "mobiledet_gpu": 11_689_920, "mobiledet_dsp": 5_839_952,
                   "mobiledet_edgetpu": 2_777_040}
BACKBONE_GMACS = {"mobiledet_cpu": 0.408, "mobiledet_gpu": 5.010, "mobiledet_dsp": 2.763, "mobiledet_edgetpu": 1.474}
#: Full SSDLite with torchvision's 6-anchor head, 91 classes (background included).
SSDLITE_PARAMS = {"mobiledet_cpu": 4_185_860, "mobiledet_gpu": 13_106_012, "mobiledet_dsp": 7_143_404,
                  "mobiledet_edgetpu": 4_174_188}


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine, and SE biases away from zero."""
    randomize_bn(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
    return model.eval()


def test_registered_and_unknown_name_lists_them():
    assert list_models("mobiledet_*") == sorted(NAMES)
    with pytest.raises(repghost.UnknownModelError, match="mobiledet_cpu.*mobiledet_dsp.*mobiledet_edgetpu"):
        create_model("mobiledet_tpu")


@pytest.mark.parametrize("name", NAMES)
def test_backbone_params_and_macs(name):
    cost = profile(create_model(name, features_only=True), (1, 3, 320, 320))
    assert cost.params == BACKBONE_PARAMS[name]
    assert abs(cost.macs / 1e9 - BACKBONE_GMACS[name]) <= 0.005


def test_scale_filters_rounds_half_up_to_eight():
    assert [scale_filters(f, m) for f, m in [(16, 0.25), (72, 0.75), (32, 0.25), (128, 0.25), (12, 1.0)]] == [
        8, 56, 8, 32, 16]


@pytest.mark.parametrize("name", NAMES)
def test_backbone_deploy_equals_train_and_has_no_batchnorm(name):
    model = randomize(create_model(name, features_only=True), seed=3)
    deployed = reparameterize(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    assert repghost.is_deploy(deployed)
    err = check_equivalence(model, deployed, (2, 3, 96, 96), seed=1)
    assert err["max_rel"] <= TOL, err
    # The deploy architecture built directly loads the folded weights strictly.
    direct = create_model(name, features_only=True, deploy=True)
    direct.load_state_dict(deployed.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_features_only_maps(name):
    model = create_model(name, features_only=True).eval()
    with torch.no_grad():
        maps = model(torch.rand(1, 3, 320, 320))
    assert [info["reduction"] for info in model.feature_info] == [2, 4, 8, 16, 32]
    assert [m.shape[1] for m in maps] == [info["num_chs"] for info in model.feature_info]
    assert [m.shape[-1] for m in maps] == [160, 80, 40, 20, 10]
    c4_c5 = create_model(name, features_only=True, out_indices=(3, 4))
    assert c4_c5.feature_info.channels() == model.feature_info.channels()[3:]  # timm FeatureInfo: the picked levels


BLOCKS = {
    "ibn": lambda i, o, s, r, act, se: InvertedBottleneck(i, o, 5, s, 4, se=se, residual=r, act_layer=act),
    "ibn_noexp": lambda i, o, s, r, act, se: InvertedBottleneck(i, o, 3, s, 1, se=se, residual=r, act_layer=act),
    "fused": lambda i, o, s, r, act, se: FusedInvertedBottleneck(i, o, 3, s, 8, se=se, residual=r, act_layer=act),
    "tucker": lambda i, o, s, r, act, se: TuckerConv(i, o, 5, s, 0.25, 0.75, residual=r, act_layer=act),
}
BLOCK_CASES = [(b, s, r) for b in BLOCKS for s in (1, 2) for r in (True, False) if not (r and s == 2)]


@pytest.mark.parametrize("block,stride,residual", BLOCK_CASES)
@pytest.mark.parametrize("act,se", [(nn.ReLU6, False), (nn.Hardswish, True)])
def test_block_deploy_equals_train(block, stride, residual, act, se):
    out = 16 if residual else 24
    module = randomize(BLOCKS[block](16, out, stride, residual, act, se), seed=stride)
    deployed = reparameterize(module)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    err = check_equivalence(module, deployed, (2, 16, 17, 17), seed=4)
    assert err["max_rel"] <= TOL, err
    with torch.no_grad():
        y = module(torch.rand(1, 16, 17, 17))
    assert y.shape == (1, out, 9 if stride == 2 else 17, 9 if stride == 2 else 17)


def test_residual_is_explicit_and_checked():
    with torch.no_grad():
        x = torch.rand(1, 16, 8, 8)
        on = randomize(InvertedBottleneck(16, 16, residual=True))
        off = InvertedBottleneck(16, 16, residual=False).eval()
        off.load_state_dict(on.state_dict())
        assert torch.allclose(on(x), off(x) + x)
    for block in (InvertedBottleneck, FusedInvertedBottleneck, TuckerConv):
        with pytest.raises(ValueError, match="residual layer needs stride 1"):
            block(16, 16, stride=2, residual=True)
        with pytest.raises(ValueError, match="residual layer needs stride 1"):
            block(16, 24, residual=True)


def test_cpu_uses_hard_swish_and_se_the_others_relu6():
    cpu, gpu = create_model("mobiledet_cpu"), create_model("mobiledet_gpu")
    assert any(isinstance(m, nn.Hardswish) for m in cpu.modules())
    assert sum(type(m).__name__ == "MobileDetSE" for m in cpu.modules()) == 19  # C1 layer + every IBN
    assert not any(isinstance(m, nn.Hardswish) for m in gpu.modules())
    assert not any(type(m).__name__ == "MobileDetSE" for m in gpu.modules())
    bn = next(m for m in cpu.modules() if isinstance(m, nn.BatchNorm2d))
    assert (bn.eps, bn.momentum) == (0.01, 0.01)


def test_classifier_head_and_onnx_export(tmp_path):
    model = randomize(create_model("mobiledet_cpu", num_classes=10), seed=5)
    deployed = reparameterize(model)
    assert deployed.model_kwargs["deploy"]
    path = export_onnx(deployed, tmp_path / "mobiledet_cpu.onnx", (1, 3, 96, 96), exporter="legacy")
    result = compare_onnx(deployed, path, (2, 3, 96, 96))
    assert result.ok, str(result)
    assert check_equivalence(model, deployed, (1, 3, 96, 96))["max_rel"] <= TOL


@pytest.mark.parametrize("name", ["mobiledet_cpu", "mobiledet_gpu"])
def test_ssdlite_mobiledet_params(name):
    detector = build_detector(DetectorConfig(model="ssdlite", backbone=name, num_classes=91))
    assert sum(p.numel() for p in detector.parameters()) == SSDLITE_PARAMS[name]
    # C4 is the output of the last stride-16 layer, C5 the last layer's; then 512 / 256 / 256 / 128.
    c4 = create_model(name, features_only=True).feature_info[3]["num_chs"]
    assert detector.backbone.out_channels == [c4, detector_body(detector).feature_info.channels()[1],
                                              512, 256, 256, 128]
    assert detector.anchor_generator.num_anchors_per_location() == [6] * 6


def test_ssdlite_mobiledet_reparameterizes_to_the_same_outputs():
    config = DetectorConfig(model="ssdlite", backbone="mobiledet_cpu", num_classes=4, min_size=128, max_size=128)
    detector = randomize(build_detector(config), seed=6)
    deployed = reparameterize_detector(detector)
    assert repghost.is_deploy(detector_body(deployed))
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        a, b = detector.backbone(x), deployed.backbone(x)
        head_a, head_b = detector.head(list(a.values())), deployed.head(list(b.values()))
    for key in head_a:
        scale = head_a[key].abs().max()
        assert (head_a[key] - head_b[key]).abs().max() <= TOL * scale
    build_detector(deployed.detector_config).load_state_dict(deployed.state_dict())


def test_mobiledet_body_freezes_by_stage():
    body = build_body("mobiledet_dsp", (3, 4), trainable_stages=2)
    stages = stage_modules(body)
    assert [len(s) for s in stages] == [2, 1, 1, 1, 1]  # stem + C1 stage, then one group per stage
    assert not any(p.requires_grad for s in stages[:3] for m in s for p in m.parameters())
    assert all(p.requires_grad for s in stages[3:] for m in s for p in m.parameters())
