"""RepGhostNet 0.5×–2.0× (Chen et al., 2022), and its ablation switches."""

from __future__ import annotations

from functools import partial

from ..layers import REPARAM_BRANCHES, RepGhostBottleneck
from .family import build_family_net
from .registry import register_model

# (kernel, mid_chs, out_chs, se_ratio, stride), one list per group of blocks (paper Table 1).
REPGHOSTNET_TABLE = [
    [(3, 8, 16, 0.0, 1)],
    [(3, 24, 24, 0.0, 2)],
    [(3, 36, 24, 0.0, 1)],
    [(5, 36, 40, 0.25, 2)],
    [(5, 60, 40, 0.25, 1)],
    [(3, 120, 80, 0.0, 2)],
    [(3, 100, 80, 0.0, 1), (3, 120, 80, 0.0, 1), (3, 120, 80, 0.0, 1),
     (3, 240, 112, 0.25, 1), (3, 336, 112, 0.25, 1)],
    [(5, 336, 160, 0.25, 2)],
    [(5, 480, 160, 0.0, 1), (5, 480, 160, 0.25, 1), (5, 480, 160, 0.0, 1), (5, 480, 160, 0.25, 1)],
]

#: Registered name → width multiplier.
WIDTHS = {
    "repghostnet_050": 0.5, "repghostnet_058": 0.58, "repghostnet_080": 0.8, "repghostnet_100": 1.0,
    "repghostnet_111": 1.11, "repghostnet_130": 1.3, "repghostnet_150": 1.5, "repghostnet_200": 2.0,
}


def repghostnet(width: float = 1.0, reparam: str = "bn", shortcut: bool = True, **kwargs):
    """RepGhostNet at ``width``. ``reparam`` picks the identity branch of every RepGhost module
    (one of ``REPARAM_BRANCHES``); ``shortcut=False`` drops the identity shortcuts."""
    if reparam not in REPARAM_BRANCHES:
        raise ValueError(f"reparam must be one of {REPARAM_BRANCHES}, got {reparam!r}")
    block_fn = partial(RepGhostBottleneck, reparam=reparam, shortcut=shortcut)
    # The last 1×1 conv is twice the last middle width: RepGhost's middle widths are half GhostNet's.
    return build_family_net(REPGHOSTNET_TABLE, block_fn, width, final_mult=2.0, **kwargs)


def _register(name: str, width: float):
    def builder(**kwargs):
        return repghostnet(width, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"RepGhostNet {width}×."
    register_model(builder)


for _name, _width in WIDTHS.items():
    _register(_name, _width)
