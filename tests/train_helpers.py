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


def sample_photos() -> dict[str, Image.Image]:
    """Real photos shipped with scikit-learn and matplotlib (no download), by name."""
    import matplotlib
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    photos = {Path(name).stem: Image.fromarray(image)
              for name, image in zip(bunch.filenames, bunch.images, strict=True)}
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(hopper) as image:
        photos["grace_hopper"] = image.convert("RGB")
    return photos


def make_photo_folder(root: Path, per_class: int = 30, val_per_class: int = 10, size: int = 40,
                      seed: int = 0) -> Path:
    """``root/{train,val}/<photo>/*.jpg``: one class per real photo (china, flower, grace_hopper), each
    image a random square crop of 40-80 % of the photo's short side, resized to ``size`` px. Train
    and val crops are drawn independently: val images are crops the model has not seen."""
    rng = np.random.default_rng(seed)
    for name, photo in sample_photos().items():
        width, height = photo.size
        for split, n in (("train", per_class), ("val", val_per_class)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                side = int(min(width, height) * rng.uniform(0.4, 0.8))
                x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
                crop = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BILINEAR)
                crop.save(folder / f"{i:03d}.jpg", quality=90)
    return root
