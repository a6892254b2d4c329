"""Checkpoint → deploy checkpoint: load, re-parameterize, prove equivalence, then write.

Nothing is written unless every step succeeds: a missing or unreadable checkpoint, a model that
does not fit it, or an equivalence error above tolerance raises :class:`ConvertError` first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint, load_model, load_state_dict, read_metadata, save_checkpoint
from ..models import UnknownModelError, create_model
from ..reparam import check_equivalence, is_deploy, reparameterize

#: Deploy vs train form on the same input: max abs error ≤ RTOL × max abs output (float32 folding).
RTOL = 1e-5


class ConvertError(RuntimeError):
    """The checkpoint could not be converted; nothing was written."""


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    model_name: str
    max_abs: float
    max_rel: float


def load_any(path: str | os.PathLike, model_name: str | None = None, num_classes: int | None = None,
             use_ema: bool = False, **model_kwargs) -> nn.Module:
    """A model loaded from any checkpoint the loader accepts.

    A file written by :func:`repghost.save_checkpoint` rebuilds itself; any other (official
    RepGhost, timm, a training checkpoint) needs ``model_name``. ``num_classes`` defaults to the
    checkpoint's classifier width.
    """
    try:
        if model_name is None:
            if Path(path).is_file() and Path(path).suffix != ".safetensors":
                raise ConvertError(f"{path} is not a repghost safetensors file, so it does not name its model; "
                                   "pass the model name (--model repghostnet_100, …)")
            read_metadata(path)  # raises with a clear message when the file has no repghost metadata
            return load_model(path)
        state = load_state_dict(path, use_ema=use_ema)
        if num_classes is None and "classifier.weight" in state:
            num_classes = state["classifier.weight"].shape[0]
        if num_classes is not None:
            model_kwargs["num_classes"] = num_classes
        deploy = not any(k.endswith("running_mean") for k in state)
        model = create_model(model_name, deploy=deploy, **model_kwargs)
        return load_checkpoint(model, path, use_ema=use_ema).eval()
    except (CheckpointError, UnknownModelError) as err:
        raise ConvertError(str(err)) from None


def convert(src: str | os.PathLike, dst: str | os.PathLike, model_name: str | None = None,
            num_classes: int | None = None, use_ema: bool = False,
            input_size: Sequence[int] = (2, 3, 224, 224), rtol: float = RTOL) -> ConvertResult:
    """Convert the checkpoint ``src`` to a deploy-form safetensors file ``dst``.

    Equivalence is checked on a random input of ``input_size``; the file is written (atomically)
    only when the relative error is within ``rtol``.
    """
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise ConvertError(f"the output must be a .safetensors file, got {dst.name!r}")
    model = load_any(src, model_name, num_classes, use_ema)
    deployed = model if is_deploy(model) else reparameterize(model)
    if not is_deploy(deployed):
        raise ConvertError(f"{type(model).__name__} still has unfolded BatchNorm or branches after reparameterize()")
    err = check_equivalence(model, deployed, input_size)
    if not err["max_rel"] <= rtol:
        raise ConvertError(f"deploy model disagrees with the checkpoint's model: max abs error {err['max_abs']:.3g}, "
                           f"relative {err['max_rel']:.3g} > tolerance {rtol:g}; nothing written")
    save_checkpoint(deployed, dst, metadata={"converted_from": str(src), "equivalence_max_rel": err["max_rel"]})
    return ConvertResult(dst, getattr(model, "model_name", ""), err["max_abs"], err["max_rel"])
