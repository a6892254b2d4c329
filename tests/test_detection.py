"""Detection backbones and detectors: shapes, freezing, pretrained loading, and re-parameterization
giving the same detections."""

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

import repghost
from repghost.checkpoint import CheckpointError
from repghost.detection import (
    DetectorConfig,
    build_body,
    build_detector,
    detector_body,
    freeze_batchnorm,
    reparameterize_detector,
)
from repghost.detection.backbone import stage_modules
from repghost.layers.fuse import conv_bn_to_kernel_bias

from conftest import randomize_bn

IMG = 128
# Detections of the deploy form must match the train form to these tolerances (float32 on CPU).
BOX_TOL = 1e-3  # pixels, on a 128-pixel image
SCORE_TOL = 1e-4
MASK_TOL = 1e-3


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """Any attempt to fetch weights fails the test: every builder must run offline."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"attempted download: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def small_config(model: str, backbone: str = "repghostnet_050", **kwargs) -> DetectorConfig:
    return DetectorConfig(model=model, backbone=backbone, num_classes=4, fpn_channels=32, min_size=IMG,
                          max_size=IMG, **kwargs)


def randomize_frozen_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.weight.numel()
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model


def spread_predictions(model: nn.Module, seed: int = 2) -> nn.Module:
    """Re-draw the last layers of the heads with a wide spread, so that an untrained detector's
    scores are far apart (ties would make the comparison depend on float rounding) and pass the
    score threshold."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            last = name.endswith(("cls_logits", "bbox_pred", "cls_score", "mask_fcn_logits")) or (
                "head.classification_head.module_list" in name and name.endswith(".1"))
            if isinstance(m, (nn.Conv2d, nn.Linear)) and last:
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
    return model


def assert_same_detections(a: list[dict], b: list[dict]) -> None:
    for da, db in zip(a, b, strict=True):
        assert len(da["boxes"]) > 5, "the comparison needs detections to compare"
        assert len(da["boxes"]) == len(db["boxes"])
        assert torch.equal(da["labels"], db["labels"])
        assert (da["boxes"] - db["boxes"]).abs().max() <= BOX_TOL
        assert (da["scores"] - db["scores"]).abs().max() <= SCORE_TOL
        if "masks" in da:
            assert (da["masks"] - db["masks"]).abs().max() <= MASK_TOL


@pytest.mark.parametrize("model,backbone,frozen_bn", [
    ("retinanet", "repghostnet_050", False),
    ("maskrcnn", "repghostnet_050", True),
    ("ssdlite", "repghostnet_058", True),
    ("retinanet", "ghostnet_050", True),
])
def test_reparameterized_detector_gives_the_same_detections(model, backbone, frozen_bn):
    # Fewer Mask R-CNN detections: its 256-wide mask head dominates the test's time otherwise.
    fewer = dict(box_detections_per_img=20, rpn_post_nms_top_n_test=200) if model == "maskrcnn" else {}
    detector = build_detector(small_config(model, backbone, frozen_bn=frozen_bn), **fewer)
    randomize_frozen_bn(randomize_bn(detector))
    spread_predictions(detector).eval()
    assert any(isinstance(m, FrozenBatchNorm2d) for m in detector_body(detector).modules()) == frozen_bn

    deployed = reparameterize_detector(detector)
    assert repghost.is_deploy(detector_body(deployed)), "backbone still has BN or branches to fold"
    assert not repghost.is_deploy(detector_body(detector)), "the input must not be modified"
    assert deployed.detector_config.deploy and not detector.detector_config.deploy

    images = [torch.rand(3, IMG, IMG, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    with torch.no_grad():
        assert_same_detections(detector(images), deployed(images))

    # A deploy detector rebuilt from its config loads the deploy weights strictly.
    rebuilt = build_detector(deployed.detector_config)
    rebuilt.load_state_dict(deployed.state_dict())


@pytest.mark.parametrize("backbone", ["repghost_resnet50_s4", "ghost_resnet50_s4"])
def test_res50_backbones_fold_inside_a_detector(backbone):
    """Ghost-/RepGhost-Res50 as detection backbones with frozen BN, folded exactly. (Random
    Res50 detectors saturate to tied boxes, so the fold is checked on the body, where it happens.)"""
    from repghost.reparam import verify_fold

    detector = build_detector(small_config("retinanet", backbone, frozen_bn=True))
    randomize_frozen_bn(randomize_bn(detector)).eval()
    body = detector_body(detector)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    deployed = reparameterize_detector(detector)
    assert repghost.is_deploy(detector_body(deployed))
    assert verify_fold(body, detector_body(deployed), (1, 3, IMG, IMG)).ok
    with torch.no_grad():
        assert len(deployed([torch.rand(3, IMG, IMG)])) == 1


@pytest.mark.parametrize("model,levels", [
    ("retinanet", {"0": 8, "1": 16, "2": 32, "p6": 64, "p7": 128}),
    ("maskrcnn", {"0": 4, "1": 8, "2": 16, "3": 32, "pool": 64}),
])
def test_fpn_levels(model, levels):
    backbone = build_detector(small_config(model)).backbone.eval()
    size = 256
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, size, size))
    assert list(features) == list(levels)
    for name, stride in levels.items():
        assert features[name].shape == (1, 32, size // stride, size // stride)


def test_ssdlite_maps():
    backbone = build_detector(small_config("ssdlite", "ghostnet_050")).backbone.eval()
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 320, 320))
    assert [f.shape[-1] for f in features.values()] == [20, 10, 5, 3, 2, 1]
    assert [f.shape[1] for f in features.values()] == backbone.out_channels


def test_fold_frozen_batchnorm_matches_module():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    frozen = freeze_batchnorm(nn.Sequential(randomize_bn(nn.BatchNorm2d(16))))[0]
    assert isinstance(frozen, FrozenBatchNorm2d)
    kernel, bias = conv_bn_to_kernel_bias(conv, frozen)
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        expected = frozen(conv(x))
        got = nn.functional.conv2d(x, kernel, bias, padding=1)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_freeze_batchnorm_keeps_statistics():
    body = randomize_bn(repghost.create_model("repghostnet_050", features_only=True)).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = body(x)
        frozen = freeze_batchnorm(body)
        after = frozen.train()(x)  # frozen BN ignores train mode
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    for a, b in zip(before, after, strict=True):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()


def test_trainable_stages():
    body = build_body("repghostnet_050", (2, 3, 4), trainable_stages=2)
    stages = stage_modules(body)
    for stage in stages[:3]:
        for module in stage:
            assert not any(p.requires_grad for p in module.parameters())
            assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    for stage in stages[3:]:
        for module in stage:
            assert all(p.requires_grad for p in module.parameters())
            assert any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    with pytest.raises(ValueError, match="trainable_stages"):
        build_body("repghostnet_050", (2, 3, 4), trainable_stages=6)
    with pytest.raises(ValueError, match=r"not a RepGhostNet, GhostNet, MobileDet or \(Rep\)Ghost-Res50 model"):
        build_body("resnet50", (2, 3, 4))


def test_pretrained_backbone_from_classification_checkpoint(tmp_path):
    classifier = randomize_bn(repghost.create_model("repghostnet_050", num_classes=10))
    path = repghost.save_checkpoint(classifier, tmp_path / "cls.safetensors")
    detector = build_detector(small_config("retinanet"), pretrained=path)
    body = detector_body(detector)
    # Pretrained defaults: frozen BN everywhere and only the last 3 stages trainable.
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert not any(p.requires_grad for p in body.stem.parameters())
    assert all(p.requires_grad for p in body.blocks[-1].parameters())
    reference = classifier.state_dict()
    for key, value in body.state_dict().items():
        assert torch.equal(value, reference[key]), key
    with pytest.raises(CheckpointError, match="not found"):
        build_detector(small_config("retinanet"), pretrained=tmp_path / "missing.safetensors")
