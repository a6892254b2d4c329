"""COCO-format detection data: an annotation json + an image folder, checked before training.

Real annotation files have faults. Each one is either a clear error (it would silently corrupt
training or evaluation) or skipped and counted in :class:`AnnotationReport`:

- annotation json that is not COCO (missing keys, duplicate image ids, annotations pointing at
  unknown images or categories, malformed boxes, images without a size) → error;
- image files that do not exist → error naming them, or skipped and counted with
  ``skip_missing_images=True``;
- boxes reaching outside the image → clipped to it and counted; boxes entirely outside it and
  degenerate boxes (zero or negative width / height) → skipped and counted;
- crowd annotations → kept for evaluation, left out of training targets (counted);
- images with no usable annotation → counted; dropped for training (nothing to learn), kept
  for evaluation (false positives there count);
- an unreadable image → skipped when it is loaded, its path reported and counted (as in classification).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from .config import DataConfig  # noqa: F401  (re-exported: search and the CLI take it from here)


class UnreadableImage(OSError):
    """An image file that cannot be decoded; ``path`` names it."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


class DetectionDataError(ValueError):
    """A detection dataset that cannot be used as it is."""


@dataclass
class AnnotationReport:
    """What validation found (and did) in one annotation file."""

    images: int = 0
    annotations: int = 0
    missing_images: list[str] = field(default_factory=list)
    clipped_boxes: int = 0
    outside_boxes: int = 0
    degenerate_boxes: int = 0
    crowd_annotations: int = 0
    images_without_annotations: int = 0
    dropped_images: int = 0

    def summary(self) -> str:
        parts = [f"{self.images} images, {self.annotations} annotations"]
        for label, count in (("missing image files skipped", len(self.missing_images)),
                             ("boxes clipped to the image", self.clipped_boxes),
                             ("boxes outside the image skipped", self.outside_boxes),
                             ("degenerate boxes skipped", self.degenerate_boxes),
                             ("crowd annotations (evaluation only)", self.crowd_annotations),
                             ("images without annotations", self.images_without_annotations),
                             ("images dropped for training", self.dropped_images)):
            if count:
                parts.append(f"{count} {label}")
        return "; ".join(parts)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DetectionDataError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DetectionDataError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise DetectionDataError(f"{path} is not a COCO annotation file: its top level is a "
                                 f"{type(data).__name__}, expected an object with images, annotations, categories")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DetectionDataError(f"{path} is not a COCO annotation file: no {', '.join(missing)} list")
    for key in ("images", "annotations", "categories"):
        bad = next((i for i, entry in enumerate(data[key]) if not isinstance(entry, dict)), None)
        if bad is not None:
            raise DetectionDataError(f"{path}: {key}[{bad}] is a {type(data[key][bad]).__name__}, expected an object")
    return data


def _clean_box(bbox, width: int, height: int) -> tuple[str, list[float] | None]:
    """(``"ok"`` | ``"clipped"`` | ``"outside"`` | ``"degenerate"``, the clipped xywh box or None)."""
    x, y, w, h = (float(v) for v in bbox)
    if not (w > 0 and h > 0):  # also catches NaN
        return "degenerate", None
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        return "outside", None
    clipped = [x1, y1, x2 - x1, y2 - y1]
    return ("ok" if (x1, y1, x2, y2) == (x, y, x + w, y + h) else "clipped"), clipped


def validate_annotations(data: dict, images_root: Path, source: str, skip_missing_images: bool,
                         drop_empty: bool) -> tuple[dict, AnnotationReport]:
    """A cleaned copy of a COCO dataset dict and the report of what was changed (see module doc)."""
    report = AnnotationReport()
    images, categories = {}, {c.get("id") for c in data["categories"]}
    for img in data["images"]:
        if not all(k in img for k in ("id", "file_name", "width", "height")):
            raise DetectionDataError(f"{source}: image entry {img} lacks id, file_name, width or height")
        if img["id"] in images:
            raise DetectionDataError(f"{source}: image id {img['id']} appears twice")
        images[img["id"]] = img
    missing = [img["file_name"] for img in images.values() if not (images_root / img["file_name"]).is_file()]
    if missing and not skip_missing_images:
        raise DetectionDataError(
            f"{len(missing)} of {len(images)} image files listed in {source} are missing under {images_root}: "
            f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''} "
            "(fix the paths, or skip them with skip_missing_images=True / --skip-missing-images)")
    report.missing_images = missing
    missing_set = set(missing)
    skipped_ids = {i for i, img in images.items() if img["file_name"] in missing_set}
    images = {i: img for i, img in images.items() if i not in skipped_ids}

    annotations, usable = [], set()
    for ann in data["annotations"]:
        ann_id = ann.get("id")
        if ann.get("image_id") in skipped_ids:
            continue
        if ann.get("image_id") not in images:
            raise DetectionDataError(f"{source}: annotation {ann_id} refers to unknown image id {ann.get('image_id')}")
        if ann.get("category_id") not in categories:
            raise DetectionDataError(f"{source}: annotation {ann_id} has unknown category id {ann.get('category_id')}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DetectionDataError(f"{source}: annotation {ann_id} has a malformed bbox {bbox!r} (want [x, y, w, h])")
        img = images[ann["image_id"]]
        status, box = _clean_box(bbox, img["width"], img["height"])
        if box is None:
            setattr(report, f"{status}_boxes", getattr(report, f"{status}_boxes") + 1)
            continue
        report.clipped_boxes += status == "clipped"
        ann = {**ann, "bbox": box, "iscrowd": int(ann.get("iscrowd", 0))}
        ann.setdefault("area", box[2] * box[3])
        if ann["iscrowd"]:
            report.crowd_annotations += 1
        else:
            usable.add(ann["image_id"])
        annotations.append(ann)

    empty = [i for i in images if i not in usable]
    report.images_without_annotations = len(empty)
    if drop_empty:
        report.dropped_images = len(empty)
        images = {i: img for i, img in images.items() if i in usable}
        annotations = [a for a in annotations if a["image_id"] in usable]
    if not images:
        raise DetectionDataError(f"{source}: no usable images left ({report.summary()})")
    report.images, report.annotations = len(images), len(annotations)
    cleaned = {**data, "images": list(images.values()), "annotations": annotations}
    return cleaned, report


def quiet_coco(dataset: dict) -> COCO:
    """A pycocotools ``COCO`` index over an in-memory dataset dict, without its progress prints."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """(image tensor in [0, 1], target dict) pairs from a COCO annotation file and image folder.

    Targets are what torchvision detectors take: ``boxes`` (xyxy, float), ``labels`` (1…K, the
    categories in id order), ``image_id``, and ``masks`` (N×H×W uint8) when ``masks=True``.
    ``train=True`` drops images without annotations and flips horizontally at random (``flip=False``:
    the caller flips, e.g. the architecture search, whose flips are a function of the step).
    ``self.coco`` indexes the cleaned annotations, which evaluation scores against.
    """

    def __init__(self, ann_file: str | os.PathLike, images_root: str | os.PathLike, train: bool = False,
                 masks: bool = False, skip_missing_images: bool = False, flip: bool | None = None):
        self.ann_file, self.images_root = Path(ann_file), Path(images_root)
        self.train, self.masks = train, masks
        self.flip = train if flip is None else flip
        data = _read_json(self.ann_file)
        cleaned, self.report = validate_annotations(data, self.images_root, str(self.ann_file),
                                                    skip_missing_images, drop_empty=train)
        self.coco = quiet_coco(cleaned)
        self.ids = sorted(self.coco.imgs)
        self.category_ids = sorted(self.coco.cats)
        self.category_names = [self.coco.cats[c].get("name", str(c)) for c in self.category_ids]
        self._label_of = {cat: i + 1 for i, cat in enumerate(self.category_ids)}
        if masks:
            self._check_segmentations()

    @property
    def num_classes(self) -> int:
        """Object categories + background, as torchvision's detectors count them."""
        return len(self.category_ids) + 1

    def label_to_category(self, label: int) -> int:
        return self.category_ids[label - 1]

    def _check_segmentations(self) -> None:
        bare = [a["id"] for a in self.coco.dataset["annotations"] if not a.get("segmentation")]
        if bare:
            raise DetectionDataError(
                f"{self.ann_file}: {len(bare)} annotations have no segmentation (ids {bare[:5]}); "
                "Mask R-CNN needs masks — use a box-only detector (retinanet, ssdlite) for this data")

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, image_id: int) -> Image.Image:
        info = self.coco.imgs[image_id]
        path = self.images_root / info["file_name"]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise UnreadableImage(f"cannot read image {path}: {err}", str(path)) from None
        if image.size != (info["width"], info["height"]):
            raise DetectionDataError(f"image {path} is {image.size[0]}x{image.size[1]} but {self.ann_file} "
                                     f"says {info['width']}x{info['height']}")
        return image

    def target(self, image_id: int) -> dict[str, torch.Tensor]:
        anns = [a for a in self.coco.imgToAnns[image_id] if not a["iscrowd"]]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        target = {"boxes": boxes, "labels": torch.tensor([self._label_of[a["category_id"]] for a in anns],
                                                         dtype=torch.int64),
                  "image_id": torch.tensor(image_id)}
        if self.masks:
            info = self.coco.imgs[image_id]
            masks = [self.coco.annToMask(a) for a in anns]
            target["masks"] = torch.from_numpy(np.stack(masks) if masks else
                                               np.zeros((0, info["height"], info["width"]), np.uint8))
        return target

    def __getitem__(self, index: int):
        """``(image, target)``, or ``(None, path)`` for an image that cannot be decoded (skipped)."""
        image_id = self.ids[index]
        try:
            image = pil_to_tensor(self.load_image(image_id)).float().div_(255)
        except UnreadableImage as err:
            return None, err.path
        target = self.target(image_id)
        if self.flip and torch.rand(()) < 0.5:
            image, target = hflip(image, target)
        return image, target


def hflip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Mirror an image and its boxes / masks left–right."""
    width = image.shape[-1]
    target = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    target["boxes"] = boxes
    if "masks" in target:
        target["masks"] = target["masks"].flip(-1)
    return image.flip(-1), target


def collate(batch):
    """Detection batches are lists (images differ in size, targets in length):
    ``(images, targets, unreadable paths)``, the unreadable samples dropped."""
    good = [(image, target) for image, target in batch if image is not None]
    bad = [path for image, path in batch if image is None]
    images, targets = (tuple(x) for x in zip(*good, strict=True)) if good else ((), ())
    return images, targets, bad


class SeededFlips(Dataset):
    """The training set with each image's horizontal flip drawn from (seed, epoch, index) rather than
    from a loader worker's RNG: an epoch sees the same images however many workers load them and
    wherever a resumed epoch starts."""

    def __init__(self, dataset: CocoDetection, seed: int):
        dataset.flip = False  # flipped here instead
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        if image is not None and np.random.default_rng([self.seed, self.epoch, index]).random() < 0.5:
            image, target = hflip(image, target)
        return image, target
