"""Params and MACs counted the paper's way.

Params are every learnable parameter (BatchNorm affine included): that is what reproduces the
paper's table (2.314M at 0.5×, 4.074M at 1.0×). MACs are of conv and linear layers only —
BatchNorm, activations, additions and the SE multiply are not counted. A conv costs
``out_elements × (C_in / groups · k_h · k_w + has_bias)`` MACs, a linear layer
``out_features × (in_features + has_bias)`` per sample. Count the train form to reproduce the
paper's table; the deploy form adds the folded biases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Profile:
    params: int
    macs: int

    def __str__(self) -> str:
        return f"{self.params / 1e6:.3f}M params, {self.macs / 1e6:.1f}M MACs"


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    bias = int(module.bias is not None)
    if isinstance(module, nn.Conv2d):
        k_h, k_w = module.kernel_size
        per_output = module.in_channels // module.groups * k_h * k_w + bias
        return output.numel() * per_output
    return output.numel() * (module.in_features + bias)


@torch.no_grad()
def profile(model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224)) -> Profile:
    """Count learnable params and the conv + linear MACs of one forward pass at ``input_size``.

    ``input_size`` is ``(N, C, H, W)`` or ``(C, H, W)`` (batch 1). MACs are for the whole batch.
    """
    size = tuple(input_size)
    if len(size) == 3:
        size = (1, *size)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    params = sum(p.numel() for p in model.parameters())
    macs = 0

    def count(module, _inputs, output):
        nonlocal macs
        macs += _layer_macs(module, output)

    handles = [m.register_forward_hook(count) for m in layers]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        model(torch.zeros(size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return Profile(params=params, macs=macs)
