"""Safe checkpoint I/O: tensors only, three key layouts, train vs deploy form told apart.

Reads safetensors files and ``torch.save`` files (always with ``weights_only=True``), raw or
wrapped (``state_dict``, ``state_dict_ema``, ``model``, … and ``module.`` prefixes), in our layout
or the official RepGhost / timm layout (timm's ``repghostnet_*`` and ``ghostnet_*`` share it).
Writes safetensors with JSON metadata (model name, form, kwargs) so :func:`load_model` can
rebuild a model from the file alone.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .io import atomic_path
from .layers.fuse import fold_bn_tensors
from .models import create_model
from .reparam import is_deploy

FORMAT = "repghost"
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


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, is unsafe, or does not fit the model."""


def read_checkpoint_file(path: str | os.PathLike):
    """The raw contents of a checkpoint file: safetensors, or ``torch.load(weights_only=True)``.

    The one place a checkpoint file is opened: arbitrary pickled objects are refused, never run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain containers, and "
            f"unpickling them could run arbitrary code ({str(err).splitlines()[0]})") from None
    except Exception as err:  # corrupt zip, truncated file, bad header, ...
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None


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


def model_form(model: nn.Module) -> str:
    return "deploy" if is_deploy(model) else "train"


def load_state_dict(path: str | os.PathLike, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a state dict in our layout (tensors only, nothing executed)."""
    return to_our_layout(unwrap_state_dict(read_checkpoint_file(path), use_ema=use_ema))


def load_checkpoint(model: nn.Module, path: str | os.PathLike, use_ema: bool = False,
                    drop_classifier: bool = False) -> nn.Module:
    """Load ``path`` into ``model`` strictly and return it.

    ``use_ema`` prefers EMA weights when the file has both. ``drop_classifier`` (fine-tuning)
    keeps the model's own classifier when the checkpoint's has a different number of classes.
    A train-form checkpoint into a deploy model (or the reverse) is refused with a message that
    names both layouts.
    """
    state = load_state_dict(path, use_ema=use_ema)
    form = model_form(model)
    if form == "deploy" and is_partially_folded(state):
        state = fold_batchnorms(state)
    ckpt_form = state_dict_form(state)
    if ckpt_form != form:
        raise CheckpointError(
            f"{path} holds a {ckpt_form}-form state dict but the model is in {form} form; "
            + ("build the model with deploy=True, " if ckpt_form == "deploy" else "build it without deploy=True, ")
            + "or use repghost.load_model() on a file saved by repghost.save_checkpoint()")
    own = model.state_dict()
    if getattr(model, "features_only", False):
        state = _backbone_only(state, own)
    reshaped = [k for k in state if k in own and own[k].shape != state[k].shape]
    if drop_classifier:
        dropped = [k for k in reshaped if k.startswith("classifier.")]
        state = {k: v for k, v in state.items() if k not in dropped}
        reshaped = [k for k in reshaped if k not in dropped]
    missing = [k for k in own if k not in state and not (drop_classifier and k.startswith("classifier."))]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or reshaped:
        raise CheckpointError(_mismatch_message(path, missing, unexpected, reshaped, own, state))
    model.load_state_dict(state, strict=False)
    return model


def _backbone_only(state: dict, own: dict) -> dict:
    """Drop what a headless (``features_only``) model lacks: the head and blocks past its last level."""
    def stage(key):
        match = re.match(r"blocks\.\d+\.", key)
        return match.group(0) if match else None

    own_stages = {stage(k) for k in own}
    return {k: v for k, v in state.items()
            if not k.startswith(("conv_head.", "classifier.")) and stage(k) in own_stages}


def _mismatch_message(path, missing, unexpected, reshaped, own, state) -> str:
    lines = [f"{path} does not fit the model ({state_dict_form(own)} layout, "
             f"checkpoint {state_dict_form(state)} layout):"]
    if missing:
        lines.append(f"  missing in checkpoint ({len(missing)}): {', '.join(missing[:6])}")
    if unexpected:
        lines.append(f"  not in model ({len(unexpected)}): {', '.join(unexpected[:6])}")
    if reshaped:
        lines.append("  shape differs (" + str(len(reshaped)) + "): " + ", ".join(
            f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in reshaped[:6]))
    if any(k.startswith("classifier.") for k in missing + unexpected + reshaped):
        lines.append("  (a different number of classes? pass drop_classifier=True to fine-tune)")
    return "\n".join(lines)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors, atomically) with metadata that lets
    :func:`load_model` rebuild it: model name, kwargs and form. ``metadata`` adds JSON-able extras."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_checkpoint writes safetensors; use a .safetensors path, not {path.name!r}")
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    kwargs = {k: v for k, v in getattr(model, "model_kwargs", {}).items() if k != "deploy"}
    header = {
        "format": FORMAT,
        "model_name": getattr(model, "model_name", ""),
        "model_kwargs": json.dumps(kwargs),
        "form": model_form(model),
        "extra": json.dumps(metadata or {}),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata :func:`save_checkpoint` wrote (``model_kwargs`` and ``extra`` decoded)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as err:
        raise CheckpointError(f"cannot read {path} as safetensors: {err}") from None
    if meta.get("format") != FORMAT or not meta.get("model_name"):
        raise CheckpointError(f"{path} has no repghost metadata (model name); build the model with "
                              "create_model() and use load_checkpoint() instead")
    meta["model_kwargs"] = json.loads(meta.get("model_kwargs", "{}"))
    meta["extra"] = json.loads(meta.get("extra", "{}"))
    return meta


def load_model(path: str | os.PathLike, **overrides) -> nn.Module:
    """Rebuild the model saved by :func:`save_checkpoint` (train or deploy form) and load it."""
    meta = read_metadata(path)
    kwargs = {**meta["model_kwargs"], **overrides}
    kwargs.setdefault("deploy", meta["form"] == "deploy")
    model = create_model(meta["model_name"], **kwargs)
    return load_checkpoint(model, path).eval()
