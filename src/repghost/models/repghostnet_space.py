"""A search space on RepGhostNet's skeleton (``repghostnet_skeleton/v1``) that holds ``repghostnet_050``,
``repghostnet_080`` and ``repghostnet_100`` exactly.

The skeleton is RepGhostNet's (:data:`repghost.models.repghostnet.REPGHOSTNET_TABLE`): the 3×3 stride-2
stem, 16 blocks in the table's nine groups with its strides, the last 1×1 conv, and the same head. The
blocks form seven *stages* by output width — the stem with block 0 (16 channels), 24, 40, 80, 112, 160,
and the last 1×1 conv (960 = twice the last middle width) — and the decisions are:

- **per stage, an output-width multiplier** ``m`` of :data:`MULTIPLIERS`: the stage's width is
  ``make_divisible(c·m, 4)``, RepGhostNet's rounding, so ``m`` = 0.5, 0.8, 1.0 give its 0.5×, 0.8×,
  1.0× widths exactly (the stem's included: it shares block 0's stage, as in RepGhostNet where both are
  16·w);
- **per block** (the ``b<i>_`` decisions):
  - ``op``: ``repghost`` (RepGhost bottleneck, :class:`~repghost.layers.RepGhostBottleneck`), ``ibn``
    (inverted bottleneck), ``fused`` (Fused IBN), ``tucker`` (Tucker convolution) — MobileDets' layers
    from :mod:`repghost.layers.mobiledet`, with RepGhostNet's ReLU — or ``skip`` (the zero op: the block
    is the identity) on the blocks that can be the identity: stride 1 and input width = output width,
    i.e. every block after the first of its stage, and block 0, whose stage holds the stem;
    ``fused`` only where the block works at stride ≤ 8 (:data:`FUSED_MAX_STRIDE`): its K×K *regular*
    conv from the input to the middle width costs ``in·mid·K²`` per pixel, which is affordable only on the
    few channels of the high-resolution stages (MobileDets' searched CPU, DSP and EdgeTPU models put it
    there); at stride 16/32 (80–160 in, 100–600 middle channels) it costs 10–60× the IBN for the same
    widths and would only widen the space with architectures no search on a CPU budget keeps;
  - ``k``: the kernel, 3 or 5 — of the depthwise conv in IBN, of the regular conv in Fused and
    Tucker, and in a RepGhost bottleneck, as in RepGhostNet, of its stride-2 depthwise conv and its
    projection shortcut (the RepGhost module's cheap conv is 3×3 always), so there ``k`` only matters
    where the block has one of those;
  - ``mid``: the middle width's multiplier ``e`` of :data:`MULTIPLIERS`, relative to the table's middle
    width ``t``: ``make_divisible(t·e, 4)`` (RepGhostNet w× uses ``e = w``): the RepGhost bottleneck's
    and the IBN's / Fused IBN's expanded width; a Tucker layer's two ranks are a quarter of it
    (:data:`TUCKER_RANK`, so its cost scales with ``mid`` like the others');
  - ``se``: squeeze-and-excitation on or off (RepGhostNet's hard-sigmoid SE, ratio 0.25, in the RepGhost
    bottleneck; MobileDets' in IBN / Fused; Tucker has none).

Decisions a block's op does not use are *inactive* (:meth:`RepGhostNetSpace.active`): a skipped block's
kernel, middle width and SE, a Tucker block's SE, a stride-1 RepGhost bottleneck's kernel where it has
an identity shortcut. An architecture names them at fixed values (the table's kernel and SE, ``mid``
1.0; :meth:`~RepGhostNetSpace.canonical`), so one model has one name.

The model is a :class:`~repghost.models.family.GhostFamilyNet` with the same module tree as the registered
RepGhostNets, so their state dicts load strictly into the architectures that express them
(:meth:`~RepGhostNetSpace.named_archs`). An architecture's inline name is
``repghostnet_search:<fingerprint>:<choice>,<choice>,...`` (one choice per decision, in order); its file
holds ``"choices": {decision: choice}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property, partial

from timm.layers import make_divisible
from torch import nn

from ..layers import FusedInvertedBottleneck, InvertedBottleneck, RepGhostBottleneck, TuckerConv
from ..names import REPGHOSTNET_SEARCH_PREFIX
from .family import build_family_net
from .repghostnet import REPGHOSTNET_TABLE, WIDTHS
from .space import ArchSpace, Decision, register_space

SPACE_ID = "repghostnet_skeleton/v1"
#: Width and middle-width multipliers (0.5, 0.8, 1.0: RepGhostNet's; 0.35 and 0.65 reach below and
#: between them, 1.25 above).
MULTIPLIERS = ("0.35", "0.5", "0.65", "0.8", "1.0", "1.25")
OPS = ("repghost", "ibn", "fused", "tucker", "skip")
KERNELS = ("3", "5")
SE_CHOICES = ("off", "on")
#: Fused IBN only in blocks whose output is at stride ≤ this (see the module docstring).
FUSED_MAX_STRIDE = 8
#: A Tucker layer's input and output ranks, as a share of the block's middle width.
TUCKER_RANK = 0.25
#: RepGhostNet's SE ratio.
SE_RATIO = 0.25
#: The base width of each stage: the table's output widths, then the last 1×1 conv (2 × the last middle width).
LAST_CONV_CHS = 2 * REPGHOSTNET_TABLE[-1][-1][1]


@dataclass(frozen=True)
class BlockSlot:
    """A block of the skeleton: its table row, its stage, the stage it reads from, and what it may be."""

    index: int
    kernel: int  # the table's
    mid: int  # the table's t (before any multiplier)
    se: bool  # the table's
    stride: int
    stage: int  # the stage whose width is its output
    in_stage: int  # the stage whose width is its input
    out_stride: int  # its output's stride in the network
    ops: tuple[str, ...]

    @property
    def skippable(self) -> bool:
        return "skip" in self.ops


def _skeleton() -> tuple[list[int], list[BlockSlot]]:
    """The stages' base widths and the block slots, read from RepGhostNet's table."""
    stage_chs, slots = [REPGHOSTNET_TABLE[0][0][2]], []  # the stem shares block 0's width (16·w in RepGhostNet)
    net_stride, prev_stage = 2, 0
    rows = [row for group in REPGHOSTNET_TABLE for row in group]
    for i, (k, mid, out, se_ratio, stride) in enumerate(rows):
        if out != stage_chs[-1]:
            stage_chs.append(out)
        stage = len(stage_chs) - 1
        net_stride *= stride
        identity = stride == 1 and stage == prev_stage
        fused = net_stride <= FUSED_MAX_STRIDE
        ops = tuple(op for op in OPS if (op != "skip" or identity) and (op != "fused" or fused))
        slots.append(BlockSlot(i, k, mid, bool(se_ratio), stride, stage, prev_stage, net_stride, ops))
        prev_stage = stage
    return [*stage_chs, LAST_CONV_CHS], slots


class SkipBlock(nn.Identity):
    """The zero op: the block is the identity (its input width is its output width)."""

    def __init__(self, chs: int):
        super().__init__()
        self.out_chs = chs


def make_block(op: str, in_chs: int, mid_chs: int, out_chs: int, kernel: int, stride: int, se: bool,
               deploy: bool = False) -> nn.Module:
    """One block of the space (train form, or deploy with ``deploy``). IBN, Fused and Tucker are residual
    where the shapes allow (stride 1, in = out), as the RepGhost bottleneck's identity shortcut is."""
    residual = stride == 1 and in_chs == out_chs
    mobiledet = dict(kernel_size=kernel, stride=stride, residual=residual, act_layer=nn.ReLU, deploy=deploy)
    if op == "repghost":
        return RepGhostBottleneck(in_chs, mid_chs, out_chs, kernel, stride, SE_RATIO if se else 0.0, deploy=deploy)
    if op == "ibn":
        return InvertedBottleneck(in_chs, out_chs, se=se, mid_chs=mid_chs, **mobiledet)
    if op == "fused":
        return FusedInvertedBottleneck(in_chs, out_chs, se=se, mid_chs=mid_chs, **mobiledet)
    if op == "tucker":
        rank = make_divisible(mid_chs * TUCKER_RANK, 4)
        return TuckerConv(in_chs, out_chs, ranks=(rank, rank), **mobiledet)
    if op == "skip":
        if not residual:
            raise ValueError(f"skip needs stride 1 and in == out channels, got {in_chs}→{out_chs} stride {stride}")
        return SkipBlock(out_chs)
    raise ValueError(f"unknown op {op!r}; choose one of {', '.join(OPS)}")


@dataclass(frozen=True)
class BlockArch:
    """One block of an architecture, resolved to widths."""

    op: str
    in_chs: int
    mid_chs: int
    out_chs: int
    kernel: int
    stride: int
    se: bool


@register_space
class RepGhostNetSpace(ArchSpace):
    """RepGhostNet's skeleton with per-stage widths and per-block op, kernel, middle width, SE and skip."""

    id = SPACE_ID
    name_prefix = REPGHOSTNET_SEARCH_PREFIX
    payload_key = "choices"

    def __init__(self):
        self.stage_chs, self.slots = _skeleton()
        self.group_sizes = [len(group) for group in REPGHOSTNET_TABLE]

    @cached_property
    def decisions(self) -> list[Decision]:
        """``s<j>_width`` for the seven stages, then ``b<i>_op``, ``_k``, ``_mid``, ``_se`` for each block."""
        widths = [Decision(f"s{j}_width", MULTIPLIERS) for j in range(len(self.stage_chs))]
        blocks = [d for slot in self.slots for d in (
            Decision(f"b{slot.index}_op", slot.ops), Decision(f"b{slot.index}_k", KERNELS),
            Decision(f"b{slot.index}_mid", MULTIPLIERS), Decision(f"b{slot.index}_se", SE_CHOICES))]
        return widths + blocks

    def describe(self) -> dict:
        return dict(id=SPACE_ID, stage_chs=self.stage_chs, slots=[asdict(s) for s in self.slots],
                    decisions=[asdict(d) for d in self.decisions], tucker_rank=TUCKER_RANK, se_ratio=SE_RATIO,
                    rounding="make_divisible(c*m, 4)", act="relu", groups=self.group_sizes)

    @cached_property
    def fingerprint(self) -> str:
        return super().fingerprint

    @property
    def num_stages(self) -> int:
        return len(self.stage_chs)

    # -- reading an architecture --------------------------------------------------------------
    def _block_choices(self, arch: tuple[str, ...], i: int) -> tuple[str, str, str, str]:
        start = self.num_stages + 4 * i
        op, k, mid, se = arch[start:start + 4]
        return op, k, mid, se

    def widths(self, arch: Sequence[str]) -> list[int]:
        """Each stage's channels (stem and block 0, …, the last 1×1 conv)."""
        arch = self.validate(arch)
        return [make_divisible(c * float(m), 4) for c, m in zip(self.stage_chs, arch[: self.num_stages], strict=True)]

    def blocks(self, arch: Sequence[str]) -> list[BlockArch]:
        """Every block of ``arch`` with its widths."""
        arch = self.validate(arch)
        widths = self.widths(arch)
        out = []
        for slot in self.slots:
            op, k, mid, se = self._block_choices(arch, slot.index)
            out.append(BlockArch(op, widths[slot.in_stage], make_divisible(slot.mid * float(mid), 4),
                                 widths[slot.stage], int(k), slot.stride, se == "on"))
        return out

    def active(self, arch: Sequence[str]) -> tuple[bool, ...]:
        arch = self.validate(arch)
        flags = [True] * self.num_decisions
        for slot in self.slots:
            op = self._block_choices(arch, slot.index)[0]
            start = self.num_stages + 4 * slot.index
            k_used = op in ("ibn", "fused", "tucker") or (op == "repghost" and not slot.skippable)
            flags[start + 1] = k_used
            flags[start + 2] = op != "skip"
            flags[start + 3] = op in ("repghost", "ibn", "fused")
        return tuple(flags)

    def canonical(self, arch: Sequence[str]) -> tuple[str, ...]:
        arch = list(self.validate(arch))
        for i, used in enumerate(self.active(arch)):
            if not used:
                arch[i] = self._fixed_value(i)
        return tuple(arch)

    def _fixed_value(self, index: int) -> str:
        """The value an inactive decision is named with: the table's kernel and SE, middle width 1.0."""
        slot = self.slots[(index - self.num_stages) // 4]
        return {1: str(slot.kernel), 2: "1.0", 3: "on" if slot.se else "off"}[(index - self.num_stages) % 4]

    # -- models -------------------------------------------------------------------------------
    def builder(self, arch: Sequence[str]) -> Callable[..., nn.Module]:
        arch = self.canonical(arch)
        blocks = self.blocks(arch)
        widths = self.widths(arch)
        rows, fns, start = [], [], 0
        for size in self.group_sizes:
            group = blocks[start:start + size]
            rows.append([(b.kernel, b.mid_chs, b.out_chs, SE_RATIO if b.se else 0.0, b.stride) for b in group])
            fns += [partial(_block_fn, b.op, b.se) for b in group]
            start += size

        def builder(**kwargs):
            # width 1.0: the table holds the final widths (multiples of 4, which make_divisible keeps)
            return build_family_net(rows, fns, 1.0, 1.0, stem_chs=widths[0], num_features=widths[-1], **kwargs)

        return builder

    def named_archs(self) -> dict[str, tuple[str, ...]]:
        """``repghostnet_050``, ``_080``, ``_100``: every RepGhostNet whose width is a multiplier of the space."""
        return {name: self.repghostnet(width) for name, width in WIDTHS.items() if _label(width) in MULTIPLIERS}

    def repghostnet(self, width: float) -> tuple[str, ...]:
        """RepGhostNet ``width``× as an architecture: every width and middle width ×``width``, every block a
        RepGhost bottleneck with the table's kernel and SE."""
        m = _label(width)
        choices = [m] * self.num_stages
        for slot in self.slots:
            choices += ["repghost", str(slot.kernel), m, "on" if slot.se else "off"]
        return self.canonical(choices)


def _label(multiplier: float) -> str:
    return f"{multiplier:.2f}".rstrip("0").rstrip(".") if multiplier != int(multiplier) else f"{multiplier:.1f}"


def _block_fn(op: str, se: bool, in_chs: int, mid_chs: int, out_chs: int, kernel: int, stride: int,
              se_ratio: float, deploy: bool = False) -> nn.Module:
    """:func:`make_block` with :class:`~repghost.models.family.GhostFamilyNet`'s ``block_fn`` signature."""
    return make_block(op, in_chs, mid_chs, out_chs, kernel, stride, se, deploy=deploy)
