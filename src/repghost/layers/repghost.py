"""The RepGhost module: Ghost-style feature reuse by re-parameterization instead of Concat."""

from __future__ import annotations

from torch import nn

from .conv import ConvNormAct, conv_bn
from .fuse import bn_to_kernel_bias, conv_with, pad_kernel

#: Identity-branch choices of the paper's re-parameterization ablation (0.5×).
REPARAM_BRANCHES = ("bn", "identity", "dw1x1", "none")


def _identity_branch(kind: str, chs: int) -> nn.Module | None:
    if kind == "bn":
        return nn.BatchNorm2d(chs)
    if kind == "identity":
        return nn.Identity()
    if kind == "dw1x1":
        return conv_bn(chs, chs, 1, groups=chs)
    if kind == "none":
        return None
    raise ValueError(f"reparam must be one of {REPARAM_BRANCHES}, got {kind!r}")


class RepGhostModule(nn.Module):
    """``x1 = primary(x)``; ``out = act(cheap(x1) + fusion(x1))`` with C output channels.

    Train form: ``cheap`` is a 3×3 depthwise conv + BN and ``fusion`` the identity branch chosen
    by ``reparam`` (a BN by default). Deploy form: both branches folded into ``cheap``, one
    depthwise conv with bias; the primary conv has its BN folded too. ``kernel_size`` and
    ``stride`` belong to the primary conv (1×1, stride 1 in RepGhostNet; RepGhost-Res50 puts a
    ResNet conv's k×k kernel and stride there).
    """

    def __init__(self, in_chs: int, out_chs: int, relu: bool = True, reparam: str = "bn",
                 dw_size: int = 3, deploy: bool = False, kernel_size: int = 1, stride: int = 1):
        super().__init__()
        self.out_chs = out_chs
        self.primary_conv = ConvNormAct(in_chs, out_chs, kernel_size, stride=stride, act=relu, deploy=deploy)
        self.cheap_operation = conv_bn(out_chs, out_chs, dw_size, groups=out_chs, deploy=deploy)
        self.fusion = None if deploy else _identity_branch(reparam, out_chs)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x):
        x1 = self.primary_conv(x)
        y = self.cheap_operation(x1)
        if self.fusion is not None:
            y = y + self.fusion(x1)
        return self.act(y)

    def _fusion_kernel_bias(self, like):
        kernel_size = self.cheap_operation.conv.kernel_size[0]
        if isinstance(self.fusion, ConvNormAct):
            kernel, bias = self.fusion.kernel_bias()
            return pad_kernel(kernel, kernel_size), bias
        return bn_to_kernel_bias(self.fusion, self.out_chs, kernel_size, self.out_chs, like)

    def reparameterize(self) -> None:
        """Fold the identity branch and every BN into the cheap depthwise conv (in place)."""
        self.primary_conv.reparameterize()
        kernel, bias = self.cheap_operation.kernel_bias()
        if self.fusion is not None:
            fusion_kernel, fusion_bias = self._fusion_kernel_bias(kernel)
            kernel, bias = kernel + fusion_kernel, bias + fusion_bias
        self.cheap_operation.conv = conv_with(self.cheap_operation.conv, kernel, bias)
        self.cheap_operation.bn = nn.Identity()
        self.fusion = None
