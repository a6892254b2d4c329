"""A tiny synthetic COCO-format dataset: coloured shapes on textured backgrounds.

Written to disk as a real COCO dataset (``annotations/instances_<split>.json`` + ``<split>/*.png``)
so it goes through the same loader, validation and pycocotools evaluation as COCO itself. Each
object has a box (the tight box of its mask), an RLE segmentation of exactly the pixels drawn and
its area; shapes never overlap, so every mask is fully visible. Deterministic by ``seed``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageDraw

from ..io import atomic_path, atomic_write_json
from ..progress import progress
from .config import BENCHMARK_SIZES

CATEGORIES = [
    {"id": 1, "name": "rectangle", "supercategory": "shape"},
    {"id": 2, "name": "ellipse", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
]
SPLITS = ("train", "val")
_MANIFEST = "synthetic.json"


def annotation_path(root: str | os.PathLike, split: str) -> Path:
    """Where a COCO-layout dataset keeps ``split``'s annotations (COCO 2017 naming)."""
    return Path(root) / "annotations" / f"instances_{split}.json"


def image_dir(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / split


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour blotches + stripes at a random angle + pixel noise, HxWx3 float in [0, 255]."""
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.uint8)
    blotches = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(6, 24)
    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    image = blotches + 25 * stripes[..., None] + rng.normal(0, 8, size=(size, size, 3))
    return np.clip(image, 0, 255)


def _polygon(rng: np.random.Generator, shape: str, x0: float, y0: float, w: float, h: float) -> list[tuple]:
    cx, cy = x0 + w / 2, y0 + h / 2
    if shape == "rectangle":
        return [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    if shape == "ellipse":
        return [(cx + w / 2 * math.cos(t), cy + h / 2 * math.sin(t))
                for t in np.linspace(0, 2 * math.pi, 32, endpoint=False)]
    apex = x0 + rng.uniform(0.2, 0.8) * w  # triangle: apex on the top edge, base on the bottom
    return [(apex, y0), (x0 + w, y0 + h), (x0, y0 + h)]


def _overlaps(box, boxes, margin: float = 3.0) -> bool:
    x, y, w, h = box
    return any(x < bx + bw + margin and bx < x + w + margin and y < by + bh + margin and by < y + h + margin
               for bx, by, bw, bh in boxes)


def _make_image(rng: np.random.Generator, size: int, max_objects: int, min_obj: int, max_obj: int):
    """One image and its objects ``(category_id, mask)``."""
    image = _background(rng, size)
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            w, h = rng.uniform(min_obj, max_obj, size=2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            if not _overlaps((x, y, w, h), boxes):
                break
        else:
            continue
        boxes.append((x, y, w, h))
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        polygon = _polygon(rng, category["name"], x, y, w, h)
        mask_img = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask_img).polygon(polygon, fill=1)
        mask = np.asarray(mask_img, dtype=bool)
        if mask.sum() < 16:
            continue
        colour = rng.uniform(0, 255, size=3)
        image[mask] = np.clip(colour + rng.normal(0, 6, size=(int(mask.sum()), 3)), 0, 255)
        objects.append((category["id"], mask))
    return Image.fromarray(image.astype(np.uint8)), objects


def _write_split(root: Path, split: str, count: int, size: int, image_rng: Callable[[int], np.random.Generator],
                 max_objects: int, min_obj: int, max_obj: int, first_ann_id: int) -> int:
    """Write ``count`` images of ``split`` (image ``i`` drawn from ``image_rng(i)``) and its annotations;
    returns the next free annotation id."""
    out_dir = image_dir(root, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, ann_id = [], [], first_ann_id
    for index in progress(range(count), desc=f"synthetic {split}", leave=False, line=True, enabled=count >= 200,
                          unit="img"):
        image, objects = _make_image(image_rng(index), size, max_objects, min_obj, max_obj)
        file_name = f"{index:06d}.png"
        with atomic_path(out_dir / file_name) as staged:  # Ctrl-C leaves no cut image behind
            image.save(staged, format="PNG")
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for category_id, mask in objects:
            ys, xs = np.nonzero(mask)
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            x0, y0 = int(xs.min()), int(ys.min())
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
                "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
                "area": int(mask.sum()),
                "segmentation": {"size": [size, size], "counts": rle["counts"].decode("ascii")},
            })
            ann_id += 1
    dataset = {"info": {"description": f"repghost synthetic shapes ({split})"}, "images": images,
               "annotations": annotations, "categories": CATEGORIES}
    path = annotation_path(root, split)
    atomic_write_json(path, dataset, indent=None)
    return ann_id


def make_synthetic_coco(root: str | os.PathLike, num_train: int = 256, num_val: int = 64, image_size: int = 128,
                        seed: int = 0, max_objects: int = 4, min_object: int = 16, max_object: int = 56) -> Path:
    """Write the synthetic dataset under ``root`` (train and val splits) and return ``root``.

    A directory already holding the same dataset (same arguments) is reused as is.
    """
    root = Path(root)
    params = dict(num_train=num_train, num_val=num_val, image_size=image_size, seed=seed,
                  max_objects=max_objects, min_object=min_object, max_object=max_object)
    manifest = root / _MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()) == params:
        return root
    if not 4 <= min_object <= max_object < image_size:
        raise ValueError(f"need 4 ≤ min_object ≤ max_object < image_size, got {min_object}, {max_object}, "
                         f"{image_size}")
    manifest.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    next_id = 1
    for split, count in zip(SPLITS, (num_train, num_val), strict=True):  # one stream through both splits
        next_id = _write_split(root, split, count, image_size, lambda _index: rng, max_objects, min_object,
                               max_object, next_id)
    atomic_write_json(manifest, params, indent=None)  # last: a half-written dataset is never reused
    return root


# -- the detection benchmark ------------------------------------------------------------------
#: The benchmark's splits: ``train``; ``search``, the held-out split a search may score architectures on;
#: ``test``, which only final comparisons touch (a study's reported AP).
BENCHMARK_SPLITS = ("train", "search", "test")
#: Bumped whenever the generator's output changes, so an older benchmark directory is regenerated.
BENCHMARK_VERSION = 1
_BENCHMARK_MANIFEST = "benchmark.json"



def benchmark_params(num_train: int = BENCHMARK_SIZES["num_train"], num_search: int = BENCHMARK_SIZES["num_search"],
                     num_test: int = BENCHMARK_SIZES["num_test"], image_size: int = BENCHMARK_SIZES["image_size"],
                     seed: int = 0, max_objects: int = 4, min_object: int = 16, max_object: int = 56) -> dict:
    """What defines a benchmark (the generator's version included), checked: its manifest records this."""
    if min(num_train, num_search, num_test) < 1:
        raise ValueError(f"every split needs ≥ 1 image, got train {num_train}, search {num_search}, test {num_test}")
    if not 4 <= min_object <= max_object < image_size:
        raise ValueError(f"need 4 ≤ min_object ≤ max_object < image_size, got {min_object}, {max_object}, "
                         f"{image_size}")
    return dict(version=BENCHMARK_VERSION, splits=dict(zip(BENCHMARK_SPLITS, (num_train, num_search, num_test),
                                                            strict=True)),
                image_size=image_size, seed=seed, max_objects=max_objects, min_object=min_object,
                max_object=max_object)


def _clear_benchmark(root: Path, recorded: dict) -> None:
    """Remove what an earlier (other or unfinished) benchmark wrote under ``root``, and nothing else."""
    for split in recorded.get("params", {}).get("splits", BENCHMARK_SPLITS):
        shutil.rmtree(image_dir(root, split), ignore_errors=True)
        annotation_path(root, split).unlink(missing_ok=True)


def make_detection_benchmark(root: str | os.PathLike, num_train: int = BENCHMARK_SIZES["num_train"],
                             num_search: int = BENCHMARK_SIZES["num_search"],
                             num_test: int = BENCHMARK_SIZES["num_test"],
                             image_size: int = BENCHMARK_SIZES["image_size"], seed: int = 0, max_objects: int = 4,
                             min_object: int = 16, max_object: int = 56) -> Path:
    """Write the detection benchmark under ``root`` (splits :data:`BENCHMARK_SPLITS`, COCO layout) and return it.

    Image ``i`` of split ``s`` is drawn from its own generator, seeded by ``(seed, s, i)``: the splits are
    disjoint draws, each split is the same whatever the other splits' sizes, and the whole set is the same
    bytes on every machine. A directory holding this benchmark with the same parameters is reused as is;
    one holding another version of it (other parameters, an older generator, or a generation that was
    cut short) is cleared and regenerated; a non-empty directory holding anything else is refused
    (``ValueError``), so nothing that is not the benchmark's is ever deleted.
    """
    root = Path(root)
    params = benchmark_params(num_train, num_search, num_test, image_size, seed, max_objects, min_object, max_object)
    manifest = root / _BENCHMARK_MANIFEST
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        if recorded == {"params": params, "complete": True}:
            return root
        _clear_benchmark(root, recorded)
    elif root.is_dir() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty and holds no detection benchmark; choose an empty or new directory")
    # Written first: a generation cut short is recognized as the benchmark's own and regenerated.
    atomic_write_json(manifest, {"params": params, "complete": False}, indent=None)
    next_id = 1
    for split_index, (split, count) in enumerate(params["splits"].items()):
        next_id = _write_split(root, split, count, image_size,
                               lambda index, s=split_index: np.random.default_rng([seed, s, index]),
                               max_objects, min_object, max_object, next_id)
    atomic_write_json(manifest, {"params": params, "complete": True}, indent=None)
    return root
