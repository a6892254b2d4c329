"""The RepGhostNet-skeleton space (:class:`~repghost.models.repghostnet_space.RepGhostNetSpace`) as the
super-network sees it: its max sizes (:func:`body_bounds`), an architecture as a path of the body
(:func:`body_path`), and the sandwich rule's extreme architectures (:func:`extreme_arch`).

The super-network's tensors at a block position are sized for the largest choice of every decision
there (the largest width and middle-width multipliers, kernel 5, SE), once per op type the position
allows; a path cuts the first channels and the centre kernel out of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from timm.layers import make_divisible
from torch import nn
from torchvision.models.detection.ssd import SSD

from ..detection.detectors import build_ssdlite
from ..models.family import FEATURE_BLOCKS
from ..models.repghostnet_space import KERNELS, MULTIPLIERS, SE_CHOICES, TUCKER_RANK, RepGhostNetSpace
from .superbody import BodyBounds, BodyPath, SuperBody, build_super_ssdlite, path_state_dict
from .superops import SKIP, BlockBounds, OpPath


def tucker_rank(mid: int) -> int:
    """A Tucker block's input and output rank at middle width ``mid`` (the space's rule)."""
    return make_divisible(mid * TUCKER_RANK, 4)


def _widest(base: int) -> int:
    return max(make_divisible(base * float(m), 4) for m in MULTIPLIERS)


def body_bounds(space: RepGhostNetSpace) -> BodyBounds:
    """The max size of every tensor of ``space``'s super-network."""
    widths = [_widest(c) for c in space.stage_chs]
    max_k = max(int(k) for k in KERNELS)
    stages, start = [], 0
    for size in space.group_sizes:
        group = []
        for slot in space.slots[start:start + size]:
            mid = _widest(slot.mid)
            rank = max(tucker_rank(make_divisible(slot.mid * float(m), 4)) for m in MULTIPLIERS)
            max_mid = {op: (rank, rank) if op == "tucker" else mid for op in slot.ops if op != SKIP}
            group.append(BlockBounds(widths[slot.in_stage], widths[slot.stage], max_mid, slot.stride, max_k,
                                     slot.skippable, slot.in_stage == slot.stage, nn.ReLU))
        stages.append(tuple(group))
        start += size
    return BodyBounds(widths[0], tuple(stages), widths[-1], FEATURE_BLOCKS)


def body_path(space: RepGhostNetSpace, arch: Sequence[str]) -> BodyPath:
    """``arch`` as the path of the body that runs it."""
    widths = space.widths(arch)
    paths = []
    for block in space.blocks(arch):
        if block.op == SKIP:
            paths.append(OpPath(SKIP))
        elif block.op == "tucker":  # no SE: the decision is inactive there
            rank = tucker_rank(block.mid_chs)
            paths.append(OpPath("tucker", block.out_chs, rank, block.kernel, False, rank))
        else:
            paths.append(OpPath(block.op, block.out_chs, block.mid_chs, block.kernel, block.se))
    grouped, start = [], 0
    for size in space.group_sizes:
        grouped.append(tuple(paths[start:start + size]))
        start += size
    return BodyPath(widths[0], tuple(grouped), widths[-1])


def _rank(choice: str) -> float:
    """The order of a choice of an ordered decision (multipliers and kernels by value, SE off < on)."""
    return float(SE_CHOICES.index(choice)) if choice in SE_CHOICES else float(choice)


def extreme_arch(space: RepGhostNetSpace, largest: bool, seed: Sequence[int]) -> tuple[str, ...]:
    """The largest (``largest``) or smallest architecture for the sandwich rule: every ordered decision
    (widths, middle widths, kernel, SE) at its top or bottom; the op, which has no order, drawn uniformly
    among the real ops by ``seed`` (so every op trains at its extremes), except that the smallest skips
    every block that can be skipped."""
    rng = np.random.default_rng(list(seed))
    arch = []
    for decision in space.decisions:
        if decision.name.endswith("_op"):
            ops = [op for op in decision.choices if op != SKIP]
            arch.append(SKIP if not largest and SKIP in decision.choices else ops[int(rng.integers(len(ops)))])
        else:
            ordered = sorted(decision.choices, key=_rank)
            arch.append(ordered[-1] if largest else ordered[0])
    return space.canonical(arch)


#: The op of the hand-designed RepGhostNets, which a super-network's training may start with alone.
REFERENCE_OP = "repghost"


def with_reference_op(space: RepGhostNetSpace, arch: Sequence[str], share: float = 1.0,
                      seed: Sequence[int] = (0,)) -> tuple[str, ...]:
    """``arch`` with its real ops replaced by :data:`REFERENCE_OP` — every one (``share`` 1), or each with
    probability ``share``, drawn by ``seed`` (skipped blocks stay skipped; widths, middle widths, kernels and
    SE kept)."""
    draws = np.random.default_rng(list(seed)).random(len(arch))
    ops = [REFERENCE_OP if name.endswith("_op") and choice != SKIP and draw < share else choice
           for name, choice, draw in zip(space.decision_names, arch, draws, strict=True)]
    return space.canonical(ops)


class SuperSSDLite:
    """SSDLite over ``space``'s super-network: ``model`` (torchvision's SSD, its body a
    :class:`~.superbody.SuperBody`) runs the architecture :meth:`set_arch` selected."""

    def __init__(self, space: RepGhostNetSpace, num_classes: int, image_size: int):
        self.space, self.num_classes, self.image_size = space, num_classes, image_size
        self.body = SuperBody(body_bounds(space))
        self.model = build_super_ssdlite(self.body, num_classes, image_size)
        self.arch: tuple[str, ...] | None = None

    def set_arch(self, arch: Sequence[str]) -> None:
        self.arch = self.space.canonical(arch)
        self.body.set_path(body_path(self.space, self.arch))

    def stand_alone(self, arch: Sequence[str]) -> SSD:
        """``arch`` as its own SSDLite (the space's model under :func:`build_ssdlite`) holding the
        super-network's weights of that path: what the super-network runs for ``arch``."""
        self.set_arch(arch)
        body = self.space.build(self.arch, features_only=True, out_indices=self.body.out_indices)
        detector = build_ssdlite(body, self.num_classes, self.image_size).to(next(self.model.parameters()).device)
        detector.load_state_dict(path_state_dict(self.model, detector), strict=True)
        return detector.train(self.model.training)
