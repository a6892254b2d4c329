"""The weight-sharing super-network's body: RepGhostNet's skeleton (stem, stages of blocks, final 1×1
conv) with a :class:`~.superops.SuperBlock` at every block position, and the SSDLite detector on it.

One body holds every architecture of the space: each position's tensors are sized for the largest
choice, and :meth:`SuperBody.set_path` picks what runs (stem width, per block op / kernel / widths /
SE / skip, width of the final conv). ``forward`` then runs exactly that path, so torchvision's SSD
(whose backbone calls ``body(x)``) works unchanged. Its ``feature_info`` reports the *max* widths of
the maps, from which SSDLite's extra layers and head are built at max size; the layers that take the
body's maps (the first extra layer and the head's first two levels) slice their input channels to
the path's widths (:func:`~.sliced.slice_inputs`).

:func:`path_state_dict` cuts the super-network's tensors to a stand-alone detector of the same
path (the space's model under the same SSDLite), keyed as that detector names them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from timm.models._features import FeatureInfo
from torch import Tensor, nn
from torchvision.models.detection.ssd import SSD

from ..detection.detectors import build_ssdlite
from .sliced import SlicedConvNormAct, slice_inputs, slice_like, sliced_state_dict
from .superops import SKIP, BlockBounds, OpPath, SuperBlock


@dataclass(frozen=True)
class BodyBounds:
    """The max sizes of a body: stem width, the blocks' bounds grouped by stage (as the stand-alone
    body's ``blocks`` groups them), the final 1×1 conv's width, and for each feature level (strides
    2…32) the ``blocks`` index its map is taken after (the final conv is the last index)."""

    stem: int
    stages: tuple[tuple[BlockBounds, ...], ...]
    final: int
    feature_blocks: tuple[int, ...]


@dataclass(frozen=True)
class BodyPath:
    """One architecture of the body: stem width, an :class:`~.superops.OpPath` per block (grouped by
    stage), the final conv's width."""

    stem: int
    blocks: tuple[tuple[OpPath, ...], ...]
    final: int


class SuperBody(nn.Module):
    """The body over ``bounds`` returning the maps at ``out_indices`` (levels 0…4 = strides 2…32)."""

    def __init__(self, bounds: BodyBounds, out_indices: Sequence[int] = (3, 4)):
        super().__init__()
        self.bounds = bounds
        self.stem = SlicedConvNormAct(3, bounds.stem, 3, stride=2, act_layer=nn.ReLU)
        stages = [nn.ModuleList(SuperBlock(b) for b in stage) for stage in bounds.stages]
        stages.append(nn.ModuleList([SlicedConvNormAct(bounds.stages[-1][-1].max_out, bounds.final, 1,
                                                       act_layer=nn.ReLU)]))
        self.out_indices = tuple(sorted(out_indices))
        self.feature_taps = [bounds.feature_blocks[i] for i in self.out_indices]
        self.blocks = nn.Sequential(*stages[: self.feature_taps[-1] + 1])
        widths = [bounds.stem] + [stage[-1].max_out for stage in bounds.stages] + [bounds.final]
        info = [dict(num_chs=widths[idx + 1], reduction=2 ** (level + 1), module=f"blocks.{idx}")
                for level, idx in enumerate(bounds.feature_blocks)]
        self.feature_info = FeatureInfo(info, self.out_indices)
        self.path: BodyPath | None = None

    def set_path(self, path: BodyPath) -> None:
        """Run ``path`` from now on (its shape must match the bounds')."""
        if [len(s) for s in path.blocks] != [len(s) for s in self.bounds.stages]:
            raise ValueError(f"a path of this body has {[len(s) for s in self.bounds.stages]} blocks per stage, "
                             f"got {[len(s) for s in path.blocks]}")
        self.path = path

    def forward(self, x: Tensor) -> list[Tensor]:
        if self.path is None:
            raise RuntimeError("no path selected: call set_path (or the detector's set_arch) first")
        x = self.stem(x, self.path.stem)
        features = []
        for idx, stage in enumerate(self.blocks):
            if idx < len(self.path.blocks):
                for block, op_path in zip(stage, self.path.blocks[idx], strict=True):
                    x = block(x, op_path)
            else:
                x = stage[0](x, self.path.final)
            if idx in self.feature_taps:
                features.append(x)
        return features


def build_super_ssdlite(body: SuperBody, num_classes: int, image_size: int) -> SSD:
    """SSDLite (:func:`~repghost.detection.detectors.build_ssdlite`) on ``body`` at its max widths,
    with the layers that read the body's maps slicing their input to the path's widths."""
    model = build_ssdlite(body, num_classes, image_size)
    slice_inputs(model.backbone.extra[0])
    levels = len(body.out_indices)
    for head in (model.head.classification_head, model.head.regression_head):
        for level in range(levels):
            slice_inputs(head.module_list[level])
    return model


def path_state_dict(model: SSD, stand_alone: nn.Module) -> dict[str, Tensor]:
    """The weights of the path ``model``'s body runs, cut to ``stand_alone`` — the same SSDLite on the
    stand-alone body of that architecture (a ``features_only`` model of the space whose ``stem`` and
    ``blocks[i][j]`` are the path's; a skipped block holds no tensors) — keyed as it names them."""
    body: SuperBody = model.backbone.body
    target_body = stand_alone.backbone.body
    state = {f"backbone.body.stem.{k}": v for k, v in sliced_state_dict(body.stem, target_body.stem).items()}
    for idx, stage in enumerate(body.blocks):
        for j, block in enumerate(stage):
            target = target_body.blocks[idx][j]
            source = block if idx >= len(body.path.blocks) else _op_module(block, body.path.blocks[idx][j])
            if source is None:
                continue
            prefix = f"backbone.body.blocks.{idx}.{j}."
            state.update({prefix + k: v for k, v in sliced_state_dict(source, target).items()})
    source_state = model.state_dict()
    for key, value in stand_alone.state_dict().items():
        if not key.startswith("backbone.body."):
            state[key] = slice_like(source_state[key], value.shape)
    return state


def _op_module(block: SuperBlock, op_path: OpPath) -> nn.Module | None:
    return None if op_path.op == SKIP else block.ops[op_path.op]

