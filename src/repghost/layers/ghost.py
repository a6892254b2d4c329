"""The Ghost module of GhostNet (paper Fig. 3(a)) and its Add variant (Fig. 3(b))."""

from __future__ import annotations

import math

import torch
from torch import nn

from .conv import ConvNormAct


class GhostModule(nn.Module):
    """Primary 1×1 conv to ``ceil(C/2)`` maps, a cheap 3×3 depthwise conv on them, then merge.

    ``merge="concat"`` (GhostNet) concatenates the two and keeps the first ``out_chs`` channels;
    ``merge="add"`` adds them, so the module outputs only ``ceil(out_chs / 2)`` channels — see
    :attr:`out_chs` for the width the next layer must take.
    """

    def __init__(self, in_chs: int, out_chs: int, relu: bool = True, merge: str = "concat",
                 dw_size: int = 3, deploy: bool = False):
        super().__init__()
        if merge not in ("concat", "add"):
            raise ValueError(f"merge must be 'concat' or 'add', got {merge!r}")
        self.merge = merge
        init_chs = math.ceil(out_chs / 2)
        self.out_chs = out_chs if merge == "concat" else init_chs
        # Only an odd width needs the concat trimmed; a no-op slice would still cost a copy when exported.
        self.trim = merge == "concat" and 2 * init_chs != out_chs
        self.primary_conv = ConvNormAct(in_chs, init_chs, 1, act=relu, deploy=deploy)
        self.cheap_operation = ConvNormAct(init_chs, init_chs, dw_size, groups=init_chs, act=relu,
                                           deploy=deploy)

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        if self.merge == "add":
            return x1 + x2
        out = torch.cat([x1, x2], dim=1)
        return out[:, : self.out_chs] if self.trim else out
