"""The BatchNorm-folding math, in one place.

Every re-parameterizable block reduces its branches to ``(kernel, bias)`` pairs with these
helpers, adds them up, and writes the sum into a single convolution. All functions work on
detached tensors and never touch the modules they read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

#: Normalizations that fold: trainable BN, and the frozen BN detectors train with (same statistics).
FOLDABLE_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def fold_bn(kernel: torch.Tensor, bias: torch.Tensor | None, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm (or FrozenBatchNorm2d) after a conv with ``kernel`` / ``bias`` into one pair.

    ``bn`` may be ``nn.Identity`` (the conv is already folded), in which case the pair is returned
    as is (with a zero bias when there was none).
    """
    out_chs = kernel.shape[0]
    if bias is None:
        bias = torch.zeros(out_chs, dtype=kernel.dtype, device=kernel.device)
    if isinstance(bn, nn.Identity):
        return kernel, bias
    if not isinstance(bn, FOLDABLE_NORMS):
        raise TypeError(f"cannot fold {type(bn).__name__}: only BatchNorm2d, FrozenBatchNorm2d or Identity")
    ones = torch.ones_like(bn.running_var)
    affine = getattr(bn, "affine", True)  # FrozenBatchNorm2d always has a scale and shift
    gamma = bn.weight if affine else ones
    beta = bn.bias if affine else torch.zeros_like(ones)
    return fold_bn_tensors(kernel, bias, bn.running_mean, bn.running_var, gamma, beta, bn.eps)


def fold_bn_tensors(kernel, bias, mean, var, gamma, beta, eps: float = 1e-5):
    """:func:`fold_bn` on raw tensors (e.g. straight from a state dict)."""
    scale = gamma / (var + eps).sqrt()
    return kernel * scale.reshape(-1, 1, 1, 1), beta + (bias - mean) * scale


def identity_kernel(channels: int, kernel_size: int, groups: int, like: torch.Tensor) -> torch.Tensor:
    """The ``kernel_size``×``kernel_size`` conv kernel (grouped by ``groups``) that maps x to x."""
    in_per_group = channels // groups
    kernel = torch.zeros(channels, in_per_group, kernel_size, kernel_size, dtype=like.dtype, device=like.device)
    centre = kernel_size // 2
    kernel[torch.arange(channels), torch.arange(channels) % in_per_group, centre, centre] = 1.0
    return kernel


def pad_kernel(kernel: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Zero-pad a smaller odd kernel to ``kernel_size`` so that its centre stays the centre."""
    pad = (kernel_size - kernel.shape[-1]) // 2
    if pad < 0:
        raise ValueError(f"cannot pad a {kernel.shape[-1]}x{kernel.shape[-1]} kernel down to {kernel_size}")
    return F.pad(kernel, [pad] * 4) if pad else kernel


@torch.no_grad()
def conv_bn_to_kernel_bias(conv: nn.Conv2d, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(kernel, bias)`` of ``bn(conv(x))``."""
    return fold_bn(conv.weight, conv.bias, bn)


@torch.no_grad()
def bn_to_kernel_bias(bn: nn.Module, channels: int, kernel_size: int, groups: int,
                      like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(kernel, bias)`` of ``bn(x)`` (or of ``x`` when ``bn`` is Identity) as a grouped conv."""
    return fold_bn(identity_kernel(channels, kernel_size, groups, like), None, bn)


def conv_with(conv: nn.Conv2d, kernel: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A new conv with ``conv``'s geometry holding ``kernel`` and ``bias``."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
        device=kernel.device, dtype=kernel.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias)
    return fused
