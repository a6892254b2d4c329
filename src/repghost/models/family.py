"""The shared model skeleton: timm's model contract (:class:`StagedNet`) and the network shared by
GhostNet and RepGhostNet (:class:`GhostFamilyNet`).

Both papers use the same skeleton — 3×3 stride-2 stem, nine groups of bottlenecks, a 1×1 conv,
global pooling, a 1×1 "head" conv to 1280 and a classifier — and differ only in the block and the
table. The table format is ``(kernel, mid_chs, out_chs, se_ratio, stride)`` per block, grouped.

No ``from __future__ import annotations`` here: ``torch.fx`` copies the annotations of the traced
``forward`` into its generated code, and string annotations come out as names that
``torch.jit.script`` cannot resolve.
"""

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d, make_divisible
from timm.models import checkpoint_seq
from timm.models._features import FeatureInfo, feature_take_indices
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
    return dict(input_size=(3, 224, 224), pool_size=(7, 7), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                crop_pct=crop_pct, interpolation=interpolation, first_conv="stem.conv", classifier="classifier")


class StagedNet(nn.Module):
    """stem → ``blocks`` (a Sequential of stages) → head, with timm's model contract.

    A family builds ``self.stem``, ``self.blocks`` and ``self.feature_info`` (a list of
    ``dict(num_chs, reduction, module)``, ``module`` being ``"stem"`` or ``"blocks.N"``), sets
    ``num_features`` and ``drop_rate``, then calls :meth:`init_head` — or, for the headless
    ``features_only`` form, :meth:`init_features` and mixes in :class:`FeaturesOnlyForward`.
    It then has timm's ``forward_features``, ``forward_head``, ``forward_intermediates``,
    ``prune_intermediate_layers``, ``set_grad_checkpointing``, ``get_classifier`` and
    ``reset_classifier(num_classes, global_pool=None)``, and works with timm's ``FeatureGetterNet``
    (``feature_cls="getter"``).
    """

    features_only = False

    def _init_contract(self) -> None:
        self.grad_checkpointing = False  # an instance attribute: TorchScript does not see class attributes
        # The ``blocks`` index each feature level is taken after (−1: the stem's output).
        self.stage_ends = [int(i["module"].split(".")[1]) if i["module"].startswith("blocks.") else -1
                           for i in self.feature_info]

    def init_head(self, num_classes: int, global_pool: str = "avg", conv_head_chs: int = 0) -> None:
        """pool → [1×1 conv to ``conv_head_chs`` + ReLU] → flatten → dropout → classifier."""
        self._init_contract()
        self.num_classes = num_classes
        if conv_head_chs:
            self.conv_head = nn.Conv2d(self.num_features, conv_head_chs, 1, bias=True)
            self.head_act = nn.ReLU(inplace=True)
        else:
            self.conv_head, self.head_act = nn.Identity(), nn.Identity()
        self.head_hidden_size = conv_head_chs or self.num_features
        self._set_pool(global_pool)
        self.classifier = self._new_classifier(num_classes)

    def init_features(self, out_indices: Sequence[int]) -> None:
        """The ``features_only`` form: maps at ``out_indices`` (levels of ``feature_info``), no head,
        and no blocks past the deepest level requested."""
        levels = len(self.feature_info)
        self.out_indices = tuple(sorted(out_indices))
        bad = [i for i in self.out_indices if not 0 <= i < levels]
        if bad or not self.out_indices:
            raise ValueError(f"out_indices {bad or '()'} out of range 0..{levels - 1}")
        self.features_only = True
        self._init_contract()
        self.feature_taps = [self.stage_ends[i] for i in self.out_indices]
        self.feature_info = FeatureInfo(self.feature_info, self.out_indices)
        self.blocks = self.blocks[: self.feature_taps[-1] + 1]
        self.head_hidden_size = 0

    def _set_pool(self, global_pool: str) -> None:
        try:
            pool = SelectAdaptivePool2d(pool_type=global_pool)
        except AssertionError:
            raise ValueError(f"unknown global_pool {global_pool!r}; use 'avg', 'max', 'avgmax' or ''") from None
        if pool.feat_mult() != 1:
            raise ValueError(f"global_pool {global_pool!r} changes the pooled width, which the head cannot take; "
                             "use 'avg', 'max', 'avgmax' or ''")
        self.global_pool = pool
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()  # '' keeps the map: no pooling

    def _new_classifier(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        weight = next(self.parameters(), None)
        layer = nn.Linear(self.head_hidden_size, num_classes)
        return layer if weight is None else layer.to(weight.device, weight.dtype)

    # -- timm's model contract ------------------------------------------------------------
    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of keeping its activations (timm's switch)."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier for ``num_classes`` (0: none, ``forward`` gives pre-logits);
        ``global_pool`` changes the pooling too (``''``: none, ``forward`` then returns maps)."""
        if self.features_only:
            raise RuntimeError("a features_only model has no classifier")
        self.num_classes = num_classes
        if global_pool is not None:
            self._set_pool(global_pool)
            self.global_pool.train(self.training)
        self.classifier = self._new_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.head_act(self.conv_head(self.global_pool(x))))
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
            self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
            stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates``: the maps of the feature levels ``indices`` (``None``: all,
        an int ``n``: the last ``n``, a list: those, negative from the end) and, unless
        ``intermediates_only``, the final features. ``stop_early`` stops after the deepest level
        taken (the final features are then that map). ``norm`` has nothing to apply here (no final
        norm layer); only the ``"NCHW"`` format exists."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got '{output_fmt}'")
        ends = self.stage_ends
        take_indices, max_index = feature_take_indices(len(ends), indices)
        taps = [ends[i] for i in take_indices]
        last = ends[max_index]
        if last >= len(self.blocks):
            raise ValueError(f"feature level {max_index} is not in this model (its blocks were pruned)")
        x = self.stem(x)
        intermediates: list[torch.Tensor] = []
        if -1 in taps:
            intermediates.append(x)
        for idx, stage in enumerate(self.blocks):  # a test per stage, not a slice: TorchScript iterates no slice
            if not stop_early or idx <= last:
                if self.grad_checkpointing and not torch.jit.is_scripting():
                    x = checkpoint_seq(stage, x)
                else:
                    x = stage(x)
                if idx in taps:
                    intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the blocks past the deepest of the levels ``indices`` and, with them or with
        ``prune_head``, the head (pooling, head conv, classifier). Returns the absolute indices."""
        ends = self.stage_ends
        take_indices, max_index = feature_take_indices(len(ends), indices)
        last = ends[max_index]
        if not (prune_head or last < len(self.blocks) - 1):
            return take_indices
        self.blocks = self.blocks[: last + 1]
        if not self.features_only:  # the head was sized for the final features: it goes with them
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            self.conv_head, self.head_act = nn.Identity(), nn.Identity()
            self.reset_classifier(0, "")
        return take_indices


class FeaturesOnlyForward:
    """Mixed in before a :class:`StagedNet` subclass ``X`` as ``class XFeatures(FeaturesOnlyForward, X)``:
    the headless backbone, built with ``features_only=True``, whose ``forward`` returns the maps at
    ``out_indices`` (a list, as timm's ``features_only`` models do). Written for ``torch.jit.script`` and
    ``torch.fx``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, features_only=True, **kwargs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features: list[torch.Tensor] = []
        if -1 in self.feature_taps:
            features.append(x)
        for idx, stage in enumerate(self.blocks):
            x = stage(x)
            if idx in self.feature_taps:
                features.append(x)
        return features


class GhostFamilyNet(StagedNet):
    """A GhostNet-style classifier (see :class:`GhostFamilyFeatures` for the backbone form)."""

    def __init__(self, table: Sequence[Sequence[BlockCfg]],
                 block_fn: Callable[..., nn.Module] | Sequence[Callable[..., nn.Module]],
                 width: float = 1.0, final_mult: float = 1.0, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.2, deploy: bool = False, global_pool: str = "avg",
                 features_only: bool = False, out_indices: Sequence[int] = (0, 1, 2, 3, 4),
                 stem_chs: int | None = None, num_features: int | None = None):
        """``block_fn`` builds every block, or (a sequence) each block its own, in table order;
        ``stem_chs`` / ``num_features`` set the stem's and the last 1×1 conv's widths instead of
        deriving them from ``width`` (a searched architecture sets each stage's width)."""
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.deploy = deploy
        self.default_cfg = self.pretrained_cfg = default_cfg()

        stem_chs = stem_chs or make_divisible(16 * width, 4)
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, deploy=deploy)
        prev_chs, stages = stem_chs, []
        block_fns = iter(block_fn) if isinstance(block_fn, Sequence) else itertools.repeat(block_fn)
        for group in table:
            blocks = []
            for k, mid, out, se_ratio, stride in group:
                block = next(block_fns)(prev_chs, make_divisible(mid * width, 4), make_divisible(out * width, 4),
                                 k, stride, se_ratio, deploy=deploy)
                blocks.append(block)
                prev_chs = block.out_chs
            stages.append(nn.Sequential(*blocks))
        last_mid = table[-1][-1][1]
        self.num_features = num_features or make_divisible(last_mid * width * final_mult, 4)
        stages.append(nn.Sequential(ConvNormAct(prev_chs, self.num_features, 1, deploy=deploy)))
        self.blocks = nn.Sequential(*stages)
        self.feature_info = self._feature_info()
        if features_only:
            self.init_features(out_indices)
        else:
            self.init_head(num_classes, global_pool, conv_head_chs=HEAD_CHS)

    def _feature_info(self) -> list[dict]:
        info = []
        for level, idx in enumerate(FEATURE_BLOCKS):
            last = self.blocks[idx][-1]
            chs = last.out_chs if hasattr(last, "out_chs") else last.conv.out_channels
            info.append(dict(num_chs=chs, reduction=2 ** (level + 1), module=f"blocks.{idx}"))
        return info


class GhostFamilyFeatures(FeaturesOnlyForward, GhostFamilyNet):
    """The headless backbone: ``forward`` returns the maps at ``out_indices``."""


def build_staged(net_cls: type[StagedNet], features_cls: type[StagedNet], *args, features_only: bool = False,
                 **kwargs) -> StagedNet:
    """What every family's builder calls: ``net_cls(*args, **kwargs)``, or its headless ``features_cls``
    (``class XFeatures(FeaturesOnlyForward, X)``) when ``features_only``."""
    return (features_cls if features_only else net_cls)(*args, **kwargs)


def build_family_net(table, block_fn, width, final_mult, **kwargs):
    """A :class:`GhostFamilyNet`, or its headless :class:`GhostFamilyFeatures` when ``features_only``."""
    return build_staged(GhostFamilyNet, GhostFamilyFeatures, table, block_fn, width, final_mult, **kwargs)
