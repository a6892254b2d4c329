"""Scoring an architecture with the trained super-network, and how noisy that score is.

**The score** is the box AP (COCO's AP@[.5:.95], pycocotools) of the architecture's path on held-out
images (the search-validation split), after its BN statistics are recalibrated on training batches
(:mod:`.calibrate`): the same number the final comparison reports for stand-alone models, so a
ranking by it is a ranking by what is to be maximised. The old proxy (a soft recall on one
minibatch, ``Q``) was cheaper but its architecture effect drowned in minibatch noise; AP over a
whole split of a few hundred images averages that noise away at the price of one pass over it per
architecture (NMS and COCOeval included), which a search that scores hundreds of architectures, not
thousands of steps' worth, can pay. Scoring leaves the super-network as it was (its BN buffers are
restored), so scores do not depend on the order architectures are scored in.

**The noise** (:func:`score_noise`): the held-out images are split into ``B`` disjoint subsets and
every architecture is scored on each; a two-way analysis of variance (architecture × subset, one
score per cell) separates the architecture effect from the subset effect and the residual noise,
and the split-half rank correlation says whether two halves of the held-out set rank the
architectures alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats
from torch.utils.data import DataLoader

from ..detection.data import CocoDetection, collate
from ..detection.evaluate import coco_metrics, predict
from ..detection.synthetic import annotation_path, image_dir
from .calibrate import preserved_bn_state, recalibrate_bn
from .superspace import SuperSSDLite
from .supertrain import train_dataset

#: BN recalibration before an architecture is scored: this many batches of the super-network's training
#: split (its training batch size), the same seeded draw for every architecture.
CALIBRATION_BATCHES, CALIBRATION_SEED = 4, 1


def path_forward(supernet: SuperSSDLite, device: torch.device):
    """The forward pass a recalibration runs on a list of images: transform, body, extra layers and
    head (every BN the path's detections go through), no loss."""
    model = supernet.model

    def forward(images: Sequence[torch.Tensor]) -> None:
        images_t, _ = model.transform([image.to(device) for image in images])
        model.head(list(model.backbone(images_t.tensors).values()))

    return forward


@torch.no_grad()
def predict_architecture(supernet: SuperSSDLite, arch: Sequence[str], calibration: Sequence[Sequence[torch.Tensor]],
                         loader: DataLoader, device: torch.device) -> dict[int, list[dict]]:
    """Detections of ``arch``'s path on ``loader``'s images (COCO result records by image id), with its
    BN statistics recalibrated on the ``calibration`` batches (lists of images) first."""
    supernet.set_arch(arch)
    with preserved_bn_state(supernet.model):
        recalibrate_bn(supernet.model, calibration, path_forward(supernet, device))
        results, skipped = predict(supernet.model, loader, device, progress=False)
    if skipped:
        raise ValueError(f"{len(skipped)} held-out image(s) are unreadable (e.g. {skipped[0]}); the score "
                         "would cover another set of images for each architecture")
    return results


def calibration_batches(dataset, count: int, batch: int, seed: int) -> list[list[torch.Tensor]]:
    """``count`` fixed minibatches of ``batch`` images of ``dataset`` (a seeded draw without repeats): the
    same BN recalibration data for every architecture scored."""
    if count * batch > len(dataset):
        raise ValueError(f"{count} calibration batches of {batch} need {count * batch} images; the training split "
                         f"has {len(dataset)}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    return [[dataset[i][0] for i in order[k * batch:(k + 1) * batch]] for k in range(count)]


def box_ap(dataset: CocoDetection, results: dict[int, list[dict]], image_ids: Sequence[int] | None = None) -> float:
    """COCO box AP (percent) of ``results`` over ``image_ids`` (default: every image in ``results``)."""
    if image_ids is not None:
        results = {i: results[i] for i in image_ids}
    return coco_metrics(dataset, results, ("bbox",))["bbox"]["AP"]


def score_architecture(supernet: SuperSSDLite, arch: Sequence[str], calibration, loader: DataLoader,
                       device: torch.device) -> float:
    """The held-out box AP of ``arch``'s path (BN recalibrated): the super-network's score."""
    return box_ap(loader.dataset, predict_architecture(supernet, arch, calibration, loader, device))


class TrainingSplitError(ValueError):
    """The split asked to score on is the one the super-network trained on."""


class HeldOutScorer:
    """The super-network's score of architectures: :func:`predict_architecture` on a held-out split of
    the data it was trained on, with one fixed set of calibration batches for every architecture."""

    def __init__(self, training, split: str, subsets: int = 0, device: torch.device | str = "cpu"):
        data = training.config.data
        root = data.resolve_root()
        if split == data.train_split:
            raise TrainingSplitError(f"the score's split {split!r} is the one the super-network trained on; "
                                     "score on a held-out split")
        self.space, self.supernet, self.device = training.space, training.supernet, torch.device(device)
        self.held_out = CocoDetection(annotation_path(root, split), image_dir(root, split))
        self.loader = DataLoader(self.held_out, batch_size=16, collate_fn=collate)
        ids = self.held_out.coco.getImgIds()
        self.subsets = image_subsets(ids, min(subsets, len(ids))) if subsets else []
        self.calibration = calibration_batches(train_dataset(data), CALIBRATION_BATCHES,
                                               training.config.batch_size, CALIBRATION_SEED)

    def score(self, arch: Sequence[str]) -> tuple[float, list[float]]:
        """``(box AP on the whole split, box AP on each of the subsets)`` of ``arch``'s path."""
        results = predict_architecture(self.supernet, arch, self.calibration, self.loader, self.device)
        return box_ap(self.held_out, results), [box_ap(self.held_out, results, ids) for ids in self.subsets]


def image_subsets(image_ids: Sequence[int], count: int, seed: int = 0) -> list[list[int]]:
    """``image_ids`` in ``count`` disjoint, seeded random subsets of (nearly) equal size."""
    if not 2 <= count <= len(image_ids):
        raise ValueError(f"cannot split {len(image_ids)} images into {count} subsets (2 … {len(image_ids)})")
    order = np.random.default_rng(seed).permutation(sorted(image_ids))
    return [sorted(int(i) for i in part) for part in np.array_split(order, count)]


def score_noise(scores: np.ndarray) -> dict[str, float]:
    """Two-way ANOVA of ``scores`` (architectures × subsets, one score each): the architecture effect's
    ``F`` and ``p``; the standard deviations of the architecture effect (``sd_arch``, its variance
    component) and of the subset effect (``sd_subset``) and the residual noise of one score
    (``sd_noise``); the split-half Spearman rank correlation between the mean over the even and the
    odd subsets (``split_half_spearman``), with its Spearman–Brown full-length reliability."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or min(scores.shape) < 2 or scores.shape[1] < 2:
        raise ValueError(f"need ≥ 2 architectures × ≥ 2 subsets of scores, got shape {scores.shape}")
    archs, subsets = scores.shape
    grand = scores.mean()
    arch_means, subset_means = scores.mean(1), scores.mean(0)
    residual = scores - arch_means[:, None] - subset_means[None, :] + grand
    ms_arch = subsets * ((arch_means - grand) ** 2).sum() / (archs - 1)
    ms_subset = archs * ((subset_means - grand) ** 2).sum() / (subsets - 1)
    df_res = (archs - 1) * (subsets - 1)
    ms_res = (residual ** 2).sum() / df_res
    f = ms_arch / ms_res if ms_res > 0 else float("inf")
    rho = float(stats.spearmanr(scores[:, 0::2].mean(1), scores[:, 1::2].mean(1)).statistic)
    return dict(F=float(f), p=float(stats.f.sf(f, archs - 1, df_res)),
                sd_arch=float(np.sqrt(max(0.0, (ms_arch - ms_res) / subsets))),
                sd_subset=float(np.sqrt(max(0.0, (ms_subset - ms_res) / archs))), sd_noise=float(np.sqrt(ms_res)),
                split_half_spearman=rho, spearman_brown=2 * rho / (1 + rho) if rho > -1 else float("nan"),
                archs=archs, subsets=subsets)
