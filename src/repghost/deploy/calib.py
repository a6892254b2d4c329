"""Labelled image sets for int8 calibration and the fp32-vs-int8 accuracy check.

Images go through the model's own :class:`~repghost.preprocess.Preprocess` (the one its file
records), so calibration ranges and accuracies are those of the inputs the model really gets.
Sources, read through the data package (the same scanner, decoder and digits split as training):

- ``"digits"``: the built-in set; calibration images from its train split, the held-out check on
  its val split — the split ``repghost train`` validates on, so the fp32 figure equals ``eval``'s.
- an ImageFolder root with ``train/`` and ``val/``: the same, from those folders;
- a folder of class folders (``root/<class>/<image>``): split into disjoint seeded parts.

Unreadable images are skipped and counted, as in training and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.datasets import DIGITS, RawDataset, digits, scan_image_folder
from ..preprocess import Preprocess


@dataclass(frozen=True)
class ImageSplit:
    calib: np.ndarray            # (N, 3, H, W) float32, preprocessed
    held_out: np.ndarray         # (M, 3, H, W)
    held_out_labels: np.ndarray  # (M,) int64
    classes: list[str]
    source: str = ""
    skipped: list[str] = field(default_factory=list)  # unreadable images, by path

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _pools(source: str, seed: int) -> tuple[RawDataset, RawDataset]:
    """(calibration pool, held-out pool) of ``source``."""
    if source == DIGITS:
        return digits("train"), digits("val")
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration data not found: {root} (give 'digits' or an image folder)")
    if (root / "train").is_dir() and (root / "val").is_dir():
        calib, held = scan_image_folder(root / "train"), scan_image_folder(root / "val")
        if calib.classes != held.classes:
            raise ValueError(f"{root}: train and val class folders differ")
        return calib, held
    whole = scan_image_folder(root)
    order = np.random.default_rng(seed).permutation(len(whole))
    half = len(order) // 2

    def part(idx):
        return RawDataset([whole.items[i] for i in idx], [whole.targets[i] for i in idx], whole.classes, whole.root)

    return part(order[:half]), part(order[half:])


def _read(raw: RawDataset, indices, transform, limit: int | None, skipped: list[str]):
    """Up to ``limit`` preprocessed images of ``raw`` at ``indices``, unreadable ones skipped and noted."""
    images, labels = [], []
    for i in indices:
        if limit is not None and len(images) >= limit:
            break
        item = raw.items[i]
        try:
            if isinstance(item, str):
                with Image.open(item) as f:
                    item = f.convert("RGB")
            images.append(transform(item).numpy())
        except Exception:  # truncated, not an image, unreadable: skipped and counted, not fatal
            skipped.append(str(raw.items[i]))
            continue
        labels.append(raw.targets[i])
    return images, labels


def load_split(source: str, preprocess: Preprocess, num_calib: int = 64, num_held_out: int | None = None,
               seed: int = 0) -> ImageSplit:
    """``num_calib`` calibration images and the held-out images (all of them, or a seeded
    ``num_held_out``) with labels, preprocessed by ``preprocess``."""
    calib_pool, held_pool = _pools(str(source), seed)
    transform, skipped = preprocess.transform(), []
    rng = np.random.default_rng(seed)
    calib, _ = _read(calib_pool, rng.permutation(len(calib_pool)), transform, num_calib, skipped)
    held_order = range(len(held_pool)) if num_held_out is None else rng.permutation(len(held_pool))
    held, labels = _read(held_pool, held_order, transform, num_held_out, skipped)
    if not calib or not held:
        raise ValueError(f"{source}: no readable {'calibration' if not calib else 'held-out'} image "
                         f"({len(skipped)} unreadable)")
    return ImageSplit(np.stack(calib).astype(np.float32), np.stack(held).astype(np.float32),
                      np.array(labels, dtype=np.int64), list(calib_pool.classes), str(source), skipped)


def describe(split: ImageSplit) -> str:
    text = f"{len(split.calib)} calibration and {len(split.held_out)} held-out images from {split.source}"
    return text + (f" ({len(split.skipped)} unreadable skipped)" if split.skipped else "")
