"""BatchNorm recalibration per architecture (Once-for-All's ``set_running_statistics``).

A super-network's BN running statistics are averages over every path trained, and a sub-network's
activations have other statistics than that mixture (a narrower or shallower path, another op):
scored with them, a path is judged on borrowed normalization. Before an architecture is scored,
its statistics are therefore re-estimated on a few training batches *of that path*: every BN's
running statistics are reset and then estimated as the cumulative average (PyTorch's
``momentum=None``) of the batch statistics over the ``N`` batches — the batch mean and the unbiased
batch variance, as ``nn.BatchNorm2d`` accumulates them — with the network in training mode and no
gradient. Nothing but BN buffers changes; :func:`preserved_bn_state` puts them back afterwards, so
scoring leaves the super-network exactly as it was (and the order architectures are scored in
does not matter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, forward: Callable[[object], object]) -> int:
    """Reset every BN's running statistics in ``model`` and re-estimate them by ``forward(batch)``
    (the path's forward pass, e.g. backbone and head of a detector) over ``batches``; returns how
    many batches it used. ``model`` goes back to the mode it was in; momenta are restored."""
    norms = batch_norms(model)
    momenta, was_training = [m.momentum for m in norms], model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch weighs the same
    model.train()
    count = 0
    try:
        for batch in batches:
            forward(batch)
            count += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    if count == 0:
        raise ValueError("BN recalibration needs at least one batch")
    return count


@contextmanager
def preserved_bn_state(model: nn.Module) -> Iterator[None]:
    """Restore every BN buffer of ``model`` (running statistics, batch counts) on exit."""
    norms = batch_norms(model)
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved, strict=True):
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)
