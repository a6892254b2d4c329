"""Building blocks. Each re-parameterizable block owns its ``reparameterize()``; the folding math
lives in :mod:`repghost.layers.fuse`."""

from .bottleneck import GhostBottleneck, RepGhostBottleneck, SqueezeExcite
from .conv import ConvNormAct, conv_bn
from .ghost import GhostModule
from .mobiledet import (
    FusedInvertedBottleneck,
    InvertedBottleneck,
    LayerCfg,
    MobileDetSE,
    TuckerConv,
    make_layer,
    scale_filters,
)
from .repghost import REPARAM_BRANCHES, RepGhostModule

__all__ = [
    "REPARAM_BRANCHES", "ConvNormAct", "FusedInvertedBottleneck", "GhostBottleneck", "GhostModule",
    "InvertedBottleneck", "LayerCfg", "MobileDetSE", "RepGhostBottleneck", "RepGhostModule", "SqueezeExcite",
    "TuckerConv", "conv_bn", "make_layer", "scale_filters",
]
