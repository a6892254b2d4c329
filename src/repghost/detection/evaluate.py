"""COCO evaluation with pycocotools: box AP (and mask AP for Mask R-CNN)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pycocotools.mask as mask_utils
import torch
import torch.distributed as dist
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import DataLoader

from ..progress import progress as progress_bar
from .data import CocoDetection

#: COCOeval's first six summary numbers, in its order.
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def to_coco_results(output: dict[str, torch.Tensor], image_id: int, dataset: CocoDetection) -> list[dict]:
    """One image's detections as COCO result records (xywh boxes, category ids, RLE masks)."""
    boxes = output["boxes"].float().cpu().numpy()
    scores = output["scores"].float().cpu().tolist()
    labels = output["labels"].cpu().tolist()
    records = []
    rles = None
    if "masks" in output:
        binary = (output["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8)
        rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0))) if len(binary) else []
    for i, (box, score, label) in enumerate(zip(boxes, scores, labels, strict=True)):
        x1, y1, x2, y2 = (float(v) for v in box)
        record = {"image_id": image_id, "category_id": dataset.label_to_category(label),
                  "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
        if rles is not None:
            rle = rles[i]
            record["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        records.append(record)
    return records


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False,
            progress: bool = True) -> dict[int, list[dict]]:
    """Detections for every image the loader yields, keyed by image id (COCO result records)."""
    model.eval()
    dataset = loader.dataset
    results: dict[int, list[dict]] = {}
    for images, targets in progress_bar(loader, desc="eval", leave=False, enabled=progress, unit="batch"):
        images = [img.to(device, non_blocking=True) for img in images]
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            outputs = model(images)
        for output, target in zip(outputs, targets, strict=True):
            image_id = int(target["image_id"])
            results[image_id] = to_coco_results(output, image_id, dataset)
    return results


def gather_results(results: dict[int, list[dict]]) -> dict[int, list[dict]]:
    """Merge every rank's results (a DistributedSampler pads with repeats; keying by image id drops them)."""
    if not (dist.is_available() and dist.is_initialized()):
        return results
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, results)
    merged: dict[int, list[dict]] = {}
    for part in parts:
        merged.update(part)
    return merged


def coco_metrics(dataset: CocoDetection, results: dict[int, list[dict]], iou_types: tuple[str, ...]) -> dict:
    """``{iou_type: {AP, AP50, AP75, APs, APm, APl}}`` in percent, over the images in ``results``.

    An empty detection list scores 0 everywhere (pycocotools cannot load it); COCOeval's −1
    (no ground truth in that size range) is kept as −1.
    """
    records = [r for image_results in results.values() for r in image_results]
    metrics = {}
    for iou_type in iou_types:
        if not records:
            metrics[iou_type] = dict.fromkeys(METRIC_NAMES, 0.0)
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            detections = dataset.coco.loadRes(records)
            evaluator = COCOeval(dataset.coco, detections, iou_type)
            evaluator.params.imgIds = sorted(results)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        metrics[iou_type] = {name: round(float(v) * 100, 3) if v >= 0 else -1.0
                             for name, v in zip(METRIC_NAMES, evaluator.stats[:6], strict=True)}
    return metrics


def iou_types_of(model: nn.Module) -> tuple[str, ...]:
    config = getattr(model, "detector_config", None)
    return ("bbox", "segm") if config is not None and config.model == "maskrcnn" else ("bbox",)


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False,
             progress: bool = True) -> dict:
    """COCO metrics of ``model`` on ``loader``'s dataset (all ranks run; every rank gets the result)."""
    results = gather_results(predict(model, loader, device, amp, progress))
    metrics = coco_metrics(loader.dataset, results, iou_types_of(model))
    metrics["num_images"] = len(results)
    return metrics


def format_metrics(metrics: dict) -> str:
    """A small text table: one row per IoU type, the six COCO numbers."""
    lines = [f"{'':<6}" + "".join(f"{name:>8}" for name in METRIC_NAMES)]
    for iou_type in ("bbox", "segm"):
        if iou_type in metrics:
            lines.append(f"{iou_type:<6}" + "".join(f"{metrics[iou_type][n]:>8.2f}" for n in METRIC_NAMES))
    return "\n".join(lines)
