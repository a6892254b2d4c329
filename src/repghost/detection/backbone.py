"""RepGhostNet / GhostNet feature extractors for torchvision detectors.

A backbone here is a ``features_only`` model (:func:`repghost.create_model`) returning the maps
at strides 2, 4, 8, 16, 32, plus what the detector puts on top: an FPN (RetinaNet, Mask R-CNN)
or SSDLite's extra layers. The body keeps its own module tree, so ``repghost.reparameterize``
folds it in place of the whole detector.
"""

from __future__ import annotations

import fnmatch
import os
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock
from torchvision.ops.misc import Conv2dNormActivation, FrozenBatchNorm2d

from ..checkpoint import load_checkpoint
from ..models import UnknownModelError, create_model, resolve_model_name
from ..models.family import FEATURE_BLOCKS
from ..names import is_searched_architecture
from ..reparam import reparameterize

#: Backbones this module builds detectors on (RepGhostNet, GhostNet for comparison, MobileDets; searched
#: architectures' inline names start with ``mobiledet_search:`` or ``repghostnet_search:``, so they match too).
BACKBONE_PATTERNS = ("repghostnet_*", "ghostnet_*", "mobiledet_*", "ghost_resnet50*", "repghost_resnet50*")
NUM_STAGES = len(FEATURE_BLOCKS)


def backbone_name(spec: str | os.PathLike) -> str:
    """The name of the body ``spec`` builds: a backbone's name as it is, a searched architecture's file or
    inline name as the inline name (so nothing recorded needs the file); ``ValueError`` saying what is
    expected otherwise."""
    name = os.fspath(spec)
    try:
        name = resolve_model_name(name)
    except UnknownModelError:
        if os.path.exists(name) or is_searched_architecture(name):
            raise  # a file or an inline name, but unusable: the registry's message says why
        raise ValueError(_not_a_backbone(name)) from None
    if not any(fnmatch.fnmatch(name, p) for p in BACKBONE_PATTERNS):
        raise ValueError(_not_a_backbone(name))
    return name


def _not_a_backbone(name: str) -> str:
    return (f"backbone {name!r} is not a RepGhostNet, GhostNet, MobileDet or (Rep)Ghost-Res50 model "
            f"(patterns: {', '.join(BACKBONE_PATTERNS)}) or a searched architecture's file")


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` under ``module`` by a ``FrozenBatchNorm2d`` with its statistics
    (in place; returns ``module``). A frozen BN is a fixed per-channel affine map, as detectors
    with small per-GPU batches use it; it still folds away on re-parameterization."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps).to(child.running_mean.device)
            with torch.no_grad():
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def stage_modules(body: nn.Module) -> list[list[nn.Module]]:
    """The body's modules grouped into the five stages that end at strides 2, 4, 8, 16, 32
    (the stem belongs to stage 1). Stages the body was truncated before come back empty."""
    # Every family on the shared skeleton records the block each stride level ends at (-1: the stem).
    feature_blocks = body.stage_ends
    stages: list[list[nn.Module]] = [[body.stem]] + [[] for _ in range(NUM_STAGES - 1)]
    for idx, block in enumerate(body.blocks):
        stage = next(s for s, last in enumerate(feature_blocks) if idx <= last)
        stages[stage].append(block)
    return stages


def freeze_stages(body: nn.Module, trainable_stages: int) -> nn.Module:
    """Keep only the last ``trainable_stages`` of the five stages trainable (torchvision's
    ``trainable_backbone_layers``). Frozen stages get no gradients and frozen BatchNorm, so their
    statistics do not drift either."""
    if not 0 <= trainable_stages <= NUM_STAGES:
        raise ValueError(f"trainable_stages must be in 0..{NUM_STAGES}, got {trainable_stages}")
    for stage in stage_modules(body)[: NUM_STAGES - trainable_stages]:
        for module in stage:
            freeze_batchnorm(module)
            module.requires_grad_(False)
    return body


def build_body(backbone: str, out_indices: Sequence[int], pretrained: str | os.PathLike | None = None,
               frozen_bn: bool | None = None, trainable_stages: int | None = None,
               deploy: bool = False) -> nn.Module:
    """A ``features_only`` backbone returning the maps at ``out_indices`` (0…4 = strides 2…32).

    ``pretrained``: a classification checkpoint (ours, official RepGhost or timm layout; EMA weights
    preferred) loaded before anything is frozen. ``frozen_bn`` (default: on when pretrained) turns
    every BN into FrozenBatchNorm2d; ``trainable_stages`` (default: 3 when pretrained, else all 5)
    freezes the early stages. A ``deploy`` body is the re-parameterized architecture: nothing to
    freeze, used to load a deploy detector checkpoint. ``backbone`` may be a searched architecture's file.
    """
    body = create_model(backbone_name(backbone), features_only=True, out_indices=tuple(out_indices), deploy=deploy)
    if pretrained is not None:
        load_checkpoint(body, pretrained, use_ema=True)
    if deploy:
        return body
    is_trained = pretrained is not None
    if frozen_bn if frozen_bn is not None else is_trained:
        freeze_batchnorm(body)
    freeze_stages(body, trainable_stages if trainable_stages is not None else (3 if is_trained else NUM_STAGES))
    return body


class BackboneWithFPN(nn.Module):
    """``body`` → torchvision ``FeaturePyramidNetwork`` (+ ``extra_blocks``), as torchvision's
    ``BackboneWithFPN`` but for a body that returns a list of maps. Outputs an ordered dict keyed
    ``"0"``, ``"1"``, … (what the detectors' RoI pooling expects) plus the extra levels."""

    def __init__(self, body: nn.Module, out_channels: int, extra_blocks: ExtraFPNBlock | None = None):
        super().__init__()
        self.body = body
        in_channels = body.feature_info.channels()
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra_blocks)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))


def _extra_block(in_chs: int, out_chs: int) -> nn.Sequential:
    """SSDLite's extra layer: 1×1 to half width, 3×3 depthwise stride 2, 1×1 out (BN + ReLU6 each).
    BN eps 0.001 / momentum 0.03 as torchvision's SSDLite and TF's (decay 0.97) use."""
    mid = out_chs // 2
    conv = partial(Conv2dNormActivation, activation_layer=nn.ReLU6,
                   norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=0.03))
    return nn.Sequential(conv(in_chs, mid, 1), conv(mid, mid, 3, stride=2, groups=mid), conv(mid, out_chs, 1))


class SSDLiteBackbone(nn.Module):
    """The body's stride-16 and stride-32 maps plus extra layers down to 1×1 (six maps in all),
    as SSDLite puts them on MobileNet. ``extra_channels`` are the extra layers' widths."""

    def __init__(self, body: nn.Module, extra_channels: Sequence[int] = (512, 256, 256, 128)):
        super().__init__()
        if body.feature_info.reduction() != [16, 32]:
            raise ValueError("SSDLite needs a body with out_indices (3, 4): strides 16 and 32")
        self.body = body
        widths = [body.feature_info.channels()[-1], *extra_channels]
        self.extra = nn.ModuleList(_extra_block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        for module in self.extra.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.03)
        self.out_channels = body.feature_info.channels() + list(extra_channels)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = list(self.body(x))
        y = features[-1]
        for block in self.extra:
            y = block(y)
            features.append(y)
        return OrderedDict((str(i), f) for i, f in enumerate(features))


class LastMap(nn.Module):
    """A ``features_only`` body with its last map as its one output (what a runtime times: C4 is computed on
    the way to C5)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x)[-1]


def ssdlite_body(backbone: str) -> nn.Module:
    """The deploy-form SSDLite body of ``backbone`` (maps at strides 16 and 32): what the detection study and
    the search's measured pick time."""
    return LastMap(reparameterize(create_model(backbone, features_only=True, out_indices=(3, 4)).eval())).eval()
