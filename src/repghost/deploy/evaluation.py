"""COCO evaluation of a detector file of any format: the path behind ``repghost det-eval``.

A detector checkpoint (``det-train``'s ``last.pt``, ``det-eval --save-deploy``'s file) is evaluated
as torchvision evaluates it — every image at its own size, resized inside the model, torchrun-ready,
with ``--reparameterize`` / ``--save-deploy`` — by
:func:`repghost.detection.engine.evaluate_checkpoint`. An exported detector file is evaluated through
its :class:`~repghost.deploy.runner.ModelRunner`: each image prepared by the file's contract, its
boxes mapped back to the image's pixels, scored by the same pycocotools code. A classifier file is
refused with the command that takes it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..io import atomic_write_json
from ..progress import progress as progress_bar
from .runner import ModelRunner, WrongTaskError, open_model


def evaluate_detector_file(path: str | os.PathLike, data=None, batch_size: int = 2, workers: int = 2,
                           device: str | None = None, reparameterize: bool = False,
                           output: str | os.PathLike | None = None, save_deploy: str | os.PathLike | None = None,
                           threads: int | None = None, runtime: str | None = None, progress: bool = True) -> dict:
    """COCO metrics of the detector in ``path`` on ``data`` (a
    :class:`~repghost.detection.data.DataConfig`; default: the data a checkpoint was trained on) — see
    the module's docstring. Metrics go to ``output`` (default ``<file dir>/eval_<form>.json``)."""
    from ..detection.engine import evaluate_checkpoint

    runner = open_model(path, runtime=runtime, threads=threads)
    if runner.task != "detection":
        raise WrongTaskError(f"{path} holds a classifier ({runner.model_name or runner.format}), not a detector: "
                              f"evaluate it with `repghost eval {path}`")
    if runner.format == "checkpoint":
        return evaluate_checkpoint(path, data, batch_size=batch_size, workers=workers, device=device,
                                   reparameterize=reparameterize, output=output, save_deploy=save_deploy,
                                   threads=threads)
    if reparameterize or save_deploy:
        raise ValueError(f"{Path(path).name} is an exported detector (already in deploy form): --reparameterize "
                         "and --save-deploy apply to detector checkpoints")
    if data is None:
        raise ValueError(f"{Path(path).name} does not record its data; pass --data ROOT")
    metrics = evaluate_runner(runner, data, progress=progress)
    metrics.update(checkpoint=str(path), form="deploy", format=runner.label, runtime=runner.runtime)
    atomic_write_json(Path(output) if output else Path(path).parent / "eval_deploy.json", metrics)
    return metrics


@torch.no_grad()
def evaluate_runner(runner: ModelRunner, data, progress: bool = True) -> dict:
    """COCO box metrics of an opened detector file on ``data``'s val split (one image per call, as
    exported detectors take them)."""
    from torchvision.transforms.functional import to_pil_image

    from ..detection.evaluate import coco_metrics, to_coco_results

    dataset = data.dataset(data.val_split, train=False, masks=False)
    transform = runner.preprocess.transform()
    results, skipped = {}, []
    for index in progress_bar(range(len(dataset)), desc="eval", leave=False, enabled=progress, unit="img"):
        image, target = dataset[index]
        if image is None:
            skipped.append(target)
            continue
        height, width = image.shape[-2:]
        (output,) = runner(transform(to_pil_image(image))[None])
        output = {**output, "boxes": runner.preprocess.to_image(output["boxes"], width, height)}
        output.pop("masks", None)
        image_id = int(target["image_id"])
        results[image_id] = to_coco_results(output, image_id, dataset)
    metrics = coco_metrics(dataset, results, ("bbox",))
    metrics["num_images"] = len(results)
    metrics["skipped_images"] = sorted(skipped)
    return metrics
