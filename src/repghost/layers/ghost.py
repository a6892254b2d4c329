"""The Ghost module of GhostNet (paper Fig. 3(a)) and its Add variant (Fig. 3(b))."""

from __future__ import annotations

import math

import torch
from torch import nn

from .conv import ConvNormAct


class GhostModule(nn.Module):
    """Primary conv to ``ceil(C/s)`` intrinsic maps, a cheap depthwise conv making ``s − 1`` ghosts
    of each, then merge (``s`` = ``ratio``, 2 in GhostNet).

    ``merge="concat"`` (GhostNet) concatenates the two and keeps the first ``out_chs`` channels;
    ``merge="add"`` (ratio 2 only) adds them, so the module outputs only ``ceil(out_chs / 2)``
    channels — see :attr:`out_chs` for the width the next layer must take. ``kernel_size`` and
    ``stride`` belong to the primary conv (1 and 1 in GhostNet; a ResNet conv it replaces in Ghost-Res50).
    """

    def __init__(self, in_chs: int, out_chs: int, relu: bool = True, merge: str = "concat",
                 dw_size: int = 3, deploy: bool = False, ratio: int = 2, kernel_size: int = 1, stride: int = 1):
        super().__init__()
        if merge not in ("concat", "add"):
            raise ValueError(f"merge must be 'concat' or 'add', got {merge!r}")
        if not isinstance(ratio, int) or ratio < 2:
            raise ValueError(f"ratio must be an integer ≥ 2, got {ratio!r}")
        if merge == "add" and ratio != 2:
            raise ValueError(f"merge='add' needs ratio 2 (one ghost per intrinsic map), got {ratio}")
        self.merge = merge
        init_chs = math.ceil(out_chs / ratio)
        self.out_chs = out_chs if merge == "concat" else init_chs
        # Only a width that s does not divide needs the concat trimmed; a no-op slice would still cost
        # a copy when exported.
        self.trim = merge == "concat" and ratio * init_chs != out_chs
        self.primary_conv = ConvNormAct(in_chs, init_chs, kernel_size, stride=stride, act=relu, deploy=deploy)
        # groups=init_chs with (s − 1)·init_chs outputs: each intrinsic map yields its own s − 1 ghosts.
        self.cheap_operation = ConvNormAct(init_chs, (ratio - 1) * init_chs, dw_size, groups=init_chs, act=relu,
                                           deploy=deploy)

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        if self.merge == "add":
            return x1 + x2
        out = torch.cat([x1, x2], dim=1)
        return out[:, : self.out_chs] if self.trim else out
