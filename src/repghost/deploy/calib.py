"""Small labelled image sets for int8 calibration and the fp32-vs-int8 accuracy check.

Two sources: an ImageFolder directory (``root/<class>/<image>``), preprocessed the evaluation way
(resize to size / crop_pct, centre crop, ImageNet mean / std), or the built-in digits set
(scikit-learn's 1,797 8×8 handwritten digits, upsampled and repeated to 3 channels). The images
are split into a calibration part and a disjoint held-out part.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import create_transform

from ..data.datasets import scan_image_folder
from ..models.family import IMAGENET_MEAN, IMAGENET_STD

MEAN = np.array(IMAGENET_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array(IMAGENET_STD, dtype=np.float32).reshape(1, 3, 1, 1)


@dataclass(frozen=True)
class ImageSplit:
    calib: np.ndarray          # (N, 3, H, W) float32, normalized
    held_out: np.ndarray       # (M, 3, H, W)
    held_out_labels: np.ndarray  # (M,) int64
    num_classes: int


def digits_images(size: int = 224, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The digits set (or ``indices`` of it) as normalized ``(N, 3, size, size)`` images and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)
    if indices is not None:
        images, labels = images[indices], labels[indices]
    x = torch.from_numpy(images)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return ((x.numpy() - MEAN) / STD).astype(np.float32), labels


def folder_images(root: str | os.PathLike, size: int = 224, crop_pct: float = 0.875,
                  limit: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Up to ``limit`` images (a seeded random pick) of a folder of class folders, preprocessed the
    evaluation way (timm's eval transform), with labels and the class count.

    An image that cannot be decoded raises ``ValueError`` naming its path.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    raw = scan_image_folder(root)
    transform = create_transform(input_size=size, is_training=False, crop_pct=crop_pct, interpolation="bilinear",
                                 mean=IMAGENET_MEAN, std=IMAGENET_STD)
    order = np.random.default_rng(seed).permutation(len(raw))[:limit]
    images = []
    for i in order:
        try:
            with Image.open(raw.items[i]) as f:
                images.append(transform(f.convert("RGB")).numpy())
        except Exception as err:
            raise ValueError(f"cannot read image {raw.items[i]}: {err}") from None
    labels = np.array([raw.targets[i] for i in order], dtype=np.int64)
    return np.stack(images).astype(np.float32), labels, len(raw.classes)


def load_split(source: str = "digits", num_calib: int = 64, num_held_out: int = 256, size: int = 224,
               seed: int = 0) -> ImageSplit:
    """``num_calib`` calibration images and ``num_held_out`` disjoint held-out images with labels.

    ``source`` is ``"digits"`` or the path of an ImageFolder directory.
    """
    total = num_calib + num_held_out
    if source == "digits":
        order = np.random.default_rng(seed).permutation(1797)[:total]
        images, labels = digits_images(size, order)
        num_classes = 10
    else:
        images, labels, num_classes = folder_images(source, size, limit=total, seed=seed)
    if len(images) < 2:
        raise ValueError(f"{source} has {len(images)} image(s); need at least 2 (calibration + held-out)")
    n_calib = min(num_calib, len(images) - 1)
    return ImageSplit(images[:n_calib], images[n_calib:], labels[n_calib:], num_classes)
