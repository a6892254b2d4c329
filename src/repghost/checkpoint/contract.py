"""The file contract: what the files repghost writes carry about their model, and how it is read.

A safetensors file written by :func:`save_checkpoint` names its model (name, kwargs, form) and
carries the :class:`~repghost.preprocess.Preprocess` its inputs need, plus JSON extras (class
names, training data, ...), so that :func:`repghost.checkpoint.load_model` rebuilds the model from
the file alone. The other files repghost writes with ``torch.save`` carry a format tag.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..io import atomic_path
from ..preprocess import METADATA_KEY as PREPROCESS_KEY
from ..preprocess import Preprocess, PreprocessError
from .layouts import model_form
from .safe import CheckpointError, file_kind, read_checkpoint_file

FORMAT = "repghost"
#: The format tags of the other files repghost writes with ``torch.save``: what they are is said when
#: one is given where a classification model is expected.
DETECTION_FORMAT = "repghost-detection"
SEARCH_FORMAT = "repghost-search/1"
OTHER_FILES = {
    DETECTION_FORMAT: "{path} is a repghost detector checkpoint (from det-train or det-eval --save-deploy), not a "
                      "classification model: evaluate it with `repghost det-eval {path}` (exporting and benchmarking "
                      "detectors are not available yet)",
    SEARCH_FORMAT: "{path} is a repghost search checkpoint, not a model: continue the search with `repghost search "
                   "--resume --output <its directory> ...`; the architecture it ends with (arch.json beside it) is "
                   "a model name for train, export and bench",
}


def save_checkpoint(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None,
                    preprocess: Preprocess | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors, atomically) with metadata that lets
    :func:`load_model` rebuild it: model name, kwargs and form, and the :class:`Preprocess` its
    inputs need when known. ``metadata`` adds JSON-able extras (``classes``, ``data``, ...)."""
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
    if preprocess is not None:
        header[PREPROCESS_KEY] = preprocess.to_json()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata :func:`save_checkpoint` wrote (``model_kwargs`` and ``extra`` decoded)."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        read_checkpoint_file(path)  # raises the not-found / directory message
    if file_kind(path) != "safetensors":
        raise CheckpointError(f"{path} is not a safetensors file, so it carries no repghost metadata")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as err:
        raise CheckpointError(f"cannot read {path} as safetensors: {err}") from None
    if meta.get("format") != FORMAT or not meta.get("model_name"):
        raise CheckpointError(f"{path} has no repghost metadata (model name); build the model with "
                              "create_model() and use load_checkpoint() instead")
    try:
        meta["model_kwargs"] = json.loads(meta.get("model_kwargs", "{}"))
        meta["extra"] = json.loads(meta.get("extra", "{}"))
        if not isinstance(meta["model_kwargs"], dict) or not isinstance(meta["extra"], dict):
            raise ValueError("model_kwargs and extra must be JSON objects")
    except ValueError as err:
        raise CheckpointError(f"{path}: malformed repghost metadata ({err})") from None
    return meta


def repghost_metadata(path: Path) -> dict | None:
    """:func:`read_metadata`, or ``None`` for a safetensors file repghost did not write."""
    try:
        return read_metadata(path)
    except CheckpointError as err:
        if "no repghost metadata" in str(err):
            return None
        raise


def recorded_preprocess(path, meta: dict) -> Preprocess | None:
    """The :class:`Preprocess` a safetensors file's metadata records, or ``None``."""
    try:
        if PREPROCESS_KEY in meta:
            return Preprocess.from_json(meta[PREPROCESS_KEY])
        legacy = meta["extra"].get("data_config")  # files written before the contract had a name
        if legacy:
            return Preprocess(input_size=legacy["img_size"], mean=legacy["mean"], std=legacy["std"],
                              interpolation=legacy.get("val_interpolation", "bilinear"),
                              crop_pct=legacy.get("crop_pct", 0.875))
    except (PreprocessError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: malformed preprocessing metadata ({err})") from None
    return None
