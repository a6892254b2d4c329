"""Ghost and RepGhost bottlenecks, with their squeeze-and-excitation gate."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch.nn.functional as F
from timm.layers import make_divisible
from torch import nn

from .conv import conv_bn
from .ghost import GhostModule
from .repghost import RepGhostModule


class SqueezeExcite(nn.Module):
    """Global pool → 1×1 reduce (to ``make_divisible(C·ratio, 4)``) → ReLU → 1×1 expand → hard-sigmoid gate."""

    def __init__(self, chs: int, se_ratio: float = 0.25):
        super().__init__()
        reduced = make_divisible(chs * se_ratio, 4)
        self.conv_reduce = nn.Conv2d(chs, reduced, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, chs, 1, bias=True)

    def forward(self, x):
        gate = self.conv_expand(self.act(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * F.hardsigmoid(gate)


class _GhostStyleBottleneck(nn.Module):
    """``ghost1`` (ReLU) → [k×k depthwise stride-2 conv + BN] → [SE] → ``ghost2`` (linear) → + shortcut.

    ``module_fn(in_chs, out_chs, relu=...)`` builds the two ghost modules; each reports the width
    it really outputs in ``out_chs`` (the Add variant of GhostModule outputs half), and the layers
    after it take that width. ``shortcut=False`` drops only identity shortcuts (paper ablation).
    """

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel_size: int = 3,
                 stride: int = 1, se_ratio: float = 0.0, shortcut: bool = True,
                 module_fn=GhostModule, deploy: bool = False):
        super().__init__()
        self.ghost1 = module_fn(in_chs, mid_chs, relu=True, deploy=deploy)
        mid_chs = self.ghost1.out_chs
        self.conv_dw = (conv_bn(mid_chs, mid_chs, dw_kernel_size, stride, groups=mid_chs, deploy=deploy)
                        if stride > 1 else None)
        self.se = SqueezeExcite(mid_chs, se_ratio) if se_ratio else None
        self.ghost2 = module_fn(mid_chs, out_chs, relu=False, deploy=deploy)
        self.out_chs = out_chs = self.ghost2.out_chs

        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Identity() if shortcut else None
        else:
            self.shortcut = nn.Sequential(OrderedDict(
                dw=conv_bn(in_chs, in_chs, dw_kernel_size, stride, groups=in_chs, deploy=deploy),
                pw=conv_bn(in_chs, out_chs, 1, deploy=deploy),
            ))

    def forward(self, x):
        y = self.ghost1(x)
        if self.conv_dw is not None:
            y = self.conv_dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.ghost2(y)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return y


class GhostBottleneck(_GhostStyleBottleneck):
    """GhostNet's bottleneck; ``merge="add"`` gives the paper's Concat → Add variant."""

    def __init__(self, in_chs, mid_chs, out_chs, dw_kernel_size=3, stride=1, se_ratio=0.0,
                 shortcut=True, merge="concat", deploy=False):
        super().__init__(in_chs, mid_chs, out_chs, dw_kernel_size, stride, se_ratio, shortcut,
                         partial(GhostModule, merge=merge), deploy)


class RepGhostBottleneck(_GhostStyleBottleneck):
    """RepGhostNet's bottleneck; ``reparam`` picks the identity branch of both modules."""

    def __init__(self, in_chs, mid_chs, out_chs, dw_kernel_size=3, stride=1, se_ratio=0.0,
                 shortcut=True, reparam="bn", deploy=False):
        super().__init__(in_chs, mid_chs, out_chs, dw_kernel_size, stride, se_ratio, shortcut,
                         partial(RepGhostModule, reparam=reparam), deploy)
