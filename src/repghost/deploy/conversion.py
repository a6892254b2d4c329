"""Checkpoint → deploy checkpoint: load, re-parameterize, prove equivalence, then write.

Nothing is written unless every step succeeds: a missing or unreadable checkpoint, a model that
does not fit it, or a fold that :func:`repghost.reparam.fold_and_verify` refuses raises
:class:`ConvertError` first. What the source records about its inputs (the preprocessing contract,
class names, training data) travels into the deploy file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import CheckpointError, LoadedModel, open_model, save_checkpoint
from ..models import UnknownModelError
from ..preprocess import Preprocess
from ..reparam import FoldCheck, FoldError, fold_and_verify, is_deploy


class ConvertError(RuntimeError):
    """The checkpoint could not be converted; nothing was written."""


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    model_name: str
    check: FoldCheck
    preprocess: Preprocess | None
    notes: tuple[str, ...] = ()


def load_any(path: str | os.PathLike, model_name: str | None = None, num_classes: int | None = None,
             use_ema: bool = False, **model_kwargs) -> LoadedModel:
    """:func:`repghost.checkpoint.open_model`, with its failures as :class:`ConvertError`."""
    try:
        return open_model(path, model_name=model_name, num_classes=num_classes, use_ema=use_ema, **model_kwargs)
    except (CheckpointError, UnknownModelError) as err:
        raise ConvertError(str(err)) from None


def fold_checked(loaded: LoadedModel, img_size: int | None = None, log: Callable[[str], None] | None = None):
    """:func:`repghost.reparam.fold_and_verify` for a loaded file: the deploy form of ``loaded.model``
    and its :class:`FoldCheck` (``None`` when it was already folded); raises :class:`ConvertError`
    when the check fails. The check runs at ``img_size`` (default: the recorded input size, else 224)."""
    model = loaded.model
    if is_deploy(model):
        return model, None
    size = img_size or (loaded.preprocess.input_size if loaded.preprocess else 224)
    try:
        deployed, check = fold_and_verify(model, (2, 3, size, size))
    except FoldError as err:
        raise ConvertError(f"{err}; nothing written") from None
    if log is not None:
        log(f"re-parameterized to the deploy form: {check}")
    return deployed, check


def file_metadata(loaded: LoadedModel, **extra) -> dict:
    """The JSON extras a derived file carries: class names and training data when known."""
    meta = {k: v for k, v in (("classes", loaded.classes), ("data", loaded.data)) if v is not None}
    return {**meta, **extra}


def convert(src: str | os.PathLike, dst: str | os.PathLike, model_name: str | None = None,
            num_classes: int | None = None, use_ema: bool = False, img_size: int | None = None) -> ConvertResult:
    """Convert the checkpoint ``src`` to a deploy-form safetensors file ``dst`` (written atomically,
    only when the fold checks out)."""
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise ConvertError(f"the output must be a .safetensors file, got {dst.name!r}")
    loaded = load_any(src, model_name, num_classes, use_ema)
    deployed, check = fold_checked(loaded, img_size)
    extra = file_metadata(loaded, converted_from=str(src))
    save_checkpoint(deployed, dst, metadata=extra, preprocess=loaded.preprocess)
    return ConvertResult(dst, getattr(loaded.model, "model_name", ""), check, loaded.preprocess, loaded.notes)
