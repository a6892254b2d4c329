"""MobileDets' searched layers (Xiong et al., 2021): inverted bottleneck (IBN, with and without
expansion), Fused IBN, Tucker convolution, and their squeeze-and-excitation gate.

Every conv is conv (no bias) → BN → activation; the last 1×1 projection of each block is linear
(BN, no activation). The residual is an explicit flag per layer, as in TF's feature extractor,
never inferred from shapes. Each block folds its BNs in ``reparameterize()`` (the SE gate has none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from .bottleneck import RepGhostBottleneck
from .conv import ConvNormAct

#: MobileDet backbone BatchNorm: TF's epsilon 0.01 and decay 0.99 (PyTorch momentum 0.01).
BN_EPS = 0.01
BN_MOMENTUM = 0.01
ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {"relu6": nn.ReLU6, "hard_swish": nn.Hardswish}
#: Layer types of the MobileDet search space, plus our RepGhost bottleneck.
LAYER_OPS = ("ibn", "fused", "tucker", "repghost")


def scale_filters(filters: float, multiplier: float, base: int = 8) -> int:
    """TF's channel rounding: ``max(base, round_half_up(filters · multiplier / base) · base)``."""
    return max(base, int(filters * multiplier / base + 0.5) * base)


def mobiledet_conv(in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                   act_layer: Callable[..., nn.Module] | None = nn.ReLU6, deploy: bool = False) -> ConvNormAct:
    """Conv → BN (eps 0.01, momentum 0.01) → ``act_layer`` (``None``: linear)."""
    return ConvNormAct(in_chs, out_chs, kernel_size, stride, groups, act=act_layer is not None, deploy=deploy,
                       act_layer=act_layer or nn.ReLU, bn_eps=BN_EPS, bn_momentum=BN_MOMENTUM)


class MobileDetSE(nn.Module):
    """Global average pool → 1×1 conv (bias) to ``hidden`` → block activation → 1×1 conv (bias) →
    sigmoid → multiply. No BN, so nothing to fold."""

    def __init__(self, chs: int, hidden: int, act_layer: Callable[..., nn.Module] = nn.ReLU6):
        super().__init__()
        self.conv_reduce = nn.Conv2d(chs, hidden, 1, bias=True)
        self.act = act_layer(inplace=True)
        self.conv_expand = nn.Conv2d(hidden, chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv_expand(self.act(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class _MobileDetBlock(nn.Module):
    """Runs its children in registration order, then adds the input when ``residual``."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, residual: bool):
        super().__init__()
        if residual and (in_chs != out_chs or stride != 1):
            raise ValueError(f"a residual layer needs stride 1 and in == out channels, got {in_chs}→{out_chs} "
                             f"stride {stride}")
        self.out_chs = out_chs
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.children():
            y = layer(y)
        return y + x if self.residual else y

    def reparameterize(self) -> None:
        """Fold the BN of every conv into it (in place)."""
        for layer in self.children():
            if isinstance(layer, ConvNormAct):
                layer.reparameterize()


class InvertedBottleneck(_MobileDetBlock):
    """1×1 expand to ``in·e`` → K×K depthwise (carries the stride) → [SE] → 1×1 linear projection.

    ``expansion=1`` is the IBN without expansion: the depthwise conv works on the input directly.
    ``mid_chs`` sets the expanded width directly instead (a width not a multiple of the input's).
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, expansion: int = 8,
                 se: bool = False, residual: bool = True, act_layer: Callable[..., nn.Module] = nn.ReLU6,
                 deploy: bool = False, mid_chs: int | None = None):
        super().__init__(in_chs, out_chs, stride, residual)
        mid = mid_chs or in_chs * expansion
        conv = partial(mobiledet_conv, act_layer=act_layer, deploy=deploy)
        if mid_chs is not None or expansion > 1:
            self.conv_pw = conv(in_chs, mid, 1)
        self.conv_dw = conv(mid, mid, kernel_size, stride, groups=mid)
        if se:
            self.se = MobileDetSE(mid, scale_filters(mid, 0.25), act_layer)
        self.conv_pwl = conv(mid, out_chs, 1, act_layer=None)


class FusedInvertedBottleneck(_MobileDetBlock):
    """K×K regular conv from ``in`` to ``in·e`` (or ``mid_chs``; carries the stride) → [SE] → 1×1 linear
    projection."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, expansion: int = 8,
                 se: bool = False, residual: bool = True, act_layer: Callable[..., nn.Module] = nn.ReLU6,
                 deploy: bool = False, mid_chs: int | None = None):
        super().__init__(in_chs, out_chs, stride, residual)
        mid = mid_chs or in_chs * expansion
        conv = partial(mobiledet_conv, act_layer=act_layer, deploy=deploy)
        self.conv_kxk = conv(in_chs, mid, kernel_size, stride)
        if se:
            self.se = MobileDetSE(mid, scale_filters(mid, 0.25), act_layer)
        self.conv_pwl = conv(mid, out_chs, 1, act_layer=None)


class TuckerConv(_MobileDetBlock):
    """1×1 to ``sf(in, r_in)`` → K×K regular conv (carries the stride) to ``sf(out, r_out)`` → 1×1
    linear to ``out``. ``ranks`` sets the two compressed widths directly instead."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1,
                 input_rank_ratio: float = 0.25, output_rank_ratio: float = 0.25, residual: bool = True,
                 act_layer: Callable[..., nn.Module] = nn.ReLU6, deploy: bool = False,
                 ranks: tuple[int, int] | None = None):
        super().__init__(in_chs, out_chs, stride, residual)
        in_rank, out_rank = ranks or (scale_filters(in_chs, input_rank_ratio),
                                      scale_filters(out_chs, output_rank_ratio))
        conv = partial(mobiledet_conv, act_layer=act_layer, deploy=deploy)
        self.conv_pw = conv(in_chs, in_rank, 1)
        self.conv_kxk = conv(in_rank, out_rank, kernel_size, stride)
        self.conv_pwl = conv(out_rank, out_chs, 1, act_layer=None)


@dataclass(frozen=True)
class LayerCfg:
    """One row of a MobileDet table. ``op``: one of :data:`LAYER_OPS`; ``e`` is the expansion of
    IBN / Fused / RepGhost (1 = IBN without expansion); ``r_in`` / ``r_out`` the Tucker ratios."""

    op: str
    out: int
    k: int = 3
    e: int = 8
    stride: int = 1
    residual: bool = True
    r_in: float = 0.25
    r_out: float = 0.25


def make_layer(cfg: LayerCfg, in_chs: int, act_layer: Callable[..., nn.Module] = nn.ReLU6, se: bool = False,
               deploy: bool = False) -> nn.Module:
    """The block ``cfg`` describes, taking ``in_chs`` channels. ``se`` gates IBNs (as MobileDet-CPU
    does on every IBN). ``repghost`` is our RepGhost bottleneck with middle width ``in·e``; it keeps
    its own ReLU and BN settings and its conv shortcut where shapes change (see
    :class:`repghost.layers.RepGhostBottleneck`)."""
    common = dict(kernel_size=cfg.k, stride=cfg.stride, residual=cfg.residual, act_layer=act_layer, deploy=deploy)
    if cfg.op == "ibn":
        return InvertedBottleneck(in_chs, cfg.out, expansion=cfg.e, se=se, **common)
    if cfg.op == "fused":
        return FusedInvertedBottleneck(in_chs, cfg.out, expansion=cfg.e, **common)
    if cfg.op == "tucker":
        return TuckerConv(in_chs, cfg.out, input_rank_ratio=cfg.r_in, output_rank_ratio=cfg.r_out, **common)
    if cfg.op == "repghost":
        return RepGhostBottleneck(in_chs, in_chs * cfg.e, cfg.out, cfg.k, cfg.stride, shortcut=cfg.residual,
                                  deploy=deploy)
    raise ValueError(f"unknown MobileDet layer op {cfg.op!r}; choose one of {', '.join(LAYER_OPS)}")
