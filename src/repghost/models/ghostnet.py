"""GhostNet 0.5× / 1.0× / 1.3× (Han et al., 2020), the paper's baseline, and its Add variant."""

from __future__ import annotations

from functools import partial

from ..layers import GhostBottleneck
from .family import build_family_net
from .registry import register_model

# (kernel, mid_chs, out_chs, se_ratio, stride), grouped as RepGhostNet's table.
GHOSTNET_TABLE = [
    [(3, 16, 16, 0.0, 1)],
    [(3, 48, 24, 0.0, 2)],
    [(3, 72, 24, 0.0, 1)],
    [(5, 72, 40, 0.25, 2)],
    [(5, 120, 40, 0.25, 1)],
    [(3, 240, 80, 0.0, 2)],
    [(3, 200, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 184, 80, 0.0, 1),
     (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)],
    [(5, 672, 160, 0.25, 2)],
    [(5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1)],
]

WIDTHS = {"050": 0.5, "100": 1.0, "130": 1.3}


def ghostnet(width: float = 1.0, merge: str = "concat", shortcut: bool = True, **kwargs):
    """GhostNet at ``width``. ``merge="add"`` replaces every Concat of the Ghost modules by an Add of
    the same two tensors; the layers after each module then take its narrower output width."""
    block_fn = partial(GhostBottleneck, merge=merge, shortcut=shortcut)
    return build_family_net(GHOSTNET_TABLE, block_fn, width, final_mult=1.0, **kwargs)


def _register(name: str, width: float, merge: str):
    def builder(**kwargs):
        return ghostnet(width, merge=merge, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"GhostNet {width}× ({merge.capitalize()})."
    register_model(builder)


for _suffix, _width in WIDTHS.items():
    _register(f"ghostnet_{_suffix}", _width, "concat")
    _register(f"ghostnet_add_{_suffix}", _width, "add")
