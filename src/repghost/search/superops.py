"""The super-network's ops: one module per op type, each ONE max-size set of tensors run at any
kernel, middle width, output width and SE setting of the space by slicing (:mod:`.sliced`).

Each op mirrors a stand-alone block of :mod:`repghost.layers` module for module and name for name,
so :func:`~.sliced.sliced_state_dict` gives that block the weights of the path the op runs:

| op | stand-alone block | middle width(s) |
|---|---|---|
| ``repghost`` | :class:`~repghost.layers.RepGhostBottleneck` (``reparam="bn"``) | ``mid``: its middle width |
| ``ibn`` | :class:`~repghost.layers.mobiledet.InvertedBottleneck` | ``mid``: the expanded width |
| ``fused`` | :class:`~repghost.layers.mobiledet.FusedInvertedBottleneck` | ``mid``: the expanded width |
| ``tucker`` | :class:`~repghost.layers.mobiledet.TuckerConv` | ``mid`` / ``mid_out``: input / output rank |

A block (:class:`SuperBlock`) holds one op of each type plus the skip (identity) where the position
allows it; :class:`OpPath` says which op runs, with which kernel, widths and SE. The input width is
the width of the tensor it gets (the previous block's output).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch.nn.functional as F
from timm.layers import make_divisible
from torch import Tensor, nn

from ..layers.mobiledet import BN_EPS, BN_MOMENTUM, scale_filters
from .sliced import SlicedBatchNorm2d, SlicedConvNormAct, SlicedSE

#: The op types a block can run (besides ``skip``), in a fixed order.
OPS = ("repghost", "ibn", "fused", "tucker")
SKIP = "skip"
#: SE reduction: RepGhostNet's ratio 0.25 rounded to 4 channels, MobileDets' 0.25 by TF's rounding to 8.
SE_RATIO = 0.25


@dataclass(frozen=True)
class OpPath:
    """What a block runs: ``op`` (one of :data:`OPS` or ``"skip"``) with kernel ``k``, output width
    ``out``, middle width ``mid`` (Tucker: input rank, with ``mid_out`` its output rank) and the
    SE gate on or off."""

    op: str
    out: int = 0
    mid: int = 0
    k: int = 3
    se: bool = False
    mid_out: int = 0


class SlicedRepGhostModule(nn.Module):
    """:class:`~repghost.layers.RepGhostModule` (``reparam="bn"``): 1×1 primary conv → 3×3 depthwise
    cheap op + BN identity branch, sliced to ``out`` channels."""

    def __init__(self, max_in: int, max_out: int, relu: bool):
        super().__init__()
        self.primary_conv = SlicedConvNormAct(max_in, max_out, 1, act_layer=nn.ReLU if relu else None)
        self.cheap_operation = SlicedConvNormAct(max_out, max_out, 3, depthwise=True)
        self.fusion = SlicedBatchNorm2d(max_out)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: Tensor, out: int) -> Tensor:
        x1 = self.primary_conv(x, out)
        return self.act(self.cheap_operation(x1) + self.fusion(x1))


class SuperRepGhostBottleneck(nn.Module):
    """:class:`~repghost.layers.RepGhostBottleneck`: ghost1 → [k×k depthwise, stride 2] → [SE] →
    ghost2 → + shortcut (identity when the path's input and output widths agree at stride 1, else
    k×k depthwise → 1×1 conv). ``conv_shortcut``: whether the position can need the conv shortcut."""

    def __init__(self, max_in: int, max_mid: int, max_out: int, stride: int, max_k: int = 5,
                 conv_shortcut: bool = True):
        super().__init__()
        self.stride = stride
        self.ghost1 = SlicedRepGhostModule(max_in, max_mid, relu=True)
        self.conv_dw = SlicedConvNormAct(max_mid, max_mid, max_k, stride, depthwise=True) if stride > 1 else None
        self.se = SlicedSE(max_mid, make_divisible(max_mid * SE_RATIO, 4), nn.ReLU, F.hardsigmoid)
        self.ghost2 = SlicedRepGhostModule(max_mid, max_out, relu=False)
        self.shortcut = nn.ModuleDict(dict(dw=SlicedConvNormAct(max_in, max_in, max_k, stride, depthwise=True),
                                           pw=SlicedConvNormAct(max_in, max_out, 1))) if conv_shortcut else None

    def forward(self, x: Tensor, path: OpPath) -> Tensor:
        y = self.ghost1(x, path.mid)
        if self.conv_dw is not None:
            y = self.conv_dw(y, k=path.k)
        if path.se:
            y = self.se(y, make_divisible(path.mid * SE_RATIO, 4))
        y = self.ghost2(y, path.out)
        if x.shape[1] == path.out and self.stride == 1:
            return y + x
        if self.shortcut is None:
            raise ValueError(f"this position has no conv shortcut for {x.shape[1]} → {path.out} channels")
        return y + self.shortcut["pw"](self.shortcut["dw"](x, k=path.k), path.out)


class _SuperMobileDetOp(nn.Module):
    """What the MobileDet ops share: the conv factory (BN eps 0.01 / momentum 0.01, the block's
    activation), their SE gate and the residual of a path whose input and output widths agree at stride 1."""

    def __init__(self, stride: int, act_layer: Callable[..., nn.Module]):
        super().__init__()
        self.stride, self.act_layer = stride, act_layer

    def conv(self, max_in: int, max_out: int, k: int = 1, stride: int = 1, depthwise: bool = False,
             linear: bool = False) -> SlicedConvNormAct:
        return SlicedConvNormAct(max_in, max_out, k, stride, depthwise, None if linear else self.act_layer,
                                 BN_EPS, BN_MOMENTUM)

    def gate(self, max_mid: int) -> SlicedSE:
        return SlicedSE(max_mid, scale_filters(max_mid, SE_RATIO), self.act_layer, F.sigmoid)

    def residual(self, x: Tensor, y: Tensor) -> Tensor:
        return y + x if self.stride == 1 and x.shape[1] == y.shape[1] else y


class SuperInvertedBottleneck(_SuperMobileDetOp):
    """:class:`~repghost.layers.mobiledet.InvertedBottleneck`: 1×1 expand → k×k depthwise (stride)
    → [SE] → 1×1 linear."""

    def __init__(self, max_in: int, max_mid: int, max_out: int, stride: int, max_k: int = 5,
                 act_layer: Callable[..., nn.Module] = nn.ReLU6):
        super().__init__(stride, act_layer)
        self.conv_pw = self.conv(max_in, max_mid)
        self.conv_dw = self.conv(max_mid, max_mid, max_k, stride, depthwise=True)
        self.se = self.gate(max_mid)
        self.conv_pwl = self.conv(max_mid, max_out, linear=True)

    def forward(self, x: Tensor, path: OpPath) -> Tensor:
        y = self.conv_dw(self.conv_pw(x, path.mid), k=path.k)
        if path.se:
            y = self.se(y, scale_filters(path.mid, SE_RATIO))
        return self.residual(x, self.conv_pwl(y, path.out))


class SuperFusedInvertedBottleneck(_SuperMobileDetOp):
    """:class:`~repghost.layers.mobiledet.FusedInvertedBottleneck`: k×k regular conv to the expanded
    width (stride) → [SE] → 1×1 linear."""

    def __init__(self, max_in: int, max_mid: int, max_out: int, stride: int, max_k: int = 5,
                 act_layer: Callable[..., nn.Module] = nn.ReLU6):
        super().__init__(stride, act_layer)
        self.conv_kxk = self.conv(max_in, max_mid, max_k, stride)
        self.se = self.gate(max_mid)
        self.conv_pwl = self.conv(max_mid, max_out, linear=True)

    def forward(self, x: Tensor, path: OpPath) -> Tensor:
        y = self.conv_kxk(x, path.mid, path.k)
        if path.se:
            y = self.se(y, scale_filters(path.mid, SE_RATIO))
        return self.residual(x, self.conv_pwl(y, path.out))


class SuperTuckerConv(_SuperMobileDetOp):
    """:class:`~repghost.layers.mobiledet.TuckerConv`: 1×1 to the input rank → k×k regular conv
    (stride) to the output rank → 1×1 linear. No SE (the stand-alone layer has none)."""

    def __init__(self, max_in: int, max_mid: int, max_mid_out: int, max_out: int, stride: int, max_k: int = 5,
                 act_layer: Callable[..., nn.Module] = nn.ReLU6):
        super().__init__(stride, act_layer)
        self.conv_pw = self.conv(max_in, max_mid)
        self.conv_kxk = self.conv(max_mid, max_mid_out, max_k, stride)
        self.conv_pwl = self.conv(max_mid_out, max_out, linear=True)

    def forward(self, x: Tensor, path: OpPath) -> Tensor:
        if path.se:
            raise ValueError("a Tucker layer has no SE gate")
        y = self.conv_kxk(self.conv_pw(x, path.mid), path.mid_out, path.k)
        return self.residual(x, self.conv_pwl(y, path.out))


@dataclass(frozen=True)
class BlockBounds:
    """The max sizes of one block position: input / output width, middle width per op (Tucker: the
    (input, output) ranks), max kernel; its stride, whether a path may skip it, whether its input and
    output widths are always equal (the same stage's: a RepGhost bottleneck there never needs its
    conv shortcut), and the MobileDet ops' activation."""

    max_in: int
    max_out: int
    max_mid: Mapping[str, int | tuple[int, int]]
    stride: int = 1
    max_k: int = 5
    skippable: bool = False
    same_width: bool = False
    act: Callable[..., nn.Module] = nn.ReLU6


class SuperBlock(nn.Module):
    """One block position: an op of every type in ``bounds.max_mid`` (each its own tensors; TuNAS
    and Once-for-All share within an op type, not across types whose tensors differ in shape and
    meaning), and the skip where ``bounds.skippable``."""

    def __init__(self, bounds: BlockBounds):
        super().__init__()
        self.bounds = bounds
        ops = {}
        for op, mid in bounds.max_mid.items():
            if op == "repghost":
                ops[op] = SuperRepGhostBottleneck(bounds.max_in, mid, bounds.max_out, bounds.stride, bounds.max_k,
                                                  conv_shortcut=not (bounds.same_width and bounds.stride == 1))
            elif op == "ibn":
                ops[op] = SuperInvertedBottleneck(bounds.max_in, mid, bounds.max_out, bounds.stride, bounds.max_k,
                                                  bounds.act)
            elif op == "fused":
                ops[op] = SuperFusedInvertedBottleneck(bounds.max_in, mid, bounds.max_out, bounds.stride,
                                                       bounds.max_k, bounds.act)
            elif op == "tucker":
                ops[op] = SuperTuckerConv(bounds.max_in, *mid, bounds.max_out, bounds.stride, bounds.max_k, bounds.act)
            else:
                raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
        self.ops = nn.ModuleDict(ops)

    def forward(self, x: Tensor, path: OpPath) -> Tensor:
        if path.op == SKIP:
            if not self.bounds.skippable:
                raise ValueError("this block cannot be skipped (it changes the stride or the width)")
            return x
        return self.ops[path.op](x, path)
