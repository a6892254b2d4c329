"""Training checkpoints: everything needed to continue a run bit for bit, as tensors and plain containers.

A checkpoint holds model, EMA, optimizer, scheduler and grad-scaler state, the position
(epoch, step within the epoch, global step), the best result so far, every RNG state (python,
numpy, torch CPU and CUDA; see :mod:`repghost.run.state`) and the resolved config. It is written
atomically (temporary file in the same directory, then ``os.replace``) and read with
``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import os

from ..checkpoint import read_training_checkpoint


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
