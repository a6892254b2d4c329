"""The linear latency model's features, per search space.

**MobileDet-CPU skeleton** (``mobiledet_cpu_skeleton/v1``): TuNAS's features (Bender et al., 2020, as
MobileDets use them): for every searchable layer, the Kronecker product one-hot(input channels) ⊗
one-hot(output channels) ⊗ one-hot(layer type), concatenated over layers. The channels of a position
are fixed by the skeleton, so each layer contributes one feature per layer type, named
``L<i>:<in>x<out>:<type>``: 1 + 18 × 19 = 343 free parameters.

**RepGhostNet skeleton** (``repghostnet_skeleton/v1``): there TuNAS's Kronecker one-hots do not fit the
data a machine can time. A block's cost depends on its op, kernel, SE, middle width and its input and
output widths together; one-hot(in) ⊗ one-hot(out) ⊗ one-hot(op, kernel, middle width, SE) over the 16
blocks is 16 × 6 × 6 × (~4 × 2 × 6 × 2) ≈ 55 000 features (additive per-decision one-hots instead
miss exactly those products: a 1×1 conv costs in × mid). So the one-hots are weighted by the work they
select: each feature is one kind of operation at one stride — ``s<stride>:<kind>:<measure>`` with kind
``pw`` (1×1 conv), ``dw3`` / ``dw5`` (depthwise), ``conv3`` / ``conv5`` (regular k×k), ``se``
(squeeze-and-excitation gate), ``add`` (residual add) — summing over the deploy-form network the
multiply-accumulates (``macs``, millions, at 320²), the count (``n``) and the input elements read (``in``,
thousands: the memory side of a conv, which decides a depthwise conv's time) of those operations, and
the elements the SE gates and the adds touch (``elems``, thousands). A choice's one-hot thus enters
through the operations it brings, scaled by their widths, so the model has 91 parameters however the
widths combine, and every decision (widths, op, kernel, middle width, SE, skip) moves it. (The ``in``
features were added after 5-fold cross-validation on a timing pass's training split: r² 0.930 → 0.962.)
The work is read off the model the architecture builds (each block built once on the ``meta`` device and cached, so
predicting costs no weights and no arithmetic).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..layers import MobileDetSE, SqueezeExcite
from ..layers.conv import ConvNormAct
from ..models.repghostnet_space import BlockArch, RepGhostNetSpace, make_block
from ..models.searched import SearchSpace
from ..models.space import ArchSpace

#: The strides the work features are kept at, the operation kinds, and the input size they are counted at.
STRIDES = (2, 4, 8, 16, 32)
CONV_KINDS = ("pw", "dw3", "dw5", "conv3", "conv5")
WORK_IMG_SIZE = 320


def feature_names(space: ArchSpace) -> list[str]:
    """Every feature of the space, in order."""
    if isinstance(space, SearchSpace):
        return [f"L{i}:{p.in_chs}x{p.out}:{choice}" for i, p in enumerate(space.positions)
                for choice in space.choice_names]
    if isinstance(space, RepGhostNetSpace):
        return _work_names()
    raise TypeError(f"no cost-model features for search space {space.id!r}")


def fit_method(space: ArchSpace) -> str:
    """How :func:`repghost.costmodel.fit.fit` solves for the weights: ``nnls`` (non-negative least squares)
    on the RepGhostNet skeleton's work features — an operation's time per MAC, per call or per element read
    is never negative, and the constraint keeps correlated features (a block's MACs and its input elements
    grow together) from trading large weights of opposite sign; ``ols`` on the MobileDet-CPU skeleton's
    one-hots, whose weights are costs relative to the bias and may be negative."""
    return "nnls" if isinstance(space, RepGhostNetSpace) else "ols"


def features(space: ArchSpace, archs: Sequence[Sequence[str]]) -> np.ndarray:
    """The ``(len(archs), len(feature_names(space)))`` feature matrix."""
    if isinstance(space, SearchSpace):
        index = {name: i for i, name in enumerate(space.choice_names)}
        x = np.zeros((len(archs), space.num_layers * len(index)))
        for row, arch in enumerate(archs):
            for layer, choice in enumerate(space.validate(arch)):
                x[row, layer * len(index) + index[choice]] = 1.0
        return x
    if isinstance(space, RepGhostNetSpace):
        names = _work_names()
        column = {name: i for i, name in enumerate(names)}
        x = np.zeros((len(archs), len(names)))
        for row, arch in enumerate(archs):
            for name, value in work(space, arch).items():
                x[row, column[name]] = value
        return x
    raise TypeError(f"no cost-model features for search space {space.id!r}")


def free_parameters(space: ArchSpace) -> int:
    """The linear model's independent parameters over the whole space: the bias and one weight per feature,
    less what the features' structure fixes (a layer's one-hots sum to 1, which is the bias's column)."""
    if isinstance(space, SearchSpace):
        return 1 + space.num_layers * (len(space.choice_names) - 1)
    return 1 + len(feature_names(space))


def parameters_text(space: ArchSpace) -> str:
    """How :func:`free_parameters` is made up, for messages."""
    if isinstance(space, SearchSpace):
        return f"1 + {space.num_layers} layers × ({len(space.choice_names)} − 1) choices"
    return f"1 + {len(feature_names(space))} work features"


# -- the RepGhostNet skeleton's work features -------------------------------------------------------
@functools.cache
def _work_names() -> list[str]:
    names = []
    for stride in STRIDES:
        names += [f"s{stride}:{kind}:{measure}" for kind in CONV_KINDS for measure in ("macs", "n", "in")]
        names += [f"s{stride}:se:elems", f"s{stride}:se:n", f"s{stride}:add:elems"]
    return names


def work(space: RepGhostNetSpace, arch: Sequence[str]) -> Counter:
    """The work features of ``arch`` (deploy form, at :data:`WORK_IMG_SIZE`²): stem, blocks, last 1×1 conv."""
    widths = space.widths(arch)
    total = Counter(_stem_work(widths[0]))
    for slot, block in zip(space.slots, space.blocks(arch), strict=True):
        total.update(_block_work(block, WORK_IMG_SIZE * slot.stride // slot.out_stride))
    total.update(_last_conv_work(widths[-2], widths[-1]))
    return total


@functools.cache
def _stem_work(chs: int) -> Counter:
    with torch.device("meta"):
        return _module_work(ConvNormAct(3, chs, 3, stride=2, deploy=True), 3, WORK_IMG_SIZE)


@functools.cache
def _last_conv_work(in_chs: int, out_chs: int) -> Counter:
    with torch.device("meta"):
        return _module_work(ConvNormAct(in_chs, out_chs, 1, deploy=True), in_chs, WORK_IMG_SIZE // 32)


@functools.cache
def _block_work(block: BlockArch, size: int) -> Counter:
    with torch.device("meta"):
        module = make_block(block.op, block.in_chs, block.mid_chs, block.out_chs, block.kernel, block.stride,
                            block.se, deploy=True)
        return _module_work(module, block.in_chs, size)


def _module_work(module: nn.Module, in_chs: int, size: int) -> Counter:
    """Run ``module`` on a meta input of ``size``² and sum its work by (stride, kind)."""
    found: Counter = Counter()
    gates = [m for m in module.modules() if isinstance(m, (SqueezeExcite, MobileDetSE))]
    in_gate = {id(c) for g in gates for c in g.modules()}

    def stride_of(x: torch.Tensor) -> int:
        return WORK_IMG_SIZE // x.shape[-1]

    def on_conv(conv: nn.Conv2d, _inputs, out: torch.Tensor) -> None:
        if id(conv) in in_gate:
            return
        k = conv.kernel_size[0]
        kind = "pw" if k == 1 and conv.groups == 1 else f"dw{k}" if conv.groups > 1 else f"conv{k}"
        macs = out.numel() * conv.in_channels // conv.groups * k * k
        found[f"s{stride_of(out)}:{kind}:macs"] += macs / 1e6
        found[f"s{stride_of(out)}:{kind}:n"] += 1
        found[f"s{stride_of(out)}:{kind}:in"] += _inputs[0].numel() / 1e3

    def on_gate(_gate: nn.Module, inputs: tuple[torch.Tensor], _out) -> None:
        found[f"s{stride_of(inputs[0])}:se:elems"] += inputs[0].numel() / 1e3
        found[f"s{stride_of(inputs[0])}:se:n"] += 1

    hooks = [m.register_forward_hook(on_conv) for m in module.modules() if isinstance(m, nn.Conv2d)]
    hooks += [g.register_forward_hook(on_gate) for g in gates]
    try:
        with torch.no_grad():
            out = module(torch.empty(1, in_chs, size, size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    if getattr(module, "residual", False) or getattr(module, "shortcut", None) is not None:
        found[f"s{stride_of(out)}:add:elems"] += out.numel() / 1e3
    return found
