"""MobileDet-CPU / GPU / EdgeTPU / DSP backbones (Xiong et al., 2021), as TF's object detection API
builds them (``mobiledet_feature_extractor``): a 3×3 stride-2 stem, then five stages whose outputs
are C1…C5 (strides 2…32). Without ``features_only`` a pooled linear classifier sits on C5 so the
backbones train on an image folder like any other model here. The network is a
:class:`~repghost.models.family.StagedNet`, so it has timm's model contract like the other families.

No ``from __future__ import annotations``: ``torch.fx`` copies ``forward`` annotations into its
generated code, which ``torch.jit.script`` must then resolve (see family.py).
"""

from collections.abc import Sequence
from functools import partial

from torch import nn

from ..layers.mobiledet import ACTIVATIONS, LayerCfg, make_layer, mobiledet_conv
from .family import FeaturesOnlyForward, StagedNet, build_staged
from .registry import register_model

ibn = partial(LayerCfg, "ibn")
fused = partial(LayerCfg, "fused")
tucker = partial(LayerCfg, "tucker")


def noexp(out: int) -> LayerCfg:
    """IBN without expansion (never residual)."""
    return LayerCfg("ibn", out, e=1, residual=False)


# One list per stage; the stage's last output is C1…C5. ``residual=False`` is TF's ``residual=False``.
MOBILEDET_CPU = [
    [noexp(8)],
    [ibn(16, e=4, stride=2, residual=False)],
    [ibn(32, e=8, stride=2, residual=False), *[ibn(32, e=4)] * 3],
    [ibn(72, k=5, e=8, stride=2, residual=False), ibn(72, e=8), ibn(72, k=5, e=4), ibn(72, e=4),
     ibn(72, e=8, residual=False), *[ibn(72, e=8)] * 3],
    [ibn(104, k=5, e=8, stride=2, residual=False), *[ibn(104, k=5, e=4)] * 2, ibn(104, e=4),
     ibn(144, e=8, residual=False)],
]

MOBILEDET_GPU = [
    [tucker(16, r_in=0.25, r_out=0.25, residual=False)],
    [fused(32, e=8, stride=2, residual=False), *[tucker(32, r_in=0.25, r_out=0.25)] * 3],
    [fused(64, e=8, stride=2, residual=False), *[fused(64, e=8)] * 2, fused(64, e=4)],
    [fused(128, e=8, stride=2, residual=False), *[fused(128, e=4)] * 3, fused(128, e=8, residual=False),
     *[fused(128, e=8)] * 3],
    [fused(128, e=4, stride=2, residual=False), *[fused(128, e=4)] * 3, ibn(384, e=8, residual=False)],
]

MOBILEDET_EDGETPU = [
    [tucker(16, r_in=0.25, r_out=0.75, residual=False)],
    [fused(16, e=8, stride=2, residual=False), fused(16, e=4), fused(16, e=8), fused(16, e=4)],
    [fused(40, k=5, e=8, stride=2, residual=False), *[fused(40, e=4)] * 3],
    [ibn(72, e=8, stride=2, residual=False), ibn(72, e=8), *[fused(72, e=4)] * 2,
     ibn(96, k=5, e=8, residual=False), ibn(96, k=5, e=8), *[ibn(96, e=8)] * 2],
    [ibn(120, k=5, e=8, stride=2, residual=False), ibn(120, e=8), ibn(120, k=5, e=4), ibn(120, e=8),
     ibn(384, k=5, e=8, residual=False)],
]

MOBILEDET_DSP = [
    [noexp(24)],
    [fused(32, e=4, stride=2, residual=False), fused(32, e=4), ibn(32, e=4), tucker(32, r_in=0.25, r_out=0.75)],
    [fused(64, e=8, stride=2, residual=False), ibn(64, e=4), *[fused(64, e=4)] * 2],
    [fused(120, e=8, stride=2, residual=False), ibn(120, e=4), *[ibn(120, e=8)] * 2,
     fused(144, e=8, residual=False), *[ibn(144, e=8)] * 3],
    [ibn(160, e=4, stride=2, residual=False), ibn(160, e=4), fused(160, e=4),
     tucker(160, r_in=0.75, r_out=0.75), ibn(240, e=8, residual=False)],
]

#: Registered name → (stage table, stem width, activation, SE on every IBN).
MOBILEDETS = {
    "mobiledet_cpu": (MOBILEDET_CPU, 16, "hard_swish", True),
    "mobiledet_gpu": (MOBILEDET_GPU, 32, "relu6", False),
    "mobiledet_edgetpu": (MOBILEDET_EDGETPU, 32, "relu6", False),
    "mobiledet_dsp": (MOBILEDET_DSP, 32, "relu6", False),
}


def default_cfg() -> dict:
    """TF feeds MobileDets images scaled to [-1, 1] at 320² (C5, stride 32: 10²)."""
    return dict(input_size=(3, 320, 320), pool_size=(10, 10), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.875,
                interpolation="bilinear", first_conv="stem.conv", classifier="classifier")


class MobileDet(StagedNet):
    """A MobileDet backbone from a stage table with global pooling → dropout → linear on C5.
    Feature levels (``feature_info``): 0…4 = the stage outputs C1…C5, strides 2…32. See
    :class:`MobileDetFeatures` for the headless ``features_only`` form."""

    def __init__(self, stages: Sequence[Sequence[LayerCfg]], stem_chs: int = 32, act: str = "relu6",
                 se: bool = False, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
                 deploy: bool = False, global_pool: str = "avg", features_only: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3, 4)):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
        act_layer = ACTIVATIONS[act]
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.deploy = deploy
        self.default_cfg = self.pretrained_cfg = default_cfg()

        self.stem = mobiledet_conv(in_chans, stem_chs, 3, 2, act_layer=act_layer, deploy=deploy)
        prev_chs, blocks, info = stem_chs, [], []
        for level, stage in enumerate(stages):
            layers = []
            for cfg in stage:
                layers.append(make_layer(cfg, prev_chs, act_layer, se=se, deploy=deploy))
                prev_chs = cfg.out
            blocks.append(nn.Sequential(*layers))
            info.append(dict(num_chs=prev_chs, reduction=2 ** (level + 1), module=f"blocks.{level}"))
        self.blocks = nn.Sequential(*blocks)
        self.num_features = prev_chs
        self.feature_info = info
        if features_only:
            self.init_features(out_indices)
        else:
            self.init_head(num_classes, global_pool)


class MobileDetFeatures(FeaturesOnlyForward, MobileDet):
    """The headless backbone: ``forward`` returns the maps at ``out_indices``."""


def mobiledet_builder(stages: Sequence[Sequence[LayerCfg]], stem_chs: int, act: str, se: bool):
    """The ``create_model`` builder of a stage table: :class:`MobileDetFeatures` with ``features_only``,
    else :class:`MobileDet` (the registered MobileDets and searched architectures alike)."""

    def builder(**kwargs):
        return build_staged(MobileDet, MobileDetFeatures, stages, stem_chs, act, se, **kwargs)

    return builder


def _register(name: str):
    stages, stem_chs, act, se = MOBILEDETS[name]
    builder = mobiledet_builder(stages, stem_chs, act, se)
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"MobileDet-{name.split('_', 1)[1].upper()} backbone ({act}{', SE' if se else ''})."
    register_model(builder)


for _name in MOBILEDETS:
    _register(_name)
