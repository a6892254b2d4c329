"""Evaluation: top-1 / top-5 / loss of a model on a loader, and of a checkpoint file on a dataset."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CheckpointError, LoadedModel, open_model, props_record
from ..data import SampleDataset, build_datasets, build_loader, recorded_root
from ..preprocess import Preprocess
from ..progress import progress as progress_bar
from ..reparam import is_deploy, reparameterize
from ..run.distributed import DistInfo, all_reduce_sum, gather_lists

log_module = logging.getLogger("repghost.train")


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
    was_training = model.training
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
    model.train(was_training)
    loss_sum, correct1, correct5, count = all_reduce_sum([loss_sum, correct1, correct5, count], dist_info, device)
    bad = gather_lists(bad, dist_info)
    if count == 0:
        raise RuntimeError("evaluation saw no readable image")
    return dict(top1=100.0 * correct1 / count, top5=100.0 * correct5 / count, loss=loss_sum / count,
                count=int(count), skipped=len(bad), skipped_paths=bad)


def open_for_eval(path: str | Path, use_ema: bool = False, model_name: str | None = None) -> LoadedModel:
    """The model in ``path`` with what the file records: any file :func:`repghost.checkpoint.open_model`
    reads, or an ONNX file :mod:`repghost.deploy` exported (run by onnxruntime)."""
    path = Path(path)
    if path.suffix != ".onnx":
        return open_model(path, model_name=model_name, use_ema=use_ema)
    from ..deploy.onnx_export import OnnxModel, onnx_metadata

    record = props_record(onnx_metadata(path), path)
    model = OnnxModel(path)
    model.num_classes = int(model.session.get_outputs()[0].shape[-1])
    return LoadedModel(model, record.preprocess, record.classes, record.data, "ONNX")


def evaluate_checkpoint(path: str | Path, data: str | None = None, split: str = "val", use_ema: bool = False,
                        reparam: bool = False, batch_size: int = 128, workers: int = 0, device: str | None = None,
                        img_size: int | None = None, mean=None, std=None, model_name: str | None = None,
                        progress: bool = True, log=None) -> dict:
    """Evaluate a model file on an ImageFolder split or the digits split.

    Data and preprocessing default to what the file records (its training data and preprocessing);
    ``img_size`` / ``mean`` / ``std`` override. A file that records no preprocessing is evaluated
    with the model's default, and ``log`` (when given) is told so in one line.
    """
    path = Path(path)
    loaded = open_for_eval(path, use_ema=use_ema, model_name=model_name)
    model, recorded = loaded.model, loaded.preprocess
    for note in loaded.notes:
        if log is not None:
            log(f"note: {note}")
    if recorded is None and loaded.kind == "ONNX":
        if img_size is None or mean is None or std is None:
            raise CheckpointError(f"{path} records no preprocessing (not exported by repghost); give --img-size, "
                                  "--mean and --std")
        recorded = Preprocess(input_size=img_size, mean=mean, std=std)
    elif recorded is None:
        recorded = Preprocess.model_default(model)
        if log is not None:
            log(f"note: {path.name} records no preprocessing; using the model's default "
                f"({recorded.describe()}) where no flag is given")
    preprocess = recorded.override(input_size=img_size, mean=mean, std=std)
    data = data if data is not None else recorded_root(loaded.data, str(path), "pass --data DIR")
    raw = build_datasets(data, splits=(split,))[split]
    n_classes = getattr(model, "num_classes", None)
    if loaded.classes is not None and list(loaded.classes) != list(raw.classes):
        raise CheckpointError(f"{path.name} was trained on classes {_short(loaded.classes)} but {raw.root} has "
                              f"{_short(raw.classes)}; accuracy would be meaningless")
    if n_classes and len(raw.classes) > n_classes:
        raise CheckpointError(f"the model has {n_classes} classes but {raw.root} has {len(raw.classes)}")
    if reparam and not is_deploy(model):
        model = reparameterize(model)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if isinstance(model, nn.Module) and any(True for _ in model.parameters()):
        model.to(dev)
    else:
        dev = torch.device("cpu")
    loader = build_loader(SampleDataset(raw, preprocess.transform()), batch_size, train=False,
                          workers=workers, pin_memory=dev.type == "cuda")
    result = evaluate(model, loader, dev, progress=progress)
    for p in result["skipped_paths"]:
        log_module.warning("skipped unreadable image: %s", p)
    return {**result, "checkpoint": str(path), "form": "deploy" if is_deploy(model) else "train",
            "data": str(data or "digits"), "split": split, "preprocess": preprocess.to_dict()}


def _short(names) -> str:
    names = list(names)
    return "[" + ", ".join(names[:5]) + (", …" if len(names) > 5 else "") + f"] ({len(names)})"
