"""Evaluation: top-1 / top-5 / loss of a model on a loader, and of a checkpoint file on a dataset."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint, load_model, read_metadata
from ..data import SampleDataset, build_datasets, build_loader, build_transform
from ..models import create_model
from ..progress import progress as progress_bar
from ..reparam import is_deploy, reparameterize
from .config import TrainConfig, config_from_dict
from .distributed import DistInfo, all_reduce_sum, gather_lists
from .state import load_training_checkpoint

log = logging.getLogger("repghost.train")

#: The preprocessing keys a deploy / train-form model file carries so that it evaluates alone.
DATA_KEYS = ("data", "img_size", "crop_pct", "mean", "std", "val_interpolation")


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
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top.eq(targets[:, None])
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        count += len(targets)
    model.train(was_training)
    loss_sum, correct1, correct5, count = all_reduce_sum([loss_sum, correct1, correct5, count], dist_info, device)
    bad = gather_lists(bad, dist_info)
    if count == 0:
        raise RuntimeError("evaluation saw no readable image")
    return dict(top1=100.0 * correct1 / count, top5=100.0 * correct5 / count, loss=loss_sum / count,
                count=int(count), skipped=len(bad), skipped_paths=bad)


def load_for_eval(path: str | Path, use_ema: bool = False, model_name: str | None = None,
                  num_classes: int | None = None) -> tuple[nn.Module, dict]:
    """Build the model a checkpoint describes and the data settings it was trained with.

    Accepts a training checkpoint (``.pt``: raw or ``use_ema`` weights), a repghost
    ``.safetensors`` file (train or deploy form, from :func:`repghost.save_checkpoint`), or any
    file :func:`repghost.load_checkpoint` reads when ``model_name`` (and ``num_classes``) are given.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        meta = read_metadata(path)
        return load_model(path), dict(meta["extra"].get("data_config", {}))
    try:
        state = load_training_checkpoint(path)
    except CheckpointError:
        if not model_name:
            raise
        state = None
    if state is not None:
        cfg = config_from_dict(state["config"])
        model = create_model(cfg.model, num_classes=state["num_classes"], drop_rate=cfg.drop_rate,
                             **cfg.model_kwargs)
        if use_ema and "state_dict_ema" not in state:
            raise CheckpointError(f"{path} has no EMA weights (the run had ema_decay 0)")
        load_checkpoint(model, path, use_ema=use_ema)
        return model.eval(), {k: getattr(cfg, k) for k in DATA_KEYS}
    model = create_model(model_name, **({"num_classes": num_classes} if num_classes else {}))
    return load_checkpoint(model, path, use_ema=use_ema).eval(), {}


def evaluate_checkpoint(path: str | Path, data: str | None = None, split: str = "val", use_ema: bool = False,
                        reparam: bool = False, batch_size: int = 128, workers: int = 0, device: str | None = None,
                        img_size: int | None = None, model_name: str | None = None, progress: bool = True) -> dict:
    """Evaluate a checkpoint file on an ImageFolder split or the digits split (its training data by default)."""
    model, data_cfg = load_for_eval(path, use_ema=use_ema, model_name=model_name)
    defaults = TrainConfig(**{k: v for k, v in model.pretrained_cfg.items() if k in ("crop_pct", "mean", "std")})
    cfg = TrainConfig(**{**{k: getattr(defaults, k) for k in DATA_KEYS}, **data_cfg})
    if data is not None:
        cfg.data = data
    if img_size is not None:
        cfg.img_size = img_size
    raw = build_datasets(cfg.data, splits=(split,))[split]
    n_classes = getattr(model, "num_classes", None)
    if n_classes and max(raw.targets) >= n_classes:
        raise CheckpointError(f"the model has {n_classes} classes but {raw.root} has {len(raw.classes)}")
    if reparam:
        model = reparameterize(model)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev)
    loader = build_loader(SampleDataset(raw, build_transform(cfg, is_training=False)), batch_size, train=False,
                          workers=workers, pin_memory=dev.type == "cuda")
    result = evaluate(model, loader, dev, progress=progress)
    for p in result["skipped_paths"]:
        log.warning("skipped unreadable image: %s", p)
    return {**result, "checkpoint": str(path), "form": "deploy" if is_deploy(model) else "train",
            "data": str(cfg.data or "digits"), "split": split}

