"""Whole-model re-parameterization: train form → deploy form, the check that they agree, and the one
policy every caller follows (:func:`fold_and_verify`: fold, check in float64, refuse a fold that fails).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
        err = (x.double() - y.double()).abs().max().item()  # float64 so a float64 check keeps its precision
        ref = x.double().abs().max().item()
        max_abs, scale = max(max_abs, err), max(scale, ref)
        max_rel = max(max_rel, err / ref if ref > 0 else err)
    return dict(max_abs=max_abs, max_rel=max_rel, scale=scale)


#: A fold evaluated in float64 agrees with the unfolded float64 network to ~1e-12 (relative to the
#: output scale) when its math is right; above this bound the fold is wrong, not rounded.
FOLD_RTOL_F64 = 1e-9
#: Each float32 deploy tensor may differ from the exact (float64) fold by this much of the tensor's
#: largest value, plus a few times what a fresh float32 fold differs by (rounding, cancellation).
PARAM_RTOL = 1e-6


@dataclass(frozen=True)
class FoldCheck:
    """How a deploy model relates to the model it was folded from (see :func:`verify_fold`)."""
    max_rel_f64: float     # outputs of the float64 fold vs the float64 original
    param_ratio: float     # worst deploy tensor's distance to the exact fold, over its allowance (ok ≤ 1)
    worst_param: str       # the tensor that gave param_ratio
    max_rel_f32: float     # outputs of the float32 models (float32 rounding only; reported, not judged)

    @property
    def ok(self) -> bool:
        return self.max_rel_f64 <= FOLD_RTOL_F64 and self.param_ratio <= 1.0

    def __str__(self) -> str:
        return (f"fold exact to {self.max_rel_f64:.2g} in float64 (bound {FOLD_RTOL_F64:g}); deploy weights at "
                f"{self.param_ratio:.2g} of their rounding allowance; float32 outputs differ by "
                f"{self.max_rel_f32:.2g} of their scale (rounding)")


@torch.no_grad()
def verify_fold(model: nn.Module, deployed: nn.Module, input_size: Sequence[int] = (2, 3, 224, 224),
                seed: int = 0) -> FoldCheck:
    """Check that ``deployed`` is ``model`` folded, telling float32 rounding apart from a wrong fold.

    Comparing float32 outputs cannot do that: on trained weights float32 rounding alone can reach
    1e-5 of the output scale. So (1) the fold is redone in float64, where a correct folding rule
    agrees with the original network to ~1e-12, and (2) every tensor of ``deployed`` must be as
    close to that exact fold as a float32 fold gets (:data:`PARAM_RTOL` of its scale, plus a few
    times a fresh float32 fold's own distance). A wrong rule fails (1); a wrong bias fails (2).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model64 = copy.deepcopy(model).double().eval()
        exact, fresh = reparameterize(model64), reparameterize(model)
    size = tuple(input_size) if len(input_size) == 4 else (1, *input_size)
    x = torch.randn(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    device = next(model.parameters()).device
    f64 = check_equivalence(model64, exact, inputs=x.to(device))
    f32 = check_equivalence(model, deployed, inputs=x.float().to(device))
    own, ref, ref32 = deployed.state_dict(), exact.state_dict(), fresh.state_dict()
    if own.keys() != ref.keys():
        different = sorted(set(own) ^ set(ref))[:4]
        raise ValueError(f"the deploy model's tensors differ from a fresh fold of the original: {different}")
    worst, worst_key = 0.0, ""
    for key, value in own.items():
        if not value.is_floating_point():
            continue
        expected = ref[key].to(value.device)
        rounding = (ref32[key].to(value.device).double() - expected).abs().max().item()
        allowance = PARAM_RTOL * expected.abs().max().item() + 4 * rounding
        err = (value.double() - expected).abs().max().item()
        ratio = err / allowance if allowance > 0 else (0.0 if err == 0 else math.inf)
        if ratio > worst:
            worst, worst_key = ratio, key
    return FoldCheck(f64["max_rel"], worst, worst_key, f32["max_rel"])


class FoldError(ValueError, RuntimeError):
    """A deploy form that disagrees with the model it was folded from, or that still holds something to fold.

    Both a ValueError and a RuntimeError: the fold checks this replaced raised one or the other
    (detector evaluation, training's export), and code catching either still catches it.
    """

    def __init__(self, message: str, check: FoldCheck | None = None):
        super().__init__(message)
        self.check = check


def fold_and_verify(model: nn.Module, input_size: Sequence[int],
                    fold: Callable[[nn.Module], nn.Module] = reparameterize,
                    part: Callable[[nn.Module], nn.Module] | None = None) -> tuple[nn.Module, FoldCheck]:
    """The deploy form of ``model`` and its :class:`FoldCheck`; raises :class:`FoldError` when the
    fold left anything unfolded or :func:`verify_fold` (float64) rejects it.

    The one fold-and-verify every caller uses before it writes or evaluates a deploy form.
    ``input_size`` is the check's input (N, C, H, W). ``fold`` makes the deploy form (default
    :func:`reparameterize`); ``part`` picks, from each model, the network the check runs on
    (default the whole model; for a detector, its backbone body).
    """
    part = part or (lambda m: m)
    deployed = fold(model)
    if not is_deploy(part(deployed)):
        raise FoldError(f"{type(part(model)).__name__} still has unfolded BatchNorm or branches after reparameterize()")
    check = verify_fold(part(model), part(deployed), input_size)
    if not check.ok:
        raise FoldError(f"the deploy form disagrees with the model it was folded from ({check}; worst tensor "
                        f"{check.worst_param})", check)
    return deployed, check
