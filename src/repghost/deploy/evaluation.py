"""COCO evaluation of a detector file of any format: the path behind ``repghost det-eval``.

A detector checkpoint (``det-train``'s ``last.pt``, ``det-eval --save-deploy``'s file) is evaluated
as torchvision evaluates it — every image at its own size, resized inside the model, torchrun-ready,
with ``--reparameterize`` / ``--save-deploy`` — by
:func:`repghost.detection.engine.evaluate_checkpoint`. An exported detector file is evaluated on its
own runtime by :func:`repghost.deploy.detector_files.evaluate_detector_file`: the file's graph, then
the same post-processing and pycocotools scoring as the checkpoint's. A classifier file is refused
with the command that takes it.
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
    :class:`~repghost.detection.data.DataConfig`; default: the data the file was trained on) — see
    the module's docstring. Metrics go to ``output`` (default: ``eval_<form>.json`` beside a checkpoint,
    ``eval_<file name>.json`` beside an exported file)."""
    from ..detection.engine import evaluate_checkpoint
    from .detector_files import evaluate_detector_file as evaluate_exported

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
    metrics = evaluate_exported(path, data, runtime=runner.runtime, threads=threads or 1, batch_size=batch_size,
                                workers=workers, progress=progress)
    metrics.update(format=runner.label, runtime=runner.runtime)
    path = Path(path)
    atomic_write_json(Path(output) if output else path.with_name(f"eval_{path.name.replace('.', '_')}.json"),
                      metrics)
    return metrics


@torch.no_grad()
def evaluate_runner(runner: ModelRunner, data, progress: bool = True) -> dict:
    """COCO box metrics of an opened detector on ``data``'s val split, each image fed as ``predict``
    feeds it (the runner's preprocessing, one image per call, boxes mapped back by ``to_image``): the
    check that what ``predict`` draws scores as the detector's own evaluation does."""
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
