"""Small on-disk datasets for the training and data tests (made in tmp dirs, nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230)]


def make_image_folder(root: Path, per_class: int = 12, val_per_class: int = 4, size: int = 20,
                      classes: int = 3, seed: int = 0) -> Path:
    """``root/{train,val}/class_k/*.png``: class k is a noisy square of colour k (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for k in range(classes):
            folder = root / split / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                a, b = rng.integers(0, size // 2, 2)
                img[a:a + size // 2, b:b + size // 2] = COLOURS[k % len(COLOURS)]
                Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root
