"""Learning-rate schedules computed per step by the loops that set the rate themselves (detection
training, architecture search); the classification trainer uses timm's schedulers instead."""

from __future__ import annotations

import math
from collections.abc import Sequence


def warmup_factor(iteration: int, warmup_iters: int, start_factor: float) -> float:
    """The linear warm-up's multiplier: ``start_factor`` at iteration 0, rising to 1 at ``warmup_iters``."""
    if iteration >= warmup_iters:
        return 1.0
    alpha = iteration / warmup_iters
    return start_factor * (1 - alpha) + alpha


def step_decay(base_lr: float, epoch: int, milestones: Sequence[int], gamma: float, iteration: int,
               warmup_iters: int, warmup_start: float) -> float:
    """``base_lr`` × ``gamma`` per milestone (epochs) passed, after a linear warm-up from
    ``warmup_start`` × over the first ``warmup_iters`` iterations (the detection 1× schedule)."""
    lr = base_lr * gamma ** sum(epoch >= m for m in milestones)
    if iteration < warmup_iters:
        lr *= warmup_factor(iteration, warmup_iters, warmup_start)
    return lr


def warmup_cosine(base_lr: float, step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps`` (step 0 already at ``base_lr / warmup_steps``),
    then cosine to 0 at ``total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * base_lr * (1 + math.cos(math.pi * (step - warmup_steps) / span))
