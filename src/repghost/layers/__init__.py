"""Building blocks. Each re-parameterizable block owns its ``reparameterize()``; the folding math
lives in :mod:`repghost.layers.fuse`."""

from .bottleneck import GhostBottleneck, RepGhostBottleneck, SqueezeExcite
from .conv import ConvNormAct, conv_bn
from .ghost import GhostModule
from .repghost import REPARAM_BRANCHES, RepGhostModule

__all__ = [
    "REPARAM_BRANCHES", "ConvNormAct", "GhostBottleneck", "GhostModule", "RepGhostBottleneck",
    "RepGhostModule", "SqueezeExcite", "conv_bn",
]
