"""Training the weight-sharing super-network so that every choice gets a fair share: the sandwich rule
with in-place distillation (Yu et al.'s slimmable / BigNAS training; Once-for-All distils from the
largest network too).

Each step trains, on the same minibatch, with gradients summed before one optimizer step:

1. the **largest** architecture (every width, middle width, kernel and SE at its top; ops drawn
   uniformly) on the detection loss (SSD's: smooth-L1 box regression + hard-negative-mined
   cross-entropy, both over the matched anchors' count);
2. the **smallest** (every ordered decision at its bottom, every skippable block skipped) and
   ``num_random`` uniformly **random** architectures, each on the detection loss plus
   ``distill_weight`` × the distillation loss from the largest path's (detached) outputs.

The uniform random paths give every choice the same expected number of updates (no controller
decides which choices train, so early favourites cannot get richer); the two extremes bound the
range every path lies in, so the smallest widths and the top ones both train every step.

**Distillation loss** (in-place: the teacher is the largest path of the same step, no extra
network): on the anchors SSD's own loss looks at — the matched (foreground) anchors and, per image,
the 3× as many background anchors on which student and teacher disagree most (SSD's hard-negative
ratio) — the KL divergence of the student's class distribution from the teacher's, and on the matched
anchors the smooth-L1 distance of the student's box regression to the teacher's; both summed and
divided by the number of matched anchors, as SSD's loss is, so the two losses have one scale. Soft
class targets carry the teacher's ranking of the wrong classes and of near-background anchors,
which a hard label hides; the teacher's boxes are targets the small path can reach. The detection
loss stays on for the students (Once-for-All keeps the hard loss beside the distillation too): early
in training the teacher is as untrained as they are.

Which architectures a step trains and which images it sees are functions of (seed, step), so a
resumed training sees the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_iou

from .superspace import SuperSSDLite, extreme_arch, with_reference_op

#: SSD's ratio of hard negatives to positives (torchvision's ``neg_to_pos_ratio``).
NEG_TO_POS = 3


def sandwich_archs(supernet: SuperSSDLite, seed: int, step: int, num_random: int, reference_share: float = 0.0,
                   largest_only: bool = False) -> list[tuple[str, ...]]:
    """Step ``step``'s architectures: largest, smallest, then ``num_random`` uniform ones (with
    ``largest_only``, the largest alone); each real op of each replaced by the reference op with probability
    ``reference_share`` (:func:`.superspace.with_reference_op`; 1: every op)."""
    space = supernet.space
    archs = [extreme_arch(space, True, (seed, step, 0))]
    if not largest_only:
        archs.append(extreme_arch(space, False, (seed, step, 1)))
        archs += [space.sample(seed, step * num_random + i) for i in range(num_random)]
    if reference_share <= 0:
        return archs
    return [with_reference_op(space, a, reference_share, (seed, step, i, 2)) for i, a in enumerate(archs)]


def reference_share(step: int, reference_op_steps: int, op_ramp_steps: int) -> float:
    """The share of ops that are the reference op at ``step``: all of them for the first ``reference_op_steps``
    steps, then falling linearly to none over ``op_ramp_steps`` steps (the other ops, untrained until then,
    come in gradually instead of all at once)."""
    if step < reference_op_steps:
        return 1.0
    if step < reference_op_steps + op_ramp_steps:
        return 1.0 - (step - reference_op_steps + 1) / (op_ramp_steps + 1)
    return 0.0


def matched_anchors(model: SSD, anchors: list[Tensor], targets: list[dict[str, Tensor]]) -> list[Tensor]:
    """SSD's anchor matching: per image, the ground-truth index of each anchor (−1: background)."""
    matched = []
    for anchors_i, target in zip(anchors, targets, strict=True):
        if target["boxes"].numel() == 0:
            matched.append(torch.full((anchors_i.size(0),), -1, dtype=torch.int64, device=anchors_i.device))
        else:
            matched.append(model.proposal_matcher(box_iou(target["boxes"], anchors_i)))
    return matched


def distillation_loss(student: dict[str, Tensor], teacher: dict[str, Tensor], matched: list[Tensor]) -> Tensor:
    """KL(teacher ‖ student) of the class distributions on the foreground and hard-negative anchors +
    smooth-L1 student → teacher box regression on the foreground, over the foreground count."""
    foreground = torch.stack(matched) >= 0  # (images, anchors)
    kl = F.kl_div(student["cls_logits"].log_softmax(-1), teacher["cls_logits"].log_softmax(-1), reduction="none",
                  log_target=True).sum(-1)
    hard = kl.detach().masked_fill(foreground, float("-inf"))
    order = hard.argsort(dim=1, descending=True).argsort(dim=1)  # each anchor's rank among the negatives
    negatives = order < NEG_TO_POS * foreground.sum(1, keepdim=True)
    boxes = F.smooth_l1_loss(student["bbox_regression"][foreground], teacher["bbox_regression"][foreground],
                             reduction="sum")
    count = max(1, int(foreground.sum()))
    return (kl[foreground | negatives].sum() + boxes) / count


class SandwichTrainer:
    """One sandwich step of ``supernet`` with ``optimizer`` (gradient clipping at ``clip_grad``)."""

    def __init__(self, supernet: SuperSSDLite, optimizer: torch.optim.Optimizer, seed: int = 0, num_random: int = 2,
                 distill_weight: float = 1.0, clip_grad: float = 10.0, reference_op_steps: int = 0,
                 largest_only_steps: int = 0, op_ramp_steps: int = 0):
        self.supernet, self.optimizer, self.seed = supernet, optimizer, seed
        self.num_random, self.distill_weight, self.clip_grad = num_random, distill_weight, clip_grad
        self.reference_op_steps, self.largest_only_steps = reference_op_steps, largest_only_steps
        self.op_ramp_steps = op_ramp_steps

    def step(self, step: int, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]]) -> dict[str, float]:
        """Train the step's architectures on one minibatch; returns the teacher's detection loss and (when
        the step has students) the students' mean detection and distillation losses."""
        model = self.supernet.model.train()
        images_t, targets_t = model.transform(list(images), list(targets))
        self.optimizer.zero_grad(set_to_none=True)
        teacher, matched, teacher_loss, students = None, None, 0.0, []
        share = reference_share(step, self.reference_op_steps, self.op_ramp_steps)
        for arch in sandwich_archs(self.supernet, self.seed, step, self.num_random, share,
                                   step < self.largest_only_steps):
            self.supernet.set_arch(arch)
            features = list(model.backbone(images_t.tensors).values())
            head = model.head(features)
            if matched is None:  # the anchors are the same for every path (same strides, same input)
                anchors = model.anchor_generator(images_t, features)
                matched = matched_anchors(model, anchors, targets_t)
            loss = sum(model.compute_loss(targets_t, head, anchors, matched).values())
            if teacher is None:
                teacher, teacher_loss = {k: v.detach() for k, v in head.items()}, loss.item()
            else:
                distill = distillation_loss(head, teacher, matched)
                students.append((loss.item(), distill.item()))
                loss = loss + self.distill_weight * distill
            if not torch.isfinite(loss):
                raise FloatingPointError(f"super-network loss is {float(loss)} at step {step}; try a lower lr")
            loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        nn.utils.clip_grad_norm_(params, self.clip_grad)
        self.optimizer.step()
        if not students:
            return dict(teacher_loss=teacher_loss)
        return dict(teacher_loss=teacher_loss, student_loss=sum(s[0] for s in students) / len(students),
                    distill_loss=sum(s[1] for s in students) / len(students))
