"""Where the images come from: an ImageFolder directory, or scikit-learn's bundled digits.

Both give a list of raw samples (a PIL image, or a path to one) and the class names; transforms
and corrupt-image handling live in :mod:`repghost.data.loader`, so the two sources share them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..names import DIGITS  # the built-in dataset's name (``data: digits`` in a recipe, or no ``--data``)

#: Fraction of the 1,797 digits held out for validation (stratified, fixed seed).
DIGITS_VAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


class DataError(ValueError):
    """A dataset that cannot be trained on (missing split, empty class, no images)."""


@dataclass
class RawDataset:
    """Samples before any transform: ``items`` are paths (ImageFolder) or PIL images (digits)."""
    items: list
    targets: list[int]
    classes: list[str]
    root: str = ""
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMG_EXTENSIONS)


def scan_image_folder(split_dir: Path) -> RawDataset:
    """Check a folder of class folders (``split_dir/<class>/<image>``) and list its images."""
    if not split_dir.is_dir():
        raise DataError(f"missing split: {split_dir} does not exist (expected {split_dir.parent}/train/<class>/<image> "
                        f"and {split_dir.parent}/val/<class>/<image>)")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        stray = [e.name for e in os.scandir(split_dir) if e.is_file()][:5]
        raise DataError(f"no class folders in {split_dir}" + (f" (found files {stray}; put each class's images "
                                                               "in its own sub-folder)" if stray else ""))
    items, targets, empty = [], [], []
    for idx, name in enumerate(classes):
        files = sorted(str(p) for p in (split_dir / name).rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [f for f in files if _is_image(f)]
        if not images:
            empty.append(f"{name} ({len(files)} files, none an image)" if files else f"{name} (empty)")
        items += images
        targets += [idx] * len(images)
    if empty:
        raise DataError(f"class folders without images in {split_dir}: {', '.join(empty)}; supported extensions: "
                        f"{', '.join(IMG_EXTENSIONS)}")
    return RawDataset(items, targets, classes, root=str(split_dir))


def image_folder(root: str | os.PathLike, split: str) -> RawDataset:
    """One split of an ImageFolder tree, checked before anything is trained."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data directory not found: {root}")
    return scan_image_folder(root / split)


def digits(split: str) -> RawDataset:
    """scikit-learn's 1,797 handwritten 8×8 digits (shipped with it, no download), as RGB PIL images.

    The split is stratified with a fixed seed, so every run and every process sees the same one.
    Upsampling to the training resolution is the transforms' job (RandomResizedCrop / Resize).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "val"):
        raise DataError(f"the digits set has splits 'train' and 'val', not {split!r}")
    bunch = load_digits()
    pixels = np.clip(bunch.images * (255.0 / 16.0), 0, 255).astype(np.uint8)  # values are 0..16
    index = np.arange(len(pixels))
    train_idx, val_idx = train_test_split(index, test_size=DIGITS_VAL_FRACTION, random_state=DIGITS_SPLIT_SEED,
                                          stratify=bunch.target)
    chosen = np.sort(train_idx if split == "train" else val_idx)
    items = [Image.fromarray(pixels[i], mode="L").convert("RGB") for i in chosen]
    return RawDataset(items, [int(bunch.target[i]) for i in chosen], [str(c) for c in bunch.target_names],
                      root=DIGITS)


def load_split(data: str | None, split: str) -> RawDataset:
    """``data`` is an ImageFolder root, or ``None`` / ``"digits"`` for the built-in set."""
    return digits(split) if data in (None, DIGITS) else image_folder(data, split)


def build_datasets(data: str | None, splits=("train", "val")) -> dict[str, RawDataset]:
    """Load and check every split up front; train and val must name the same classes."""
    out = {split: load_split(data, split) for split in splits}
    if "train" in out and "val" in out and out["train"].classes != out["val"].classes:
        a, b = set(out["train"].classes), set(out["val"].classes)
        raise DataError(f"train and val classes differ: only in train {sorted(a - b)[:8]}, "
                        f"only in val {sorted(b - a)[:8]}")
    return out


def recorded_root(data: str | None, source: str, remedy: str) -> str | None:
    """A data path read back from a file (``source``: a checkpoint, a config). Files record absolute
    paths; an older file's relative one is used when it resolves from here, else this raises a
    :class:`DataError` that says the path is relative and what to do instead (``remedy``)."""
    if data in (None, DIGITS) or Path(data).is_absolute() or Path(data).is_dir():
        return data
    raise DataError(f"{source} records its data as the relative path {data!r}, which is not a directory from here "
                    f"({Path.cwd()}): it is relative to the directory training ran in; {remedy}")


def describe_data(data: str | None) -> str:
    return "scikit-learn digits (built in)" if data in (None, DIGITS) else str(data)
