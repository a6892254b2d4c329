"""The search's detection-quality proxy ``Q`` for one held-out minibatch.

MobileDets reward an mAP estimated on a small minibatch. A real COCO AP on a few images of a partly
trained one-shot network is coarse (a handful of objects, AP quantized) and needs NMS and a COCO
evaluation every step; the detection loss is smooth but unbounded, and its scale (≈ 6 early, ≈ 2
late) does not compare with τ. ``Q`` here is an AP50-like *soft recall*, bounded in [0, 1] like the
accuracy TuNAS rewards, so that τ means what it means there (reward per relative miss of the
target):

    Q = mean over ground-truth objects g of  max over the anchors matched to g of
        p(class of g | anchor) · [IoU(decoded box of the anchor, g) ≥ 0.5]

— how confidently the path finds each object with a well-placed box, before NMS. It uses SSD's own
anchor matching and box decoding, and the held-out SSD loss is computed from the same forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_iou

#: IoU at which a decoded box counts as finding its object (COCO's AP50).
IOU_THRESHOLD = 0.5


@torch.no_grad()
def held_out_quality(model: SSD, images: list[Tensor], targets: list[dict[str, Tensor]]) -> tuple[float, float, int]:
    """``(Q, loss, objects)`` of ``model`` (in training mode, so BN uses the batch's statistics) on
    one minibatch: the soft recall above, SSD's loss (classification + box regression), and how
    many objects Q averages over (0: Q is 0)."""
    images_t, targets_t = model.transform(images, targets)
    features = list(model.backbone(images_t.tensors).values())
    head = model.head(features)
    anchors = model.anchor_generator(images_t, features)
    matched, found, objects = [], images_t.tensors.new_zeros(()), 0
    for i, (anchors_i, target) in enumerate(zip(anchors, targets_t, strict=True)):
        gt = target["boxes"]
        if gt.numel() == 0:
            matched.append(torch.full((anchors_i.size(0),), -1, dtype=torch.int64, device=anchors_i.device))
            continue
        matched.append(model.proposal_matcher(box_iou(gt, anchors_i)))
        positive = torch.nonzero(matched[-1] >= 0).squeeze(1)
        owner = matched[-1][positive]  # the object each positive anchor is matched to
        boxes = model.box_coder.decode_single(head["bbox_regression"][i][positive], anchors_i[positive])
        placed = box_iou(boxes, gt).gather(1, owner[:, None]).squeeze(1) >= IOU_THRESHOLD
        score = head["cls_logits"][i][positive].softmax(-1).gather(1, target["labels"][owner][:, None]).squeeze(1)
        best = score.new_zeros(gt.size(0)).scatter_reduce(0, owner, score * placed, "amax")
        found, objects = found + best.sum(), objects + gt.size(0)
    losses = model.compute_loss(targets_t, head, anchors, matched)
    quality = float(found) / objects if objects else 0.0
    return quality, float(sum(losses.values())), objects
