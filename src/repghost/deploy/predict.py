"""``repghost predict`` / :func:`repghost.predict`: any model file on the user's images and videos.

The model is opened by :func:`repghost.deploy.runner.open_model` (any format, on its own runtime or
the one asked for) and every image goes through the file's own preprocessing contract. Sources are
image files, folders (searched recursively for images and videos), glob patterns, and video files
(decoded with PyAV, the ``video`` extra). A classifier gives the top-k classes with their
probabilities per image, printed and — with ``out`` — written as ``predictions.csv`` and
``predictions.jsonl``; a detector gives boxes (and Mask R-CNN's masks) above ``conf``, at most
``max_det`` per image, drawn on the image (``out/<name>.png``) and written as COCO-style results
(``out/detections.json``: ``bbox`` xywh in the image's pixels, ``category_id`` as the training
data numbers it). Every file is written whole (:mod:`repghost.io`); the tables are written once
the run is done. An unreadable image is skipped, named and counted.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..io import atomic_path, atomic_write_json, atomic_write_text
from ..progress import progress as progress_bar
from .runner import ModelRunner, open_model

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
#: ``pip install 'repghost[video]'`` installs the decoder (PyAV).
VIDEO_EXTRA = "video"


class PredictInputError(ValueError):
    """Sources that give nothing to predict on, or a video without a decoder: nothing was written."""


@dataclass(frozen=True)
class Source:
    path: Path
    video: bool = False


@dataclass
class PredictReport:
    task: str
    images: int = 0                                   # images (and video frames) predicted on
    skipped: list[str] = field(default_factory=list)  # unreadable images, by path
    seconds: float = 0.0
    records: list[dict] = field(default_factory=list)  # one per image: its top-k, or its detections
    written: list[Path] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        skipped = f"; {len(self.skipped)} unreadable skipped" if self.skipped else ""
        return f"{self.images} images in {self.seconds:.2f} s ({self.images_per_second:.1f} images/s){skipped}"


def collect_sources(sources: Sequence[str | os.PathLike]) -> list[Source]:
    """Every image and video the ``sources`` name, in order: a file as it is (a video by its
    suffix), a folder's images and videos (recursively, sorted), a glob pattern's matches.

    Raises :class:`PredictInputError` for a source that names nothing, and when all of them together
    hold no image or video.
    """
    found: list[Source] = []
    for source in sources:
        text = os.fspath(source)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES +
                           VIDEO_SUFFIXES)
            if not files:
                raise PredictInputError(f"{text}: no images or videos in this folder "
                                        f"({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES[:5])}, ...)")
        elif path.is_file():
            files = [path]
        elif glob.has_magic(text):
            files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not files:
                raise PredictInputError(f"{text}: the pattern matches no file")
        else:
            raise PredictInputError(f"source not found: {text}")
        found += [Source(p, p.suffix.lower() in VIDEO_SUFFIXES) for p in files]
    if not found:
        raise PredictInputError("no sources given")
    if any(s.video for s in found) and importlib.util.find_spec("av") is None:
        video = next(s.path for s in found if s.video)
        raise PredictInputError(f"{video} is a video and no video decoder is installed; install it with: "
                                f"pip install 'repghost[{VIDEO_EXTRA}]'")
    return found


def _read_image(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _frames(sources: list[Source]) -> Iterator[tuple[str, int | None, Image.Image | None]]:
    """``(name, frame index or None, image or None when unreadable)`` for every image and frame."""
    for source in sources:
        if not source.video:
            yield str(source.path), None, _read_image(source.path)
            continue
        import av

        try:
            container = av.open(str(source.path))
        except Exception:  # av's own error types for a file it cannot demux
            yield str(source.path), None, None
            continue
        with container:
            for index, frame in enumerate(container.decode(video=0)):
                yield str(source.path), index, frame.to_image().convert("RGB")


def _count(sources: list[Source]) -> int | None:
    """Images plus video frames, where the videos say how many they have."""
    total = 0
    for source in sources:
        if not source.video:
            total += 1
            continue
        import av

        try:
            with av.open(str(source.path)) as container:
                frames = container.streams.video[0].frames
        except Exception:
            frames = 0
        if not frames:
            return None
        total += frames
    return total


def predict(model: str | os.PathLike | ModelRunner, sources: Sequence[str | os.PathLike],
            out: str | os.PathLike | None = None, topk: int = 5, conf: float = 0.25, max_det: int = 100,
            runtime: str | None = None, threads: int | None = None, batch_size: int = 1, progress: bool = True,
            log: Callable[[str], None] | None = print) -> PredictReport:
    """Run ``model`` (a model file, or a :class:`ModelRunner` already open) on ``sources`` (see the
    module's docstring); ``log`` gets one line per image and the skipped images' names. With ``out``,
    the results (and a detector's annotated images) are written there.

    Raises :class:`PredictInputError` before any work when the sources hold nothing to predict on, a
    video needs the missing decoder, or ``out`` is a file; the runner's errors when the model file
    cannot be opened.
    """
    if topk < 1 or max_det < 1 or batch_size < 1 or not 0.0 <= conf <= 1.0:
        raise PredictInputError(f"need topk, max_det, batch_size >= 1 and conf in [0, 1], got topk {topk}, "
                                f"max_det {max_det}, batch_size {batch_size}, conf {conf}")
    found = collect_sources(sources)
    out = Path(out) if out is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise PredictInputError(f"{out} is a file; --out takes a directory")
    runner = model if isinstance(model, ModelRunner) else open_model(model, runtime=runtime, threads=threads)
    if runner.preprocess is None:
        raise PredictInputError(f"{runner.path} records no preprocessing (not written by repghost), so its "
                                "images cannot be prepared as it expects")
    report = PredictReport(runner.task)
    handle = (_Classifications(runner, topk) if runner.task == "classification" else
              _Detections(runner, conf, max_det, out))
    transform = runner.preprocess.transform()
    started = time.perf_counter()
    bar = progress_bar(total=_count(found), desc="predict", enabled=progress, unit="img")
    batch: list = []

    def flush():
        if not batch:
            return
        outputs = runner(torch.stack([x for x, *_ in batch]))
        for (_, name, frame, image), output in zip(batch, outputs, strict=True):
            record = handle.record(name, frame, image, output)
            report.records.append(record)
            if log is not None:
                log(handle.line(record))
        bar.update(len(batch))
        batch.clear()

    with bar:
        for name, frame, image in _frames(found):
            if image is None:
                report.skipped.append(name)
                if log is not None:
                    log(f"skipped unreadable image: {name}")
                bar.update(1)
                continue
            batch.append((transform(image), name, frame, image))
            if len(batch) == batch_size:
                flush()
        flush()
    report.images = len(report.records)
    report.seconds = time.perf_counter() - started
    if out is not None:
        report.written = handle.write(out, report.records)
    return report


def _frame_name(name: str, frame: int | None) -> str:
    return name if frame is None else f"{name}#{frame}"


class _Classifications:
    def __init__(self, runner: ModelRunner, topk: int):
        self.runner, self.topk = runner, topk

    def record(self, name: str, frame: int | None, image: Image.Image, logits: torch.Tensor) -> dict:
        probs = logits.float().softmax(-1)
        values, indices = probs.topk(min(self.topk, len(probs)))
        names = self.runner.class_names
        top = [{"index": int(i), "label": names[int(i)] if names else str(int(i)), "prob": round(float(p), 6)}
               for p, i in zip(values, indices, strict=True)]
        return {"source": name, "frame": frame, "top": top}

    def line(self, record: dict) -> str:
        return f"{_frame_name(record['source'], record['frame'])}: " + ", ".join(
            f"{t['label']} {t['prob']:.3f}" for t in record["top"])

    def write(self, out: Path, records: list[dict]) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["source", "frame", "rank", "index", "label", "prob"])
        for r in records:
            for rank, t in enumerate(r["top"], 1):
                writer.writerow([r["source"], "" if r["frame"] is None else r["frame"], rank, t["index"], t["label"],
                                 t["prob"]])
        lines = "".join(json.dumps(r) + "\n" for r in records)
        return [atomic_write_text(out / "predictions.csv", table.getvalue()),
                atomic_write_text(out / "predictions.jsonl", lines)]


class _Detections:
    """Boxes above ``conf`` (at most ``max_det``), in the original image's pixels; drawn as they come."""

    def __init__(self, runner: ModelRunner, conf: float, max_det: int, out: Path | None):
        self.runner, self.conf, self.max_det, self.out = runner, conf, max_det, out
        self.names: set[str] = set()
        self.masks: list[torch.Tensor | None] = []   # per record: Mask R-CNN's masks in the image's pixels

    def record(self, name: str, frame: int | None, image: Image.Image, output: dict) -> dict:
        keep = (output["scores"] >= self.conf).nonzero().flatten()
        keep = keep[output["scores"][keep].argsort(descending=True)][: self.max_det]
        width, height = image.size
        boxes = self.runner.preprocess.to_image(output["boxes"][keep], width, height)
        detections = {"boxes": boxes, "scores": output["scores"][keep].float(), "labels": output["labels"][keep]}
        if "masks" in output:
            masks = output["masks"][keep].float()
            detections["masks"] = (torch.nn.functional.interpolate(masks, size=(height, width), mode="bilinear")
                                   [:, 0] > 0.5) if len(masks) else torch.zeros((0, height, width), dtype=torch.bool)
        record = {"source": name, "frame": frame, "width": width, "height": height,
                  "detections": [self._detection(box, score, label) for box, score, label in
                                 zip(boxes.tolist(), detections["scores"].tolist(), detections["labels"].tolist(),
                                     strict=True)]}
        if self.out is not None:
            record["image"] = str(self._draw(image, name, frame, detections))
        self.masks.append(detections.get("masks"))
        return record

    def _detection(self, box, score: float, label: int) -> dict:
        names, categories = self.runner.class_names, self.runner.categories
        x1, y1, x2, y2 = box
        return {"label": int(label), "name": names[label] if names and label < len(names) else str(label),
                "category_id": int(categories[label - 1]["id"]) if categories and 0 < label <= len(categories)
                else int(label), "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(score), 5)}

    def _draw(self, image: Image.Image, name: str, frame: int | None, detections: dict) -> Path:
        from torchvision.transforms.functional import pil_to_tensor, to_pil_image
        from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

        drawn = pil_to_tensor(image)
        if "masks" in detections and len(detections["masks"]):
            drawn = draw_segmentation_masks(drawn, detections["masks"], alpha=0.45)
        labels = [f"{d['name']} {d['score']:.2f}" for d in
                  (self._detection(b, s, la) for b, s, la in zip(detections["boxes"].tolist(),
                                                                  detections["scores"].tolist(),
                                                                  detections["labels"].tolist(), strict=True))]
        if len(labels):
            drawn = draw_bounding_boxes(drawn, detections["boxes"], labels=labels, width=2)
        path = self._unique(Path(name).stem + ("" if frame is None else f"_{frame:06d}") + ".png")
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            to_pil_image(drawn).save(tmp, format="PNG")
        return path

    def _unique(self, filename: str) -> Path:
        stem, n = filename[:-4], 1
        while filename in self.names:
            n += 1
            filename = f"{stem}_{n}.png"
        self.names.add(filename)
        return self.out / filename

    def line(self, record: dict) -> str:
        found = record["detections"]
        shown = ", ".join(f"{d['name']} {d['score']:.2f}" for d in found[:5]) + (", ..." if len(found) > 5 else "")
        return f"{_frame_name(record['source'], record['frame'])}: {len(found)} detections" + (
            f" ({shown})" if found else "")

    def write(self, out: Path, records: list[dict]) -> list[Path]:
        import pycocotools.mask as mask_utils

        results = []
        for image_id, (r, masks) in enumerate(zip(records, self.masks, strict=True)):
            for i, d in enumerate(r["detections"]):
                result = {"image_id": image_id, "file_name": r["source"], "frame": r["frame"],
                          "category_id": d["category_id"], "category": d["name"], "bbox": d["bbox"],
                          "score": d["score"]}
                if masks is not None:
                    rle = mask_utils.encode(np.asfortranarray(masks[i].numpy().astype(np.uint8)))
                    result["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()}
                results.append(result)
        images = [p for p in (Path(r["image"]) for r in records if "image" in r)]
        return [*images, atomic_write_json(out / "detections.json", results)]
