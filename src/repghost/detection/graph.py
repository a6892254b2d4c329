"""A detector split where every runtime can follow it: a fixed-size graph, and post-processing in Python.

torchvision's detectors take a list of images of any size and return boxes after a data-dependent
selection (score threshold, top-k, non-maximum suppression), which no fixed-shape format (OpenVINO
with a static shape, LiteRT, MNN, ncnn) can hold, and which ONNX holds only with runtime-specific
ops. So an exported detector is cut in three, the same way for every format:

1. **preprocessing** (:class:`DetectionPreprocess`, Python): torchvision's own
   ``GeneralizedRCNNTransform`` at one fixed input size — SSDLite stretches the image to the square,
   as torchvision's SSD does; RetinaNet keeps the aspect ratio (long side to the size) and pads the
   bottom and right with zeros, as torchvision's batching does — then the mean / std normalization;
2. **the graph** (:class:`DetectorGraph`, in the exported file): backbone (re-parameterized), neck,
   heads, *and* the box decoding against the anchors, which at a fixed input size are constants, and
   the score activation (softmax for SSDLite, sigmoid for RetinaNet). One output ``detections`` of
   shape ``(N, A, 4 + C)``: per anchor, the decoded ``x1 y1 x2 y2`` in network-input pixels and the
   ``C`` class scores (background included, as torchvision counts classes). Plain Conv / Mul / Add /
   Exp / Softmax: every converter takes it, and the graph's cost is the runtime's;
3. **post-processing** (:func:`postprocess`, Python): clipping, the score threshold, top-k per class
   (SSDLite) or per level (RetinaNet), class-wise NMS (``torchvision.ops.batched_nms``), the
   detection cap, and the boxes scaled back to each original image — torchvision's own
   ``postprocess_detections`` step for step, so a file gives the PyTorch model's detections.

Keeping NMS out of the graph costs nothing in accuracy and makes the post-processing identical on
every runtime (its cost, measured by ``repghost bench``, is then the same number of milliseconds
everywhere, a different share of each runtime's total). Mask R-CNN does not split this way: its
second stage (RoIAlign on the proposals that survive the RPN's NMS) sits in the middle of the
network, so it cannot be exported here (:func:`exportable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import boxes as box_ops

#: How each exportable detector resizes an image to the fixed input, and turns logits into scores.
RESIZE = {"ssdlite": "stretch", "retinanet": "fit"}
SCORES = {"ssdlite": "softmax", "retinanet": "sigmoid"}
#: The name of the graph's one output.
OUTPUT_NAME = "detections"


class NotExportableError(ValueError):
    """A detector whose architecture cannot be cut into a fixed-size graph plus post-processing."""


def exportable(model_kind: str) -> None:
    """Raise :class:`NotExportableError` (one line saying why) for a detector that cannot be exported."""
    if model_kind == "maskrcnn":
        raise NotExportableError(
            "Mask R-CNN cannot be exported: its second stage (RoIAlign on the proposals left by the RPN's NMS) "
            "has data-dependent shapes inside the network, which no fixed-size graph of ONNX / OpenVINO / LiteRT "
            "here can hold; export SSDLite or RetinaNet, or evaluate it with det-eval on its checkpoint")
    if model_kind not in RESIZE:
        raise NotExportableError(f"unknown detector {model_kind!r}; exportable: {', '.join(RESIZE)}")


@dataclass(frozen=True)
class DetectionPreprocess:
    """What an image goes through before the graph: RGB in [0, 1], resized (bilinear, no antialias)
    to ``input_size``² — stretched (``"stretch"``) or long side to the size and zero-padded bottom /
    right (``"fit"``) — then ``(x - mean) / std``. Boxes come back in the original image's pixels."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "stretch"
    channel_order: str = "RGB"

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.resize not in ("stretch", "fit"):
            raise ValueError(f"resize must be 'stretch' or 'fit', got {self.resize!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: dict) -> DetectionPreprocess:
        return cls(**values)

    def transform(self) -> GeneralizedRCNNTransform:
        """torchvision's detection transform for this contract (resize, normalize, batch, and back)."""
        size = self.input_size
        if self.resize == "stretch":
            transform = GeneralizedRCNNTransform(size, size, list(self.mean), list(self.std), size_divisible=1,
                                                 fixed_size=(size, size))
        else:  # long side to `size`, then padded to a multiple of `size`: exactly size x size
            transform = GeneralizedRCNNTransform(size, size, list(self.mean), list(self.std), size_divisible=size)
        return transform.eval()  # in train mode it would not scale boxes back to the original images

    def describe(self) -> str:
        fmt = lambda v: "[" + ", ".join(f"{x:g}" for x in v) + "]"  # noqa: E731
        how = "stretched to" if self.resize == "stretch" else "long side to, zero-padded to"
        return (f"{self.channel_order} in [0, 1], bilinear, {how} {self.input_size}², mean {fmt(self.mean)}, "
                f"std {fmt(self.std)}")


@dataclass(frozen=True)
class PostProcess:
    """torchvision's selection of detections from the graph's output, with the detector's settings."""

    scores: str                      # "softmax" (SSDLite: per-class top-k) or "sigmoid" (RetinaNet: per-level top-k)
    score_thresh: float
    nms_thresh: float
    detections_per_img: int
    topk_candidates: int
    anchors_per_level: list[int] = field(default_factory=list)  # RetinaNet: anchors of each level, in order

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PostProcess:
        return cls(**values)


def image_size_of(model: nn.Module) -> int:
    """The fixed square input size a detector is exported at: its configured (minimum) size."""
    return int(model.detector_config.min_size)


def preprocess_of(model: nn.Module, input_size: int | None = None) -> DetectionPreprocess:
    kind = model.detector_config.model
    exportable(kind)
    return DetectionPreprocess(input_size or image_size_of(model), tuple(model.transform.image_mean),
                               tuple(model.transform.image_std), RESIZE[kind])


class DetectorGraph(nn.Module):
    """The exported part of a torchvision SSD / RetinaNet at a fixed ``input_size``: normalized
    ``(N, 3, S, S)`` → ``(N, A, 4 + C)``, decoded boxes (network-input pixels) then class scores."""

    def __init__(self, model: nn.Module, input_size: int):
        super().__init__()
        self.kind = model.detector_config.model
        exportable(self.kind)
        self.backbone, self.head = model.backbone, model.head
        self.input_size = input_size
        weights = model.box_coder.weights
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32), persistent=False)
        self.bbox_xform_clip = float(model.box_coder.bbox_xform_clip)
        with torch.no_grad():
            x = torch.zeros(1, 3, input_size, input_size)
            features = self._features(x)
            anchors = model.anchor_generator(ImageList(x, [(input_size, input_size)]), features)[0]
        self.register_buffer("anchors", anchors.float(), persistent=False)
        num_anchors = anchors.shape[0] // sum(f.shape[2] * f.shape[3] for f in features)
        self.anchors_per_level = [int(f.shape[2] * f.shape[3] * num_anchors) for f in features]

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.backbone(x).values())

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """torchvision's ``BoxCoder.decode_single`` over a batch: ``(N, A, 4)`` offsets → xyxy."""
        anchors = self.anchors
        widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        ctr_x, ctr_y = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx, dy = codes[..., 0] / wx, codes[..., 1] / wy
        dw = torch.clamp(codes[..., 2] / ww, max=self.bbox_xform_clip)
        dh = torch.clamp(codes[..., 3] / wh, max=self.bbox_xform_clip)
        pred_x, pred_y = dx * widths + ctr_x, dy * heights + ctr_y
        half_w, half_h = 0.5 * torch.exp(dw) * widths, 0.5 * torch.exp(dh) * heights
        return torch.stack((pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self._features(x))
        logits = out["cls_logits"]
        scores = torch.softmax(logits, dim=-1) if self.kind == "ssdlite" else torch.sigmoid(logits)
        return torch.cat((self.decode(out["bbox_regression"]), scores), dim=-1)


def postprocess_of(model: nn.Module, graph: DetectorGraph) -> PostProcess:
    topk = model.topk_candidates
    return PostProcess(SCORES[graph.kind], float(model.score_thresh), float(model.nms_thresh),
                       int(model.detections_per_img), int(topk),
                       graph.anchors_per_level if graph.kind == "retinanet" else [])


def _select_per_class(boxes, scores, post: PostProcess):
    """SSD's selection: for each class but the background, threshold then top-k."""
    picked_boxes, picked_scores, picked_labels = [], [], []
    for label in range(1, scores.shape[-1]):
        score = scores[:, label]
        keep = score > post.score_thresh
        score, box = score[keep], boxes[keep]
        score, idxs = score.topk(min(post.topk_candidates, score.numel()))
        picked_boxes.append(box[idxs])
        picked_scores.append(score)
        picked_labels.append(torch.full_like(score, label, dtype=torch.int64))
    return torch.cat(picked_boxes), torch.cat(picked_scores), torch.cat(picked_labels)


def _select_per_level(boxes, scores, post: PostProcess):
    """RetinaNet's selection: per feature level, threshold over (anchor, class) pairs then top-k."""
    num_classes = scores.shape[-1]
    picked_boxes, picked_scores, picked_labels = [], [], []
    for level_boxes, level_scores in zip(boxes.split(post.anchors_per_level), scores.split(post.anchors_per_level),
                                         strict=True):
        flat = level_scores.flatten()
        keep = flat > post.score_thresh
        flat, idxs = flat[keep], torch.where(keep)[0]
        flat, order = flat.topk(min(post.topk_candidates, idxs.numel()))
        idxs = idxs[order]
        picked_boxes.append(level_boxes[torch.div(idxs, num_classes, rounding_mode="floor")])
        picked_scores.append(flat)
        picked_labels.append(idxs % num_classes)
    return torch.cat(picked_boxes), torch.cat(picked_scores), torch.cat(picked_labels)


@torch.no_grad()
def postprocess(output: torch.Tensor, post: PostProcess, image_sizes: Sequence[tuple[int, int]],
                original_sizes: Sequence[tuple[int, int]], transform: GeneralizedRCNNTransform) -> list[dict]:
    """The graph's ``(N, A, 4 + C)`` output → per image ``{boxes, scores, labels}`` in original pixels."""
    select = _select_per_class if post.scores == "softmax" else _select_per_level
    detections = []
    for image_output, image_size in zip(output, image_sizes, strict=True):
        boxes = box_ops.clip_boxes_to_image(image_output[:, :4], image_size)
        boxes, scores, labels = select(boxes, image_output[:, 4:], post)
        keep = box_ops.batched_nms(boxes, scores, labels, post.nms_thresh)[: post.detections_per_img]
        detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return transform.postprocess(detections, list(image_sizes), list(original_sizes))


def prepare(images: Sequence[torch.Tensor], transform: GeneralizedRCNNTransform):
    """``(batch (N, 3, S, S), resized sizes, original sizes)`` of a list of ``(3, H, W)`` images in [0, 1]."""
    original = [tuple(int(d) for d in img.shape[-2:]) for img in images]
    with torch.no_grad():
        batch, _ = transform([img.float() for img in images])
    return batch.tensors, batch.image_sizes, original
