"""Detector files: a standalone detector checkpoint (weights, detector config, categories) written
atomically and read back as tensors only, and the check that a dataset has the categories a file
was trained on."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..checkpoint import (
    DETECTION_FORMAT,
    CheckpointError,
    WrongTaskError,
    file_kind,
    is_training_checkpoint,
    read_checkpoint_file,
    read_safetensors_record,
)
from ..io import atomic_torch_save
from .data import CocoDetection
from .detectors import DetectorConfig, build_detector

CHECKPOINT_FORMAT = DETECTION_FORMAT  # the file contract lives in repghost.checkpoint




def read_detector_checkpoint(path: str | os.PathLike) -> dict:
    """A detection checkpoint (``last.pt`` or one saved by :func:`save_detector`), tensors only; a
    classifier's checkpoint raises :class:`WrongTaskError`."""
    state = read_checkpoint_file(path)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        return state
    if is_training_checkpoint(state) or (file_kind(path) == "safetensors" and read_safetensors_record(path)):
        raise WrongTaskError(f"{path} is a classification model, not a detector: use `repghost eval` / "
                             "`repghost export` for it")
    raise CheckpointError(f"{path} is not a repghost detection checkpoint (no {CHECKPOINT_FORMAT!r} format tag)")


def is_detector_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a detection checkpoint (read safely; ``False`` for anything else)."""
    try:
        read_detector_checkpoint(path)
    except CheckpointError:
        return False
    return True


def save_detector(model: nn.Module, path: str | os.PathLike, categories: list[dict], extra: dict | None = None) -> Path:
    """Write a standalone detector checkpoint (weights + config + categories) atomically."""
    path = Path(path)
    state = {"format": CHECKPOINT_FORMAT, "detector": model.detector_config.to_dict(), "categories": categories,
             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **(extra or {})}
    atomic_torch_save(state, path)
    return path


def load_detector(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Rebuild the detector saved in ``path`` (train or deploy form) in eval mode, and the checkpoint dict.
    A run trained with an EMA of its weights loads the EMA weights: the ones it evaluated and reported."""
    state = read_detector_checkpoint(path)
    model = build_detector(DetectorConfig.from_dict(state["detector"]))
    try:
        model.load_state_dict(state.get("ema") or state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit its own detector config: {err}") from None
    return model.eval(), state


def categories_of(dataset: CocoDetection) -> list[dict]:
    return [{"id": int(c), "name": n} for c, n in zip(dataset.category_ids, dataset.category_names, strict=True)]


def check_categories(expected: list[dict], dataset: CocoDetection, source: str) -> None:
    found = categories_of(dataset)
    if [c["id"] for c in expected] != [c["id"] for c in found]:
        raise ValueError(f"{source} was trained on category ids {[c['id'] for c in expected]}, but "
                         f"{dataset.ann_file} has {[c['id'] for c in found]}")
