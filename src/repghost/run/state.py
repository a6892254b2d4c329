"""Resumable state shared by every long run: RNG capture and restore, reading a run's checkpoint, and
the one check that a resumed run keeps the settings its checkpoint was made with.

Everything here is tensors and plain containers, so checkpoints are read with
``torch.load(weights_only=True)`` only (through :func:`repghost.checkpoint.read_checkpoint_file`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from ..checkpoint import CheckpointError, read_checkpoint_file


def capture_rng() -> dict:
    """Every RNG a loop touches (python, numpy, torch CPU and CUDA), as tensors / ints / lists
    (``weights_only``-safe)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Put every RNG back where :func:`capture_rng` found it."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_run_state(path: str | os.PathLike, key: str, value: str, refusal: str) -> dict:
    """A run's checkpoint at ``path`` (tensors and plain containers only; nothing is executed), which
    must carry ``key: value``; otherwise :class:`CheckpointError` ``"<path> <refusal>"``."""
    state = read_checkpoint_file(path)
    if not isinstance(state, dict) or state.get(key) != value:
        raise CheckpointError(f"{path} {refusal}")
    return state


def settings_diff(saved: Mapping, now: Mapping, ignore: Iterable[str] = ()) -> dict:
    """``{setting: (saved, now)}`` for every setting of either mapping that differs, ``ignore`` left out."""
    ignore = set(ignore)
    keys = list(now) + [k for k in saved if k not in now]
    return {k: (saved.get(k), now.get(k)) for k in keys if k not in ignore and saved.get(k) != now.get(k)}


def check_resumable(path: str | os.PathLike, saved: Mapping, now: Mapping, *, what: str = "settings",
                    ignore: Iterable[str] = (), hint: str = "", error: type[Exception] = ValueError) -> None:
    """Refuse to resume the run saved in ``path`` when a setting that must match differs between the
    checkpoint (``saved``) and the resumed run (``now``); ``ignore`` names those a resume may change.

    The error (``error``) names every differing setting with both values, then ``hint``.
    """
    diff = settings_diff(saved, now, ignore)
    if diff:
        raise error(f"cannot resume {path}: {what} differ (saved, now): {diff}" + (f"; {hint}" if hint else ""))
