"""Whole-model re-parameterization: train form → deploy form, and the check that they agree."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from .layers.fuse import FOLDABLE_NORMS


def is_deploy(model: nn.Module) -> bool:
    """True when no module of ``model`` has anything left to fold."""
    norms = (nn.modules.batchnorm._BatchNorm, *FOLDABLE_NORMS)
    return not any(isinstance(m, norms) for m in model.modules()) and not any(
        getattr(m, "fusion", None) is not None for m in model.modules()
    )


def reparameterize(model: nn.Module) -> nn.Module:
    """A deploy-form copy of ``model``: every BatchNorm and every RepGhost branch folded.

    The input is left untouched. The copy is returned in eval mode; a model still in train mode is
    converted with its running statistics, with a warning. Works on any model whose foldable
    modules expose ``reparameterize()`` (timm's convention), ours or not; a deploy model comes
    back as an unchanged copy.
    """
    if model.training:
        warnings.warn(
            "reparameterize() got a model in train mode; folding its BatchNorm running statistics "
            "(call model.eval() first to silence this)", stacklevel=2,
        )
    deployed = copy.deepcopy(model).eval()
    # Snapshot the list: a block's reparameterize() replaces its children.
    for module in list(deployed.modules()):
        fold = getattr(module, "reparameterize", None)
        if callable(fold):
            fold()
    if hasattr(deployed, "deploy"):
        deployed.deploy = True
    if hasattr(deployed, "model_kwargs"):
        deployed.model_kwargs = {**deployed.model_kwargs, "deploy": True}
    return deployed


@torch.no_grad()
def check_equivalence(a: nn.Module, b: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224),
                      seed: int = 0, inputs: torch.Tensor | None = None) -> dict[str, float]:
    """Run both models in eval mode on the same random input (or ``inputs``).

    Returns ``max_abs`` (largest absolute difference), ``max_rel`` (``max_abs`` over the largest
    absolute output of ``a``) and ``scale`` (that largest output). Multi-output models (feature
    lists) are compared output by output and the worst is reported. Each model's train/eval mode
    is restored afterwards.
    """
    if inputs is None:
        size = tuple(input_size)
        if len(size) == 3:
            size = (1, *size)
        device = next(a.parameters()).device
        inputs = torch.randn(size, generator=torch.Generator().manual_seed(seed)).to(device)
    modes = a.training, b.training
    a.eval(), b.eval()
    try:
        out_a, out_b = a(inputs), b(inputs)
    finally:
        a.train(modes[0]), b.train(modes[1])
    outs_a = out_a if isinstance(out_a, (list, tuple)) else [out_a]
    outs_b = out_b if isinstance(out_b, (list, tuple)) else [out_b]
    if len(outs_a) != len(outs_b):
        raise ValueError(f"models return {len(outs_a)} and {len(outs_b)} outputs")
    max_abs, max_rel, scale = 0.0, 0.0, 0.0
    for x, y in zip(outs_a, outs_b, strict=True):
        if x.shape != y.shape:
            raise ValueError(f"output shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        err = (x.float() - y.float()).abs().max().item()
        ref = x.float().abs().max().item()
        max_abs, scale = max(max_abs, err), max(scale, ref)
        max_rel = max(max_rel, err / ref if ref > 0 else err)
    return dict(max_abs=max_abs, max_rel=max_rel, scale=scale)
