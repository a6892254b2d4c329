"""Real photographs that ship with the installed libraries (nothing is downloaded): scikit-learn's two
sample images and matplotlib's Grace Hopper portrait. Checks that must see natural images — not only
noise — use these."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def sample_photo_paths() -> list[Path]:
    """``china.jpg`` and ``flower.jpg`` (427×640, scikit-learn) and ``grace_hopper.jpg`` (600×512, matplotlib)."""
    import matplotlib.cbook
    import sklearn.datasets

    sklearn_images = Path(sklearn.datasets.__file__).parent / "images"
    return [sklearn_images / "china.jpg", sklearn_images / "flower.jpg",
            Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]


def sample_photos() -> list[Image.Image]:
    """The photos of :func:`sample_photo_paths`, decoded to RGB."""
    photos = []
    for path in sample_photo_paths():
        with Image.open(path) as image:
            photos.append(image.convert("RGB"))
    return photos
