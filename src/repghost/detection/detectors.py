"""RetinaNet, Mask R-CNN and SSDLite with a RepGhostNet (or GhostNet) backbone.

The detectors are torchvision's own classes with only the backbone swapped, as in the paper's COCO
experiments; nothing is downloaded (no torchvision builder with weights is ever called). Every
detector carries its :class:`DetectorConfig` as ``model.detector_config`` so a checkpoint can
rebuild it.
"""

from __future__ import annotations

import dataclasses
import os
from functools import partial

from torch import nn
from torchvision.models.detection import MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from ..names import DETECTORS  # noqa: F401  (re-exported)
from ..reparam import reparameterize
from .backbone import BackboneWithFPN, SSDLiteBackbone, build_body
from .config import DEFAULT_SIZES, DetectorConfig  # noqa: F401  (re-exported)

#: Feature levels each detector takes from the body (0…4 = strides 2…32).
OUT_INDICES = {"retinanet": (2, 3, 4), "maskrcnn": (1, 2, 3, 4), "ssdlite": (3, 4)}


def retinanet_anchors() -> AnchorGenerator:
    """RetinaNet's anchors on P3–P7: sizes 32…512 at three octave scales, ratios 0.5, 1, 2."""
    sizes = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in (32, 64, 128, 256, 512))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def build_detector(config: DetectorConfig, pretrained: str | os.PathLike | None = None, **detector_kwargs) -> nn.Module:
    """The torchvision detector ``config.model`` on a ``config.backbone`` body.

    ``pretrained`` is a classification checkpoint for the backbone (see
    :func:`repghost.detection.backbone.build_body`); ``detector_kwargs`` go to the torchvision class
    (e.g. ``score_thresh``, ``detections_per_img``).
    """
    body = build_body(config.backbone, OUT_INDICES[config.model], pretrained=pretrained,
                      frozen_bn=config.frozen_bn, trainable_stages=config.trainable_stages, deploy=config.deploy)
    sizes = dict(min_size=config.min_size, max_size=config.max_size)
    if config.model == "retinanet":
        # P6 from C5 ("on input"), as the usual 1× RetinaNet recipe does.
        c5 = body.feature_info.channels()[-1]
        backbone = BackboneWithFPN(body, config.fpn_channels, LastLevelP6P7(c5, config.fpn_channels))
        model = RetinaNet(backbone, config.num_classes, anchor_generator=retinanet_anchors(), **sizes,
                          **detector_kwargs)
    elif config.model == "maskrcnn":
        backbone = BackboneWithFPN(body, config.fpn_channels, LastLevelMaxPool())
        model = MaskRCNN(backbone, config.num_classes, **sizes, **detector_kwargs)
    else:
        model = build_ssdlite(body, config.num_classes, config.min_size, **detector_kwargs)
    model.detector_config = config
    return model


def build_ssdlite(body: nn.Module, num_classes: int, image_size: int, **detector_kwargs) -> SSD:
    """torchvision's SSD with SSDLite's extra layers and head on ``body`` (maps at strides 16 and 32):
    six anchors per location, square ``image_size`` input."""
    backbone = SSDLiteBackbone(body)
    anchors = DefaultBoxGenerator([[2, 3] for _ in backbone.out_channels], min_ratio=0.2, max_ratio=0.95)
    head = SSDLiteHead(backbone.out_channels, anchors.num_anchors_per_location(), num_classes,
                       partial(nn.BatchNorm2d, eps=0.001, momentum=0.03))
    defaults = dict(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300)
    return SSD(backbone, anchors, (image_size, image_size), num_classes, head=head, **{**defaults, **detector_kwargs})


def detector_body(model: nn.Module) -> nn.Module:
    """The RepGhostNet / GhostNet body inside a detector built by :func:`build_detector`."""
    return model.backbone.body


def reparameterize_detector(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with its backbone in deploy form (every BN, frozen or not, and every
    RepGhost branch folded); heads and FPN are untouched. The input is left as it is."""
    deployed = reparameterize(model)
    if hasattr(deployed, "detector_config"):
        deployed.detector_config = dataclasses.replace(deployed.detector_config, deploy=True)
    return deployed
