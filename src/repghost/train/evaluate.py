"""Evaluation: top-1 / top-5 / loss of a model on a loader, and of a classifier file (any format
:mod:`repghost.deploy.runner` opens) on a dataset."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import DETECTION_FORMAT, CheckpointError, LoadedModel, other_file_message
from ..data import SampleDataset, build_datasets, build_loader, recorded_root
from ..names import DIGITS
from ..preprocess import Preprocess
from ..progress import progress as progress_bar
from ..reparam import is_deploy, reparameterize
from ..run.distributed import DistInfo, all_reduce_sum, gather_lists

log_module = logging.getLogger("repghost.train")


class ClassMismatchError(ValueError):
    """A classifier evaluated on data of other classes (another number of them, or other names): its
    accuracy there would be meaningless, so the command line must change (exit code 2)."""


def check_classes(path: str | Path, class_names, num_classes: int | None, dataset, data: str | None,
                  fine_tunable: bool = True) -> None:
    """Refuse a classifier whose classes are not those of ``dataset`` (a :class:`~repghost.data.RawDataset`
    of ``data``, an ImageFolder root or the digits): :class:`ClassMismatchError` when its class count
    differs, or when it records class names that differ. A model that records its names passes exactly
    where they are the data's; one that records none, where its count is. ``fine_tunable``: the file holds
    weights ``repghost train --pretrained`` starts from (the message suggests it)."""
    name, data_classes = Path(path).name, list(dataset.classes)
    if class_names is not None and list(class_names) == data_classes:
        return
    count = len(class_names) if class_names is not None else num_classes
    if count is not None and count != len(data_classes):
        start = f" --pretrained {path}" if fine_tunable else ""
        raise ClassMismatchError(f"{name} has {count} classes but {dataset.root} has {len(data_classes)}: its top-1 "
                                 "there would be meaningless; train or fine-tune on this data first (repghost train "
                                 f"--data {data or DIGITS}{start})")
    if class_names is not None:
        raise ClassMismatchError(f"{name} was trained on classes {_short(class_names)} but {dataset.root} has "
                                 f"{_short(data_classes)}; accuracy would be meaningless")


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
             channels_last: bool = False, dist_info: DistInfo | None = None, progress: bool = False) -> dict:
    """Top-1 and top-5 accuracy (%) and mean cross-entropy (no label smoothing) over ``loader``.

    Unreadable images are skipped; ``skipped`` counts them and ``skipped_paths`` names them. Under
    DDP each rank evaluates its shard and the sums are reduced, so every rank gets the full result.
    """
    device, dist_info = torch.device(device), dist_info or DistInfo()
    # A module is put in eval mode for the pass; any other callable (a ModelRunner) is run as it is.
    is_module = isinstance(model, nn.Module)
    was_training = is_module and model.training
    if is_module:
        model.eval()
    loss_sum = correct1 = correct5 = count = 0.0
    bad: list[str] = []
    for images, targets, bad_paths in progress_bar(loader, desc="eval", leave=False, enabled=progress,
                                                   dynamic_ncols=True, unit="batch"):
        bad += bad_paths
        if images is None:
            continue
        images, targets = images.to(device), targets.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        # argmax, not topk's first column, for top-1: with tied logits (int8 models output a coarse grid)
        # argmax takes the first class, as onnxruntime-based checks do, so every tool counts the same hits.
        correct1 += logits.argmax(dim=1).eq(targets).sum().item()
        correct5 += logits.topk(min(5, logits.shape[1]), dim=1).indices.eq(targets[:, None]).any(dim=1).sum().item()
        count += len(targets)
    if is_module:
        model.train(was_training)
    loss_sum, correct1, correct5, count = all_reduce_sum([loss_sum, correct1, correct5, count], dist_info, device)
    bad = gather_lists(bad, dist_info)
    if count == 0:
        raise RuntimeError("evaluation saw no readable image")
    return dict(top1=100.0 * correct1 / count, top5=100.0 * correct5 / count, loss=loss_sum / count,
                count=int(count), skipped=len(bad), skipped_paths=bad)


def open_for_eval(path: str | Path, use_ema: bool = False, model_name: str | None = None) -> LoadedModel:
    """The model in ``path`` with what the file records, as :class:`~repghost.checkpoint.LoadedModel`:
    any model file :func:`repghost.deploy.runner.open_model` opens (an exported file's ``model`` is its
    :class:`~repghost.deploy.runner.ModelRunner`)."""
    runner = open_classifier(path, use_ema=use_ema, model_name=model_name)
    model = runner.module if runner.module is not None else runner
    kind = {"checkpoint": "repghost training checkpoint", "safetensors": "repghost safetensors"}.get(
        runner.format, runner.format.upper() if runner.format == "onnx" else runner.format)
    return LoadedModel(model, runner.preprocess, runner.class_names, runner.data, kind, runner.notes)


def open_classifier(path: str | Path, runtime: str | None = None, threads: int | None = None,
                    device: str | torch.device = "cpu", use_ema: bool = False, model_name: str | None = None):
    """:func:`repghost.deploy.runner.open_model` for a command that needs a classifier: a detector
    file is refused with the command that takes it."""
    from ..checkpoint import WrongTaskError
    from ..deploy.runner import open_model

    runner = open_model(path, runtime=runtime, threads=threads, device=device, model_name=model_name,
                        use_ema=use_ema)
    if runner.task != "classification" and runner.format == "checkpoint":
        raise WrongTaskError(other_file_message({"format": DETECTION_FORMAT}, path))
    if runner.task != "classification":
        raise WrongTaskError(f"{path} holds a detector ({runner.model_name}), not a classifier: evaluate it with "
                              f"`repghost det-eval {path}`")
    return runner


def evaluate_checkpoint(path: str | Path, data: str | None = None, split: str = "val", use_ema: bool = False,
                        reparam: bool = False, batch_size: int = 128, workers: int = 0, device: str | None = None,
                        img_size: int | None = None, mean=None, std=None, model_name: str | None = None,
                        progress: bool = True, log=None, runtime: str | None = None,
                        threads: int | None = None) -> dict:
    """Evaluate a classifier file — any file :func:`repghost.deploy.runner.open_model` opens: a
    checkpoint, safetensors, TorchScript, ONNX / int8 ONNX, OpenVINO IR, LiteRT, MNN, ncnn — on an
    ImageFolder split or the digits split, on the file's own runtime (``runtime`` picks another where
    the format allows).

    Data and preprocessing default to what the file records (its training data and preprocessing);
    ``img_size`` / ``mean`` / ``std`` override. A PyTorch file that records no preprocessing is
    evaluated with the model's default, and ``log`` (when given) is told so in one line; an exported
    file that records none needs all three.
    """
    path = Path(path)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    runner = open_classifier(path, runtime, threads, dev, use_ema=use_ema, model_name=model_name)
    for note in runner.notes:
        if log is not None:
            log(f"note: {note}")
    recorded = runner.preprocess
    if recorded is None and runner.module is None:
        if img_size is None or mean is None or std is None:
            raise CheckpointError(f"{path} records no preprocessing (not exported by repghost); give --img-size, "
                                  "--mean and --std")
        recorded = Preprocess(input_size=img_size, mean=mean, std=std)
    elif recorded is None:
        recorded = Preprocess.model_default(runner.module)
        if log is not None:
            log(f"note: {path.name} records no preprocessing; using the model's default "
                f"({recorded.describe()}) where no flag is given")
    preprocess = recorded.override(input_size=img_size, mean=mean, std=std)
    data = data if data is not None else recorded_root(runner.data, str(path), "pass --data DIR")
    raw = build_datasets(data, splits=(split,))[split]
    if runner.module is None and runner.input_size and runner.input_size != preprocess.input_size:
        raise CheckpointError(f"{path.name} takes {runner.input_size}² inputs (a size fixed at export); "
                              f"--img-size {preprocess.input_size} cannot run on it")
    check_classes(path, runner.class_names, _output_count(runner, preprocess), raw, data,
                  fine_tunable=runner.format in ("checkpoint", "safetensors"))
    if reparam and runner.module is not None and not is_deploy(runner.module):
        from ..deploy.runner import torch_runner

        runner = torch_runner(reparameterize(runner.module), path, runner.format, runner.preprocess,
                              runner.class_names, dev, model_name=runner.model_name, data=runner.data)
    # The runner moves each batch to its device and hands back its logits on the CPU.
    loader = build_loader(SampleDataset(raw, preprocess.transform()), batch_size, train=False,
                          workers=workers, pin_memory=dev.type == "cuda")
    result = evaluate(runner, loader, "cpu", progress=progress)
    for p in result["skipped_paths"]:
        log_module.warning("skipped unreadable image: %s", p)
    form = "deploy" if runner.module is None or is_deploy(runner.module) else "train"
    return {**result, "checkpoint": str(path), "form": form, "format": runner.label, "runtime": runner.runtime,
            "data": str(data or "digits"), "split": split, "preprocess": preprocess.to_dict()}


def _output_count(runner, preprocess: Preprocess) -> int | None:
    """How many classes the model scores: what it records, else its output width on one blank image (a
    file not written by repghost records no classes)."""
    count = runner.num_classes or getattr(runner.module, "num_classes", None)
    if count is not None:
        return count
    with torch.inference_mode():
        return int(runner(torch.zeros(1, 3, preprocess.input_size, preprocess.input_size)).shape[-1])


def _short(names) -> str:
    names = list(names)
    return "[" + ", ".join(names[:5]) + (", …" if len(names) > 5 else "") + f"] ({len(names)})"
