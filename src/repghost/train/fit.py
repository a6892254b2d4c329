"""Settings fitted to the data: what a recipe leaves unset is derived from the training set at start.

An ImageNet recipe is written for 1.28 M images, 300 epochs and 8 GPUs: 5 warm-up epochs, an EMA
decay of 0.9999 (an average over ~10,000 steps), batch 128 per process. On a folder of a hundred
photos trained for 10 epochs (a few dozen steps) that schedule never leaves its warm-up and the
EMA never moves away from the initial weights. So the ``folder`` recipe (the default with
``--data``) leaves the size-dependent settings unset (``null``) and :func:`fit_to_data` derives
them from the number of training images, the number of processes, the epochs and the CPUs:

- ``img_size``: the images' median short side, floored to a multiple of 32 (the models' stride),
  within 32..224 — small images are not upsampled to ImageNet's 224 (slower, nothing gained);
- ``batch_size``: the largest power of two in 8..128 that still gives an epoch at least 16 steps,
  and never more than the images one process gets — few images still make many updates, and
  BatchNorm never sees fewer than 8 images at once (unless the data set itself is smaller);
- ``warmup_epochs``: 10 % of the run, at most the ImageNet recipes' 5 epochs;
- ``ema_decay``: an average over the last ~10 % of the run's steps (decay 1 - 10 / steps), at most
  the ImageNet recipes' 0.9999; no EMA for a run under 20 steps, too short to average;
- ``workers``: the CPUs one process gets, less the one it trains on, at most 8.

A value given on the command line or in the recipe is never replaced. :func:`check_schedule` then
refuses a schedule that cannot work (a warm-up as long as the run, less than one batch of data)
and warns about one that wastes its EMA.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..data.datasets import RawDataset

#: The settings :func:`fit_to_data` derives when they are unset, in the order the start line lists them.
FITTED = ("img_size", "batch_size", "warmup_epochs", "ema_decay", "workers")

SIZE_MULTIPLE, MIN_SIZE, MAX_SIZE = 32, 32, 224
SIZE_SAMPLE = 64               # images whose size is read (header only) to pick img_size
MIN_BATCH, MAX_BATCH = 8, 128  # 128: the paper's batch per process
MIN_STEPS_PER_EPOCH = 16
WARMUP_FRACTION, MAX_WARMUP_EPOCHS = 0.1, 5.0
EMA_FRACTION, MAX_EMA_DECAY, MIN_EMA_STEPS = 0.1, 0.9999, 20
MAX_WORKERS = 8
#: The EMA is useless when, at the end of the run, it still holds more than this share of its first weights.
EMA_STALE_SHARE = 0.5


class ScheduleError(ValueError):
    """Settings that cannot train on this data; the command line (or recipe) must change."""


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def steps_per_epoch(num_images: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps in one epoch: each process gets ``ceil(n / world)`` images (DistributedSampler),
    and the last partial batch is dropped."""
    return math.ceil(num_images / world_size) // batch_size


def needs_fitting(cfg) -> bool:
    return any(getattr(cfg, name) is None for name in FITTED)


def fit_to_data(cfg, train: RawDataset | None = None, world_size: int | None = None, cpus: int | None = None):
    """``cfg`` with every unset (``None``) setting of :data:`FITTED` derived from the data; the reasons
    go to ``cfg.derived`` (setting → why), which the run logs in one line at start and keeps in its config.

    ``train`` is the training split (read from ``cfg.data`` when not given).
    """
    todo = [name for name in FITTED if getattr(cfg, name) is None]
    if not todo:
        return cfg
    # Imported here: the recipe module (and so every ``--help``) imports this one without torch.
    from ..data.datasets import load_split
    from ..run.distributed import world_size_from_env

    world = world_size or world_size_from_env()
    if train is None and any(name in todo for name in ("img_size", "batch_size", "ema_decay")):
        train = load_split(cfg.data, "train")
    values, reasons = {}, dict(cfg.derived)
    if "img_size" in todo:
        values["img_size"], reasons["img_size"] = _image_size(train)
    if "batch_size" in todo:
        values["batch_size"], reasons["batch_size"] = _batch_size(len(train), world)
    batch = values.get("batch_size", cfg.batch_size)
    if "warmup_epochs" in todo:
        warmup = min(MAX_WARMUP_EPOCHS, WARMUP_FRACTION * cfg.epochs)
        values["warmup_epochs"] = warmup
        reasons["warmup_epochs"] = f"{WARMUP_FRACTION:.0%} of {cfg.epochs} epochs, at most {MAX_WARMUP_EPOCHS:g}"
    if "ema_decay" in todo:
        values["ema_decay"], reasons["ema_decay"] = _ema_decay(cfg.epochs * steps_per_epoch(len(train), batch, world))
    if "workers" in todo:
        cpus = cpus or available_cpus()
        values["workers"] = min(MAX_WORKERS, max(0, cpus // world - 1))
        reasons["workers"] = f"{cpus} CPUs / {world} process(es), less the training one, at most {MAX_WORKERS}"
    return replace(cfg, **values, derived=reasons)


def describe_rules() -> str:
    """How each setting of :data:`FITTED` is derived, in one sentence (``--help``, docs)."""
    return (f"img_size = the images' median short side, floored to a multiple of {SIZE_MULTIPLE} within "
            f"{MIN_SIZE}..{MAX_SIZE}; batch_size = the largest power of two in {MIN_BATCH}..{MAX_BATCH} that gives "
            f"an epoch >= {MIN_STEPS_PER_EPOCH} steps, at most the images; warmup_epochs = "
            f"{WARMUP_FRACTION:.0%} of the epochs, at most {MAX_WARMUP_EPOCHS:g}; ema_decay = an average over the "
            f"last ~{EMA_FRACTION:.0%} of the steps (1 - {1 / EMA_FRACTION:g} / steps), at most {MAX_EMA_DECAY}, "
            f"none under {MIN_EMA_STEPS} steps; workers = the CPUs per process minus one, at most {MAX_WORKERS}")


def describe_derived(cfg) -> str:
    """The start line: each derived setting, its value and the figures it came from (the rules are
    :func:`describe_rules`, in ``--help`` and the README)."""
    parts = [f"{name} {getattr(cfg, name):g} ({why})" for name, why in cfg.derived.items()]
    return "derived from the data (a flag overrides any): " + ", ".join(parts)


def _image_size(train: RawDataset) -> tuple[int, str]:
    sides = []
    step = max(1, len(train) // SIZE_SAMPLE)
    for item in train.items[::step][:SIZE_SAMPLE]:
        try:
            size = item.size if hasattr(item, "size") else _header_size(item)
        except OSError:  # unreadable: the loader reports it later
            continue
        sides.append(min(size))
    if not sides:
        return MAX_SIZE, f"no readable image among {min(len(train), SIZE_SAMPLE)} sampled; the largest"
    median = statistics.median(sides)
    size = int(min(MAX_SIZE, max(MIN_SIZE, median // SIZE_MULTIPLE * SIZE_MULTIPLE)))
    return size, (f"median image side {median:g} px of {len(sides)} read, to a multiple of {SIZE_MULTIPLE} in "
                  f"{MIN_SIZE}..{MAX_SIZE}")


def _header_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:  # reads the header only
        return image.size


def _batch_size(num_images: int, world: int) -> tuple[int, str]:
    per_process = math.ceil(num_images / world)
    batch = MAX_BATCH
    while batch > MIN_BATCH and per_process // batch < MIN_STEPS_PER_EPOCH:
        batch //= 2
    batch = min(batch, per_process)
    steps = per_process // batch
    return batch, (f"{steps} steps per epoch from {num_images} images on {world} process(es); the largest power of 2 "
                   f"in {MIN_BATCH}..{MAX_BATCH} for >= {MIN_STEPS_PER_EPOCH} steps")


def _ema_decay(total_steps: int) -> tuple[float, str]:
    if total_steps < MIN_EMA_STEPS:
        return 0.0, f"off: {total_steps} steps are too few to average"
    decay = round(min(MAX_EMA_DECAY, 1.0 - 1.0 / (EMA_FRACTION * total_steps)), 6)
    return decay, f"an average over the last ~{EMA_FRACTION:.0%} of {total_steps} steps, at most {MAX_EMA_DECAY}"


def check_schedule(cfg, num_images: int, world_size: int) -> list[str]:
    """Refuse (:class:`ScheduleError`) settings that cannot train on ``num_images`` images; return
    warnings (one line each) for settings that train but waste part of the run."""
    steps = steps_per_epoch(num_images, cfg.batch_size, world_size)
    if steps == 0:
        raise ScheduleError(f"{num_images} training images is less than one global batch ({cfg.batch_size} × "
                            f"{world_size} process(es)); pass a smaller --batch-size, or leave it unset to derive "
                            "it from the data")
    if cfg.warmup_epochs >= cfg.epochs:
        raise ScheduleError(
            f"the warm-up ({cfg.warmup_epochs:g} epochs) is not shorter than the run ({cfg.epochs} epochs): the "
            "learning rate would never reach its peak nor decay; pass --warmup-epochs below "
            f"{cfg.epochs} (e.g. {WARMUP_FRACTION * cfg.epochs:g}) or more --epochs")
    warnings = []
    total = steps * cfg.epochs
    share = ema_initial_share(cfg.ema_decay, cfg.ema_warmup, total)
    if share > EMA_STALE_SHARE:
        warnings.append(
            f"EMA decay {cfg.ema_decay:g}{'' if cfg.ema_warmup else ' without warm-up'} averages over "
            f"~{_horizon(cfg.ema_decay)} steps but the run has {total}: at the end its weights are still "
            f"{share:.0%} the first step's, so the EMA scores are meaningless; pass --ema-decay "
            f"{max(0.0, 1 - 1 / (EMA_FRACTION * total)):.3g} or --ema-warmup true")
    return warnings


def _horizon(decay: float) -> str:
    return f"{1 / (1 - decay):.0f}" if decay < 1 else "infinitely many"


def ema_initial_share(decay: float, warmup: bool, total_steps: int) -> float:
    """How much of the first step's weights timm's EMA still holds after ``total_steps`` updates: the
    product of its per-step decays (0 without EMA; counting stops once it is down to EMA_STALE_SHARE)."""
    if decay <= 0:
        return 0.0
    from timm.utils import ModelEmaV3
    from torch import nn

    ema = ModelEmaV3(nn.Linear(1, 1), decay=decay, use_warmup=warmup)  # the run's EMA on a 2-number model
    share = 1.0
    for step in range(2, total_steps + 1):  # timm's first update copies the weights (decay 0): start after it
        share *= ema.get_decay(step)
        if share <= EMA_STALE_SHARE:  # fresh enough; the rest only shrinks it
            break
    return share
