"""MobileDet-CPU / GPU / EdgeTPU / DSP backbones (Xiong et al., 2021), as TF's object detection API
builds them (``mobiledet_feature_extractor``): a 3×3 stride-2 stem, then five stages whose outputs
are C1…C5 (strides 2…32). Without ``features_only`` a pooled linear classifier sits on C5 so the
backbones train on an image folder like any other model here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.mobiledet import ACTIVATIONS, LayerCfg, make_layer, mobiledet_conv
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
    """TF feeds MobileDets images scaled to [-1, 1] at 320²."""
    return dict(input_size=(3, 320, 320), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.875,
                interpolation="bilinear", first_conv="stem.conv", classifier="classifier")


class MobileDet(nn.Module):
    """A MobileDet backbone from a stage table: ``features_only`` returns the stage outputs at
    ``out_indices`` (0…4 = C1…C5, strides 2…32), otherwise global pooling → dropout → linear."""

    def __init__(self, stages: Sequence[Sequence[LayerCfg]], stem_chs: int = 32, act: str = "relu6",
                 se: bool = False, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
                 deploy: bool = False, features_only: bool = False, out_indices: Sequence[int] = (0, 1, 2, 3, 4)):
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
        #: ``blocks`` indices whose output is the last map at strides 2, 4, 8, 16, 32.
        self.feature_blocks = tuple(range(len(stages)))

        self.features_only = features_only
        self.out_indices = tuple(sorted(out_indices))
        bad = [i for i in self.out_indices if not 0 <= i < len(stages)]
        if bad or not self.out_indices:
            raise ValueError(f"out_indices {bad or '()'} out of range 0..{len(stages) - 1}")
        self.feature_info = info
        if features_only:
            self.feature_info = [info[i] for i in self.out_indices]
            # Stages past the deepest requested level would only cost time.
            self.blocks = self.blocks[: self.out_indices[-1] + 1]
            self.classifier = None
        else:
            self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    # -- timm-style interface -------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one for ``num_classes`` (0 removes it)."""
        if self.features_only:
            raise RuntimeError("a features_only model has no classifier")
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.classifier(x)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stage outputs at ``out_indices``."""
        x = self.stem(x)
        features: list[torch.Tensor] = []
        for idx, stage in enumerate(self.blocks):
            x = stage(x)
            if idx in self.out_indices:
                features.append(x)
        return features

    def forward(self, x: torch.Tensor):
        if self.features_only:
            return self.forward_intermediates(x)
        return self.forward_head(self.forward_features(x))


def _register(name: str):
    stages, stem_chs, act, se = MOBILEDETS[name]

    def builder(**kwargs):
        return MobileDet(stages, stem_chs, act, se, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"MobileDet-{name.split('_', 1)[1].upper()} backbone ({act}{', SE' if se else ''})."
    register_model(builder)


for _name in MOBILEDETS:
    _register(_name)
