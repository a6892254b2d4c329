"""The network shared by GhostNet and RepGhostNet: stem, a table of bottlenecks, head.

Both papers use the same skeleton — 3×3 stride-2 stem, nine groups of bottlenecks, a 1×1 conv,
global pooling, a 1×1 "head" conv to 1280 and a classifier — and differ only in the block and the
table. The table format is ``(kernel, mid_chs, out_chs, se_ratio, stride)`` per block, grouped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from timm.layers import make_divisible
from torch import nn

from ..layers import ConvNormAct

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BlockCfg = tuple[int, int, int, float, int]

#: ``blocks`` indices whose output is the last map at strides 2, 4, 8, 16 and 32.
FEATURE_BLOCKS = (0, 2, 4, 6, 9)
HEAD_CHS = 1280


def default_cfg(crop_pct: float = 0.875, interpolation: str = "bilinear") -> dict:
    """The preprocessing a model expects (timm's ``pretrained_cfg`` keys)."""
    return dict(input_size=(3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=crop_pct,
                interpolation=interpolation, first_conv="stem.conv", classifier="classifier")


class GhostFamilyNet(nn.Module):
    """A GhostNet-style classifier (see :class:`GhostFamilyFeatures` for the backbone form)."""

    def __init__(self, table: Sequence[Sequence[BlockCfg]], block_fn: Callable[..., nn.Module],
                 width: float = 1.0, final_mult: float = 1.0, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.2, deploy: bool = False, features_only: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3, 4)):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.deploy = deploy
        self.default_cfg = self.pretrained_cfg = default_cfg()

        stem_chs = make_divisible(16 * width, 4)
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, deploy=deploy)
        prev_chs, stages = stem_chs, []
        for group in table:
            blocks = []
            for k, mid, out, se_ratio, stride in group:
                block = block_fn(prev_chs, make_divisible(mid * width, 4), make_divisible(out * width, 4),
                                 k, stride, se_ratio, deploy=deploy)
                blocks.append(block)
                prev_chs = block.out_chs
            stages.append(nn.Sequential(*blocks))
        last_mid = table[-1][-1][1]
        self.num_features = make_divisible(last_mid * width * final_mult, 4)
        stages.append(nn.Sequential(ConvNormAct(prev_chs, self.num_features, 1, deploy=deploy)))
        self.blocks = nn.Sequential(*stages)
        self.feature_info = self._feature_info()

        self.features_only = features_only
        self.out_indices = tuple(sorted(out_indices))
        bad = [i for i in self.out_indices if not 0 <= i < len(FEATURE_BLOCKS)]
        if bad or not self.out_indices:
            raise ValueError(f"out_indices {bad or '()'} out of range 0..{len(FEATURE_BLOCKS) - 1}")
        self._feature_blocks = [FEATURE_BLOCKS[i] for i in self.out_indices] if features_only else []
        if features_only:
            self.feature_info = [self.feature_info[i] for i in self.out_indices]
            # Blocks past the deepest requested level would only cost time.
            self.blocks = self.blocks[: self._feature_blocks[-1] + 1]
            self.conv_head = self.classifier = None
            self.head_hidden_size = 0
        else:
            self.head_hidden_size = HEAD_CHS
            self.conv_head = nn.Conv2d(self.num_features, HEAD_CHS, 1, bias=True)
            self.classifier = nn.Linear(HEAD_CHS, num_classes) if num_classes > 0 else nn.Identity()

    def _feature_info(self) -> list[dict]:
        info = []
        for level, idx in enumerate(FEATURE_BLOCKS):
            last = self.blocks[idx][-1]
            chs = last.out_chs if hasattr(last, "out_chs") else last.conv.out_channels
            info.append(dict(num_chs=chs, reduction=2 ** (level + 1), module=f"blocks.{idx}"))
        return info

    # -- timm-style interface -------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one for ``num_classes`` (0 removes it)."""
        if self.features_only:
            raise RuntimeError("a features_only model has no classifier")
        self.num_classes = num_classes
        self.classifier = nn.Linear(HEAD_CHS, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.relu(self.conv_head(x.mean((2, 3), keepdim=True))).flatten(1)
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.classifier(x)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps at ``out_indices`` (strides 2, 4, 8, 16, 32 for indices 0…4)."""
        x = self.stem(x)
        features: list[torch.Tensor] = []
        for idx, stage in enumerate(self.blocks):
            x = stage(x)
            if idx in self._feature_blocks:
                features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class GhostFamilyFeatures(GhostFamilyNet):
    """The headless backbone: ``forward`` returns the maps at ``out_indices``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, features_only=True, **kwargs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_intermediates(x)


def build_family_net(table, block_fn, width, final_mult, features_only: bool = False, **kwargs):
    """A :class:`GhostFamilyNet`, or its headless :class:`GhostFamilyFeatures` when ``features_only``."""
    if features_only:
        return GhostFamilyFeatures(table, block_fn, width, final_mult, **kwargs)
    return GhostFamilyNet(table, block_fn, width, final_mult, **kwargs)
