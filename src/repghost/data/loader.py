"""Loaders whose randomness depends only on (seed, epoch, sample index), so resuming mid-epoch is exact.

* :class:`SampleDataset` seeds each sample's augmentation from ``(seed, epoch, index)`` in an
  isolated RNG scope: the result does not depend on the worker that loads it, on how many
  samples came before, or on the main process's RNG.
* :class:`SkipSampler` is a :class:`~torch.utils.data.DistributedSampler` (the same permutation
  per epoch for every rank count) that can start after the samples already consumed.
* Unreadable images are not fatal: the sample comes back as ``None`` with its path, and
  :func:`collate_skipping` drops it from the batch and passes the path on to be reported.
"""

from __future__ import annotations

import random
import signal
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, default_collate

from .datasets import RawDataset


def worker_ignores_stop(_worker_id: int = 0) -> None:
    """A data-loader ``worker_init_fn``: the worker ignores SIGINT and SIGTERM. A stop signal sent to the
    whole process group (a terminal's Ctrl-C, a scheduler or a machine stopping the job) reaches the workers
    too; PyTorch re-arms SIGTERM in each worker to kill it, and a worker killed mid-epoch makes the loop fail
    with "DataLoader worker ... is killed" instead of saving its checkpoint. The loop's process (its
    :class:`repghost.run.StopFlag`) stops, and the loader shuts its workers down."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def isolated_rng(seed: int):
    """Seed python, numpy and torch (CPU) RNGs for a block, then put their previous states back."""
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


class SampleDataset(Dataset):
    """A :class:`RawDataset` with a transform; returns ``(image, target, bad_path)``."""

    def __init__(self, raw: RawDataset, transform, seed: int = 0):
        self.raw, self.transform, self.seed = raw, transform, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, index: int):
        item, target = self.raw.items[index], self.raw.targets[index]
        if isinstance(item, str):
            try:
                with Image.open(item) as f:
                    image = f.convert("RGB")
            except Exception:  # truncated, not an image, unreadable: reported by path, not fatal
                return None, target, item
        else:
            image = item
        with isolated_rng(sample_seed(self.seed, self.epoch, index)):
            return self.transform(image), target, ""


def collate_skipping(batch):
    """Batch the good samples; return ``(images or None, targets or None, [bad paths])``."""
    good = [(x, y) for x, y, _ in batch if x is not None]
    bad = [path for x, _, path in batch if x is None]
    if not good:
        return None, None, bad
    images, targets = default_collate(good)
    return images, targets, bad


class SkipSampler(DistributedSampler):
    """DistributedSampler (seeded per epoch) that skips the first ``start`` samples of this rank."""

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = start

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class ShardSampler(Sampler):
    """Evaluation: every sample exactly once across ranks (no padding, so metrics are exact)."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0):
        self.indices = list(range(rank, size, num_replicas))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loader(dataset: SampleDataset, batch_size: int, train: bool, seed: int = 0, workers: int = 0,
                 rank: int = 0, world_size: int = 1, pin_memory: bool = False) -> DataLoader:
    """Train loaders shuffle per epoch and drop the last partial batch; eval loaders shard exactly.

    The loader gets its own generator so creating it never consumes the global torch RNG (which
    drives dropout and must resume exactly).
    """
    if train:
        sampler = SkipSampler(dataset, world_size, rank, shuffle=True, seed=seed)
    else:
        sampler = ShardSampler(len(dataset), world_size, rank)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=train,
                      collate_fn=collate_skipping, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=False,
                      worker_init_fn=worker_ignores_stop)
