"""Ghost-Res50 (GhostNet paper, Han et al. 2020) and RepGhost-Res50 (RepGhost paper), ratio ``s``.

Both start from torchvision's ResNet-50 v1.5 (stride in each bottleneck's 3×3 conv) and replace
every convolution except the 7×7 stem — the bottleneck's 1×1, 3×3 and 1×1 convs and the 1×1
downsample conv — by a module of ratio ``s`` whose primary conv takes that conv's kernel and stride:

- **Ghost-Res50**: a :class:`~repghost.layers.GhostModule` (primary conv to ``ceil(C/s)`` maps, a
  3×3 depthwise conv making ``s − 1`` ghosts of each, Concat, cut to ``C``). Widths stay ResNet's.
- **RepGhost-Res50**: a :class:`~repghost.layers.RepGhostModule` (Add instead of Concat, an
  identity-branch BN, folds to one conv + one depthwise conv). The Add keeps only the
  ``ceil(C/s)`` intrinsic width, so every width after a module is ResNet's divided by ``s`` (the
  residual path included; the stem keeps 64). This is our reading of the paper (see PAPER.md): it
  puts RepGhost-Res50 s=2 (1.17 G MACs) in the class of Ghost-Res50 s=4 (1.18 G), the pair the
  paper compares for speed.

The model is a :class:`~repghost.models.family.StagedNet` (``stem``, ``blocks``, ``classifier``,
``feature_info``), so checkpoints, ``features_only``, re-parameterization and timm's model contract
work the same way as for the GhostNet family.

No ``from __future__ import annotations``: ``torch.fx`` copies ``forward`` annotations into its
generated code, which ``torch.jit.script`` must then resolve (see family.py).
"""

import math
from collections.abc import Callable, Sequence
from functools import partial

from torch import nn

from ..layers import ConvNormAct, GhostModule, RepGhostModule
from ..names import RESNET_RATIOS as RATIOS
from .family import FeaturesOnlyForward, StagedNet, build_staged, default_cfg
from .registry import register_model

# (planes, blocks, stride) per stage: ResNet-50's table. A bottleneck outputs planes × EXPANSION.
RESNET50_TABLE = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
EXPANSION = 4
STEM_CHS = 64
# RATIOS: the ratios with registered names (``ghost_resnet50_s2`` …); any integer s ≥ 2 builds.

ModuleFn = Callable[..., nn.Module]  # (in_chs, out_chs, relu, kernel_size, stride, deploy) -> module with out_chs


def ghost_module_fn(s: int) -> ModuleFn:
    """Ghost module of ratio ``s`` replacing a conv to ``out_chs`` (output width ``out_chs``)."""
    return partial(GhostModule, ratio=s, merge="concat")


def repghost_module_fn(s: int, reparam: str = "bn") -> ModuleFn:
    """RepGhost module replacing a conv to ``out_chs``: it keeps ``ceil(out_chs / s)`` channels."""
    def build(in_chs, out_chs, relu=True, kernel_size=1, stride=1, deploy=False):
        return RepGhostModule(in_chs, math.ceil(out_chs / s), relu=relu, reparam=reparam, kernel_size=kernel_size,
                              stride=stride, deploy=deploy)

    return build


class GhostResBottleneck(nn.Module):
    """ResNet's bottleneck with its three convs (and downsample conv) replaced by ``module_fn`` modules:
    ``relu(conv3(conv2(conv1(x))) + downsample(x))``; ``conv2`` carries the stride (v1.5)."""

    def __init__(self, in_chs: int, planes: int, stride: int, module_fn: ModuleFn, deploy: bool = False):
        super().__init__()
        self.conv1 = module_fn(in_chs, planes, relu=True, kernel_size=1, deploy=deploy)
        self.conv2 = module_fn(self.conv1.out_chs, planes, relu=True, kernel_size=3, stride=stride, deploy=deploy)
        self.conv3 = module_fn(self.conv2.out_chs, planes * EXPANSION, relu=False, kernel_size=1, deploy=deploy)
        self.out_chs = self.conv3.out_chs
        self.downsample = None
        if stride != 1 or in_chs != self.out_chs:
            self.downsample = module_fn(in_chs, planes * EXPANSION, relu=False, kernel_size=1, stride=stride,
                                        deploy=deploy)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(self.conv3(self.conv2(self.conv1(x))) + shortcut)


class GhostResNet(StagedNet):
    """ResNet-50 with Ghost-style modules: stem (7×7 conv, stride 2) → max-pool + 4 stages → pool → fc.

    Feature levels (``feature_info``): 0 = stem (stride 2), 1…4 = the stages (strides 4…32).
    See :class:`GhostResNetFeatures` for the headless ``features_only`` form.
    """

    def __init__(self, module_fn: ModuleFn, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 deploy: bool = False, global_pool: str = "avg", features_only: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3, 4)):
        super().__init__()
        self.num_classes, self.drop_rate, self.deploy = num_classes, drop_rate, deploy
        self.default_cfg = self.pretrained_cfg = {**default_cfg(crop_pct=0.875), "first_conv": "stem.conv"}
        self.stem = ConvNormAct(in_chans, STEM_CHS, 7, stride=2, deploy=deploy)
        prev_chs, stages = STEM_CHS, []
        for index, (planes, depth, stride) in enumerate(RESNET50_TABLE):
            layers = [nn.MaxPool2d(3, stride=2, padding=1)] if index == 0 else []
            for i in range(depth):
                block = GhostResBottleneck(prev_chs, planes, stride if i == 0 else 1, module_fn, deploy=deploy)
                layers.append(block)
                prev_chs = block.out_chs
            stages.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*stages)
        self.num_features = prev_chs
        self.feature_info = [dict(num_chs=STEM_CHS, reduction=2, module="stem")] + [
            dict(num_chs=stage[-1].out_chs, reduction=2 ** (i + 2), module=f"blocks.{i}")
            for i, stage in enumerate(self.blocks)]
        if features_only:
            self.init_features(out_indices)
        else:
            self.init_head(num_classes, global_pool)


class GhostResNetFeatures(FeaturesOnlyForward, GhostResNet):
    """The headless backbone: ``forward`` returns the maps at ``out_indices``."""


def build_resnet(module_fn: ModuleFn, **kwargs) -> GhostResNet:
    """A :class:`GhostResNet`, or its headless :class:`GhostResNetFeatures` when ``features_only``."""
    return build_staged(GhostResNet, GhostResNetFeatures, module_fn, **kwargs)


def _check_ratio(s) -> int:
    if isinstance(s, bool) or not isinstance(s, int) or s < 2:
        raise ValueError(f"ratio s must be an integer ≥ 2 (registered: {', '.join(map(str, RATIOS))}), got {s!r}")
    return s


@register_model
def ghost_resnet50(s: int = 2, **kwargs) -> GhostResNet:
    """Ghost-Res50 with ratio ``s`` (GhostNet paper; s=2: 2.15 G MACs, s=4: 1.18 G)."""
    return build_resnet(ghost_module_fn(_check_ratio(s)), **kwargs)


@register_model
def repghost_resnet50(s: int = 2, reparam: str = "bn", **kwargs) -> GhostResNet:
    """RepGhost-Res50 with ratio ``s`` (every width after a module divided by s; s=2: 1.17 G MACs)."""
    return build_resnet(repghost_module_fn(_check_ratio(s), reparam), **kwargs)


def _register(name: str, family: Callable[..., nn.Module], s: int):
    def builder(**kwargs):
        return family(s=s, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"{family.__doc__.split(' with ')[0]}, s={s}."
    register_model(builder)


for _s in RATIOS:
    _register(f"ghost_resnet50_s{_s}", ghost_resnet50, _s)
    _register(f"repghost_resnet50_s{_s}", repghost_resnet50, _s)
