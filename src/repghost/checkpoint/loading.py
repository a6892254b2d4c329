"""Loading: a state dict into a model strictly, and a whole model rebuilt from a file.

Owns strict loading (a train-form state dict into a deploy model, or the reverse, is refused with
both layouts named; ``drop_classifier`` for fine-tuning; a ``features_only`` backbone takes a
classifier's weights), the mismatch messages, and :func:`open_model`: the model in any checkpoint
file rebuilt — a repghost safetensors file or training checkpoint from what it records (see
:mod:`.contract`), an official, timm or raw state-dict file from a model name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..models import UnknownModelError, create_model, resolve_model_name
from ..preprocess import Preprocess
from .contract import Recorded, is_training_checkpoint, other_file_message, read_safetensors_record, training_record
from .layouts import (
    fold_batchnorms,
    is_partially_folded,
    model_form,
    state_dict_form,
    to_our_layout,
    unwrap_state_dict,
)
from .safe import CheckpointError, file_kind, read_checkpoint_file


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
    return load_state_into(model, state, str(path), drop_classifier=drop_classifier)


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], name: str = "checkpoint",
                    drop_classifier: bool = False) -> nn.Module:
    """:func:`load_checkpoint` for a state dict already read (our layout); ``name`` is for messages."""
    path = name
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


@dataclass(frozen=True)
class LoadedModel:
    """A model rebuilt from a file, with what the file says about its inputs and outputs."""
    model: nn.Module
    preprocess: Preprocess | None   # None: the file does not record it (official / timm / raw state dict)
    classes: list[str] | None = None
    data: str | None = None         # the data it was trained on, when recorded
    kind: str = ""                  # "repghost safetensors", "repghost training checkpoint", "state dict"
    notes: tuple[str, ...] = ()     # what a user should know about the weights chosen


def open_model(path: str | os.PathLike, model_name: str | None = None, num_classes: int | None = None,
               use_ema: bool = False, **model_kwargs) -> LoadedModel:
    """Rebuild the model in any checkpoint file: the train / deploy safetensors that
    :func:`save_checkpoint` writes, a training checkpoint (``last.pt`` / ``best.pt``; ``use_ema``
    for its EMA weights), or — with ``model_name`` — an official, timm or raw state-dict file.

    Files written by repghost name their model; ``model_name``, when also given, must agree.
    """
    path = Path(path)
    raw = read_checkpoint_file(path)
    if num_classes is not None:  # a self-describing file still takes an explicit override
        model_kwargs = {**model_kwargs, "num_classes": num_classes}
    record = read_safetensors_record(path) if file_kind(path) == "safetensors" else None
    if record is not None:
        return _open_safetensors(path, raw, record, model_name, use_ema, model_kwargs)
    if is_training_checkpoint(raw):
        return _open_training_checkpoint(path, raw, model_name, use_ema, model_kwargs)
    other = other_file_message(raw, path)
    if other is not None:
        raise CheckpointError(other)
    if model_name is None:
        raise CheckpointError(f"{path} was not written by repghost, so it does not name its model; "
                              "pass the model name (--model repghostnet_100, ...)")
    state = to_our_layout(unwrap_state_dict(raw, use_ema=use_ema))
    if "num_classes" not in model_kwargs and "classifier.weight" in state:
        model_kwargs["num_classes"] = state["classifier.weight"].shape[0]
    deploy = state_dict_form(state) == "deploy" or is_partially_folded(state)
    model = create_model(model_name, deploy=deploy, **model_kwargs)
    load_state_into(model, state, str(path))
    return LoadedModel(model.eval(), None, kind="state dict")


def _open_safetensors(path: Path, raw: dict, record: Recorded, model_name, use_ema: bool,
                      model_kwargs: dict) -> LoadedModel:
    _check_name(path, record.model_name, model_name)
    if use_ema:
        raise CheckpointError(f"{path} holds one set of weights (the best ones, EMA or not, were saved); "
                              "--ema applies to training checkpoints (last.pt / best.pt)")
    kwargs = {**record.model_kwargs, **model_kwargs}
    kwargs.setdefault("deploy", record.form == "deploy")
    model = _recorded_model(path, record.model_name, kwargs)
    load_state_into(model, to_our_layout(unwrap_state_dict(raw)), str(path))
    return LoadedModel(model.eval(), record.preprocess, record.classes, record.data, "repghost safetensors")


def _recorded_model(path: Path, name: str, kwargs: dict) -> nn.Module:
    """The model a file names: a name this version cannot build is the file's problem, not the caller's."""
    try:
        return create_model(name, **kwargs)
    except UnknownModelError as err:
        raise CheckpointError(f"{path} holds a model that cannot be built here: {err}") from None


def _check_name(path, recorded: str, given: str | None) -> None:
    if given is None or given == recorded:
        return
    try:
        given = resolve_model_name(given)  # a searched architecture's file names its inline name
    except UnknownModelError:
        pass
    if given != recorded:
        raise CheckpointError(f"{path} holds a {recorded} model, not {given}; drop --model (the file names its model)")


def _open_training_checkpoint(path: Path, state: dict, model_name, use_ema: bool, model_kwargs: dict) -> LoadedModel:
    record = training_record(state, path)
    _check_name(path, record.model_name, model_name)
    if use_ema and "state_dict_ema" not in state:
        raise CheckpointError(f"{path} has no EMA weights (the run had ema_decay 0)")
    model = _recorded_model(path, record.model_name, {**record.model_kwargs, **model_kwargs})
    load_state_into(model, unwrap_state_dict(state, use_ema=use_ema), str(path))
    best, notes = record.extra["best"], ()
    if not use_ema and best.get("source") == "ema":
        notes = (f"{path.name} holds raw and EMA weights and its best score ({best.get('top1', 0):.2f} %) came from "
                 "the EMA ones; these are the raw weights (pass --ema for the EMA ones)",)
    return LoadedModel(model.eval(), record.preprocess, record.classes, record.data,
                       "repghost training checkpoint", notes)


def load_model(path: str | os.PathLike, **overrides) -> nn.Module:
    """Rebuild the model in a file repghost wrote — train or deploy safetensors, or a training
    checkpoint (``last.pt`` / ``best.pt``) — and load its weights. ``overrides`` go to create_model."""
    return open_model(path, **overrides).model
