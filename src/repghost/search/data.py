"""The search's data: the training split divided into the images that train the weights and those held
out for the reward, and minibatches (with their flips) as a function of the step, so a resumed search
sees the same ones as an uninterrupted search."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import worker_ignores_stop
from ..detection.data import CocoDetection, collate, hflip
from ..detection.synthetic import annotation_path, image_dir
from .config import SearchConfig, SearchError


def open_datasets(config: SearchConfig) -> tuple[CocoDetection, list[int], list[int]]:
    """The training split and its (weights, reward) index split, a seeded ``reward_fraction`` held out."""
    data = config.data
    if data.root is not None:
        root = Path(data.root)
        ann = annotation_path(root, data.train_split)
        if not root.is_dir():
            raise SearchError(f"data root {root} does not exist; pass a COCO-layout folder (annotations/"
                              f"instances_{data.train_split}.json + {data.train_split}/), or leave --data out for "
                              "the built-in synthetic set")
        if not ann.is_file():
            raise SearchError(f"{root} has no {ann.relative_to(root)}; a COCO-layout root holds annotations/"
                              f"instances_<split>.json and <split>/ (choose the split with --train-split)")
    root = data.resolve_root()
    dataset = CocoDetection(annotation_path(root, data.train_split), image_dir(root, data.train_split), train=True,
                            flip=False, skip_missing_images=data.skip_missing_images)
    order = np.random.default_rng([config.seed, 7]).permutation(len(dataset))
    n_reward = int(round(len(dataset) * config.reward_fraction))
    reward, weights = sorted(order[:n_reward].tolist()), sorted(order[n_reward:].tolist())
    return dataset, weights, reward


# -- minibatches as a function of the step -------------------------------------------------------
class StepBatches(torch.utils.data.Sampler):
    """Minibatch ``step`` (this rank's share) of a stream of seeded epochs over ``pool``, for the steps
    ``start…stop-1``: resuming at any step gives the same minibatches as running through."""

    def __init__(self, pool: Sequence[int], global_batch: int, seed: Sequence[int], start: int, stop: int,
                 rank: int = 0, world_size: int = 1, what: str = "images"):
        if len(pool) < global_batch:
            raise SearchError(f"{len(pool)} {what} for a global minibatch of {global_batch}; use a smaller "
                              "--batch-size or more data")
        self.pool, self.global_batch, self.seed = np.asarray(pool), global_batch, list(seed)
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size
        self.per_epoch = len(pool) // global_batch

    def batch(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.per_epoch)
        order = self.pool[np.random.default_rng([*self.seed, epoch]).permutation(len(self.pool))]
        return order[k * self.global_batch:(k + 1) * self.global_batch][self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self.batch(step) for step in range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def flips(images, targets, seed: Sequence[int], step: int):
    """Horizontal flips of half the images, chosen by (seed, step)."""
    coins = np.random.default_rng([*seed, step]).random(len(images)) < 0.5
    pairs = [hflip(i, t) if c else (i, t) for i, t, c in zip(images, targets, coins, strict=True)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def step_loader(dataset, sampler: StepBatches, workers: int) -> Iterator:
    return iter(DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                           worker_init_fn=worker_ignores_stop))
