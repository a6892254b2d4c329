"""Key layouts: where a state dict sits inside a file, whose key names it uses, and which form it is.

Owns unwrapping (``state_dict``, ``state_dict_ema``, ``model``, … and ``module.`` prefixes), the
rename from the official RepGhost / timm layout (timm's ``repghostnet_*`` and ``ghostnet_*`` share
it) to ours, telling train form (BatchNorm statistics present) from deploy form, and folding the
BatchNorms left in the official / timm deploy form. The folding arithmetic itself is
:func:`repghost.layers.fuse.fold_bn_tensors`; this module only finds the tensors it applies to.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..layers.fuse import fold_bn_tensors
from ..reparam import is_deploy
from .safe import CheckpointError

_WRAPPER_KEYS = ("state_dict", "model", "module", "net", "params")
_EMA_KEYS = ("state_dict_ema", "model_ema", "ema")

# Official RepGhost / timm key → our key. Applied in order, each at most once per key.
_EXTERNAL_TO_OURS = [
    (r"^conv_stem\.", "stem.conv."),
    (r"^bn1\.", "stem.bn."),
    (r"\.primary_conv\.0\.", ".primary_conv.conv."),
    (r"\.primary_conv\.1\.", ".primary_conv.bn."),
    (r"\.cheap_operation\.0\.", ".cheap_operation.conv."),
    (r"\.cheap_operation\.1\.", ".cheap_operation.bn."),
    (r"\.cheap_operation\.(weight|bias)$", r".cheap_operation.conv.\1"),
    (r"\.fusion_bn\.0\.", ".fusion."),
    (r"\.conv_dw\.(weight|bias)$", r".conv_dw.conv.\1"),
    (r"\.bn_dw\.", ".conv_dw.bn."),
    (r"\.shortcut\.0\.", ".shortcut.dw.conv."),
    (r"\.shortcut\.1\.", ".shortcut.dw.bn."),
    (r"\.shortcut\.2\.", ".shortcut.pw.conv."),
    (r"\.shortcut\.3\.", ".shortcut.pw.bn."),
    (r"^(blocks\.\d+\.\d+)\.bn1\.", r"\1.bn."),
]


def unwrap_state_dict(obj, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Find the state dict inside a training checkpoint and strip ``module.`` prefixes."""
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = (*_EMA_KEYS, *_WRAPPER_KEYS) if use_ema else _WRAPPER_KEYS
        inner = next((obj[k] for k in keys if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise CheckpointError(
                f"no state dict found in checkpoint; top-level keys: {sorted(map(str, obj))[:12]}")
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError("checkpoint holds no tensors")
    return {re.sub(r"^(module\.)+", "", k): v for k, v in obj.items()}


def is_external_layout(state_dict: dict) -> bool:
    """True for the official RepGhost / timm key layout."""
    return "conv_stem.weight" in state_dict


def to_our_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official RepGhost / timm keys to ours (a no-op on our own layout)."""
    if not is_external_layout(state_dict):
        return dict(state_dict)
    renamed = {}
    for key, value in state_dict.items():
        for pattern, repl in _EXTERNAL_TO_OURS:
            key = re.sub(pattern, repl, key)
        renamed[key] = value
    return renamed


def state_dict_form(state_dict: dict) -> str:
    """``"train"`` when the state dict holds BatchNorm statistics, else ``"deploy"``."""
    return "train" if any(k.endswith("running_mean") for k in state_dict) else "deploy"


def model_form(model: nn.Module) -> str:
    """``"deploy"`` when nothing in ``model`` is left to fold, else ``"train"``."""
    return "deploy" if is_deploy(model) else "train"


def is_partially_folded(state_dict: dict) -> bool:
    """The official / timm deploy form: RepGhost branches folded, every other BN still there."""
    return state_dict_form(state_dict) == "train" and any(k.endswith("cheap_operation.conv.bias") for k in state_dict)


def fold_batchnorms(state_dict: dict[str, torch.Tensor], eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """Fold every ``<p>.bn.*`` group into the ``<p>.conv`` it follows, in a state dict of our layout.

    State dicts do not store BN ``eps``; PyTorch's default (1e-5) is the one every model here uses.
    """
    folded = dict(state_dict)
    for key in state_dict:
        if not key.endswith(".bn.running_mean"):
            continue
        prefix = key[: -len("bn.running_mean")]
        bn = {name: folded.pop(f"{prefix}bn.{name}", None)
              for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
        kernel = folded[f"{prefix}conv.weight"]
        bias = folded.get(f"{prefix}conv.bias", torch.zeros_like(bn["running_mean"]))
        kernel, bias = fold_bn_tensors(kernel, bias, bn["running_mean"], bn["running_var"],
                                       bn["weight"], bn["bias"], eps)
        folded[f"{prefix}conv.weight"], folded[f"{prefix}conv.bias"] = kernel, bias
    return folded
