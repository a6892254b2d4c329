"""Weight-shared, sliced building blocks of the one-shot super-network (TuNAS, FBNetV2, Once-for-All).

A sliced module holds ONE max-size set of tensors and runs any smaller configuration by cutting it:

- **channels** (input, middle and output widths): the *first k* channels of every tensor, so a
  narrower path is a prefix of every wider one and all widths train the same leading filters;
- **kernel**: the *centre* k×k of the max K×K kernel (Once-for-All's elastic kernel, without its
  optional learned kernel transform: the stand-alone block then holds exactly the sliced tensor);
- **BatchNorm**: the first k entries of its weight, bias and running statistics; in training mode
  the running statistics of those k channels are updated in place, as ``nn.BatchNorm2d`` would.

Attribute names mirror the stand-alone layers (``conv`` / ``bn`` / ``act`` of
:class:`~repghost.layers.ConvNormAct`, ``conv_reduce`` / ``conv_expand`` of the SE gates), so a
path's weights are the super-network's tensors cut to the stand-alone block's shapes
(:func:`sliced_state_dict`) and load into it with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def centre_kernel(weight: Tensor, k: int) -> Tensor:
    """The centre ``k``×``k`` of a conv weight whose kernel is at least ``k`` (odd sizes)."""
    size = weight.shape[-1]
    if k > size or (size - k) % 2:
        raise ValueError(f"cannot cut a {k}x{k} kernel from the centre of a {size}x{size} one")
    start = (size - k) // 2
    return weight[..., start:start + k, start:start + k]


def slice_like(tensor: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """``tensor`` cut to ``shape``: the first entries along every dim, the centre along a conv
    weight's two kernel dims. Refuses a shape larger than the tensor or of another rank."""
    if tensor.dim() != len(shape) or any(s > t for s, t in zip(shape, tensor.shape, strict=True)):
        raise ValueError(f"cannot slice a {tuple(tensor.shape)} tensor to {tuple(shape)}")
    if tensor.dim() == 4:
        return centre_kernel(tensor[:shape[0], :shape[1]], shape[2])
    return tensor[tuple(slice(0, s) for s in shape)]


def sliced_state_dict(super_module: nn.Module, block: nn.Module) -> dict[str, Tensor]:
    """The tensors of ``super_module`` cut to the shapes of ``block``'s state dict (same keys): the
    weights ``block`` gets for the path ``super_module`` runs. A key ``block`` has and the
    super-module lacks is an error naming it."""
    source = super_module.state_dict()
    missing = [key for key in block.state_dict() if key not in source]
    if missing:
        raise KeyError(f"the super-network module has no tensor {missing[0]!r} for the stand-alone "
                       f"{type(block).__name__} ({len(missing)} missing)")
    return {key: slice_like(source[key], value.shape) for key, value in block.state_dict().items()}


def sliced_batch_norm(bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """``bn`` applied to ``x`` with the first ``x.shape[1]`` channels of its parameters and
    statistics — what ``nn.BatchNorm2d.forward`` does, on a channel prefix (momentum ``None``, the
    cumulative average the BN recalibration uses, included)."""
    chs = x.shape[1]
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch = bn.training or bn.running_mean is None
    return F.batch_norm(x, bn.running_mean[:chs] if bn.running_mean is not None else None,
                        bn.running_var[:chs] if bn.running_var is not None else None,
                        bn.weight[:chs] if bn.affine else None, bn.bias[:chs] if bn.affine else None,
                        use_batch, factor, bn.eps)


class SlicedBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm over the first ``x.shape[1]`` of its channels. A module (not a function call), so
    forward hooks see what it normalizes; its state-dict keys are ``nn.BatchNorm2d``'s."""

    def forward(self, x: Tensor) -> Tensor:
        return sliced_batch_norm(self, x)


class SlicedConvNormAct(nn.Module):
    """:class:`~repghost.layers.ConvNormAct` (conv → BN → activation) at its max size, run at any
    smaller input width, output width (``out``; a depthwise conv's is its input's) and kernel
    (``k``, odd, ≤ the max). The stride is fixed: it belongs to the block's position."""

    def __init__(self, max_in: int, max_out: int, max_k: int = 1, stride: int = 1, depthwise: bool = False,
                 act_layer: Callable[..., nn.Module] | None = None, bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        super().__init__()
        if depthwise and max_in != max_out:
            raise ValueError(f"a depthwise conv has as many outputs as inputs, got {max_in} → {max_out}")
        self.depthwise, self.stride = depthwise, stride
        self.conv = nn.Conv2d(max_in, max_out, max_k, stride, max_k // 2, groups=max_in if depthwise else 1,
                              bias=False)
        self.bn = SlicedBatchNorm2d(max_out, eps=bn_eps, momentum=bn_momentum)
        self.act = act_layer(inplace=True) if act_layer is not None else nn.Identity()

    @property
    def max_k(self) -> int:
        return self.conv.kernel_size[0]

    def forward(self, x: Tensor, out: int | None = None, k: int | None = None) -> Tensor:
        in_chs, k = x.shape[1], k or self.max_k
        if self.depthwise:
            weight, groups = self.conv.weight[:in_chs], in_chs
        else:
            weight, groups = self.conv.weight[:out or self.conv.out_channels, :in_chs], 1
        y = F.conv2d(x, centre_kernel(weight, k), None, self.stride, k // 2, 1, groups)
        return self.act(self.bn(y))


class SlicedSE(nn.Module):
    """A squeeze-and-excitation gate at its max width, run on the first ``x.shape[1]`` channels with
    ``hidden`` reduced channels: pool → 1×1 (bias) → ``act`` → 1×1 (bias) → ``gate`` → multiply.
    ``gate`` is ``F.hardsigmoid`` for RepGhost's :class:`~repghost.layers.SqueezeExcite`,
    ``torch.sigmoid`` for :class:`~repghost.layers.mobiledet.MobileDetSE`."""

    def __init__(self, max_chs: int, max_hidden: int, act_layer: Callable[..., nn.Module] = nn.ReLU,
                 gate: Callable[[Tensor], Tensor] = F.hardsigmoid):
        super().__init__()
        self.conv_reduce = nn.Conv2d(max_chs, max_hidden, 1, bias=True)
        self.act = act_layer(inplace=True)
        self.conv_expand = nn.Conv2d(max_hidden, max_chs, 1, bias=True)
        self.gate = gate

    def forward(self, x: Tensor, hidden: int) -> Tensor:
        chs = x.shape[1]
        pooled = x.mean((2, 3), keepdim=True)
        squeezed = self.act(F.conv2d(pooled, self.conv_reduce.weight[:hidden, :chs], self.conv_reduce.bias[:hidden]))
        gate = F.conv2d(squeezed, self.conv_expand.weight[:chs, :hidden], self.conv_expand.bias[:chs])
        return x * self.gate(gate)


class SlicedInputConv2d(nn.Conv2d):
    """A conv of fixed output width run on the first ``x.shape[1]`` of its input channels; a
    depthwise one (groups = in = out) keeps the first ``x.shape[1]`` filters too. What the layers
    after the searched body (SSDLite's first extra layer and head) become, as their input width
    is the path's feature width."""

    def forward(self, x: Tensor) -> Tensor:
        in_chs = x.shape[1]
        if self.groups == 1:
            weight, bias, groups = self.weight[:, :in_chs], self.bias, 1
        elif self.groups == self.in_channels == self.out_channels:
            weight, groups = self.weight[:in_chs], in_chs
            bias = self.bias[:in_chs] if self.bias is not None else None
        else:
            raise ValueError(f"only dense and depthwise convs slice their input, not groups={self.groups}")
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)


def slice_inputs(module: nn.Module) -> nn.Module:
    """Every ``Conv2d`` and ``BatchNorm2d`` inside ``module`` as its input-sliced counterpart
    (:class:`SlicedInputConv2d`, :class:`SlicedBatchNorm2d`), with the same parameters, buffers and
    names (in place; returns ``module``)."""
    for name, child in module.named_children():
        if type(child) is nn.Conv2d:
            sliced = SlicedInputConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                       child.padding, child.dilation, child.groups, child.bias is not None,
                                       child.padding_mode)
        elif type(child) is nn.BatchNorm2d:
            sliced = SlicedBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
        else:
            slice_inputs(child)
            continue
        sliced.load_state_dict(child.state_dict())
        setattr(module, name, sliced.to(next(iter(child.state_dict().values())).device))
    return module
