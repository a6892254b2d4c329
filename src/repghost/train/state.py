"""Training checkpoints: everything needed to continue a run bit for bit, as tensors and plain containers.

A checkpoint holds model, EMA, optimizer, scheduler and grad-scaler state, the position
(epoch, step within the epoch, global step), the best result so far, every RNG state (python,
numpy, torch CPU and CUDA) and the resolved config. It is written atomically (temporary file in
the same directory, then ``os.replace``) and read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ..checkpoint import read_training_checkpoint


def capture_rng() -> dict:
    """Every RNG the training loop touches, as tensors / ints / lists (``weights_only``-safe)."""
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
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plain_scheduler_state(scheduler) -> dict:
    """timm schedulers keep their settings in ``__dict__``; keep what ``weights_only`` can load."""
    plain = (int, float, str, bool, type(None))

    def ok(v):
        if isinstance(v, (list, tuple)):
            return all(ok(x) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and ok(x) for k, x in v.items())
        return isinstance(v, plain)

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in scheduler.state_dict().items() if ok(v)}


def load_training_checkpoint(path: str | os.PathLike) -> dict:
    """Read a training checkpoint (tensors and plain containers only; nothing is executed). Its layout is
    part of the file contract: :func:`repghost.checkpoint.training_checkpoint` writes it."""
    return read_training_checkpoint(path)
