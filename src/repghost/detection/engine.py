"""Detector training (the 1× schedule) and evaluation, resumable and torchrun-ready.

One run writes into its output directory:

- ``last.pt``: the resumable training state (model, optimizer, AMP scaler, epoch, RNG, history,
  configs), written atomically after every epoch with ``torch.save`` of tensors and plain
  containers only, and read back with ``torch.load(weights_only=True)``;
- ``metrics.json``: the latest COCO evaluation; ``history.json``: losses and AP per epoch.

Under ``torchrun`` every process trains on its shard (DistributedSampler) and only rank 0 logs
and writes files.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from ..checkpoint import CheckpointError, read_checkpoint_file
from ..io import atomic_torch_save, atomic_write_json
from ..progress import progress, write
from ..train.distributed import init_distributed
from .config import SYNTHETIC_DEFAULTS, DataConfig, TrainConfig, make_train_config  # noqa: F401  (re-exported)
from .data import CocoDetection, collate
from .evaluate import evaluate, format_metrics
from .models import DetectorConfig, build_detector

CHECKPOINT_FORMAT = "repghost-detection"
#: Base learning rate per 16 images (the 1× recipes' 8 GPUs × 2); scaled linearly with the batch.
BASE_LR_PER_16 = {"retinanet": 0.01, "maskrcnn": 0.02, "ssdlite": 0.01}


# -- distributed --------------------------------------------------------------------------------
@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_runtime(device: str | None = None) -> Runtime:
    """One process, or one of ``torchrun``'s (WORLD_SIZE > 1): NCCL on CUDA, Gloo on CPU."""
    info, dev = init_distributed(device)
    return Runtime(dev, info.rank, info.world_size)


# -- schedule -----------------------------------------------------------------------------------
def learning_rate(config: TrainConfig, base_lr: float, epoch: int, iteration: int) -> float:
    """Step decay at ``lr_steps`` (epochs) after a linear warm-up over the first ``warmup_iters``."""
    lr = base_lr * config.lr_gamma ** sum(epoch >= step for step in config.lr_steps)
    if iteration < config.warmup_iters:
        alpha = iteration / config.warmup_iters
        lr *= config.warmup_factor * (1 - alpha) + alpha
    return lr


def base_learning_rate(config: TrainConfig, world_size: int) -> float:
    if config.lr is not None:
        return config.lr
    return BASE_LR_PER_16[config.detector.model] * config.batch_size * world_size / 16


# -- checkpoints --------------------------------------------------------------------------------
def read_detector_checkpoint(path: str | os.PathLike) -> dict:
    """A detection checkpoint (``last.pt`` or one saved by :func:`save_detector`), tensors only."""
    state = read_checkpoint_file(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a repghost detection checkpoint (no {CHECKPOINT_FORMAT!r} format tag)")
    return state


def save_detector(model: nn.Module, path: str | os.PathLike, categories: list[dict], extra: dict | None = None) -> Path:
    """Write a standalone detector checkpoint (weights + config + categories) atomically."""
    path = Path(path)
    state = {"format": CHECKPOINT_FORMAT, "detector": model.detector_config.to_dict(), "categories": categories,
             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **(extra or {})}
    atomic_torch_save(state, path)
    return path


def load_detector(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Rebuild the detector saved in ``path`` (train or deploy form) in eval mode, and the checkpoint dict."""
    state = read_detector_checkpoint(path)
    model = build_detector(DetectorConfig.from_dict(state["detector"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit its own detector config: {err}") from None
    return model.eval(), state


def categories_of(dataset: CocoDetection) -> list[dict]:
    return [{"id": int(c), "name": n} for c, n in zip(dataset.category_ids, dataset.category_names, strict=True)]


def check_categories(expected: list[dict], dataset: CocoDetection, source: str) -> None:
    found = categories_of(dataset)
    if [c["id"] for c in expected] != [c["id"] for c in found]:
        raise ValueError(f"{source} was trained on category ids {[c['id'] for c in expected]}, but "
                         f"{dataset.ann_file} has {[c['id'] for c in found]}")


# -- training -----------------------------------------------------------------------------------
def _loader(dataset, batch_size: int, workers: int, runtime: Runtime, train: bool) -> DataLoader:
    if runtime.world_size > 1:
        sampler = DistributedSampler(dataset, shuffle=train)
    else:
        sampler = RandomSampler(dataset) if train else SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                      drop_last=train and len(dataset) >= batch_size, pin_memory=runtime.device.type == "cuda",
                      persistent_workers=False)


def _log(runtime: Runtime, message: str) -> None:
    if runtime.is_main:
        write(message)


def _train_one_epoch(model, optimizer, scaler, loader, config: TrainConfig, runtime: Runtime, base_lr: float,
                     epoch: int, use_amp: bool) -> dict[str, float]:
    model.train()
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    sums: dict[str, float] = {}
    steps, skipped = 0, []
    # Transient: off a terminal the epoch's one line is the record train_detector logs.
    bar = progress(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, enabled=runtime.is_main,
                   unit="step")
    for step, (images, targets, unreadable) in enumerate(bar):
        lr = learning_rate(config, base_lr, epoch, epoch * len(loader) + step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        skipped += unreadable
        if not images:
            continue
        images = [img.to(runtime.device, non_blocking=True) for img in images]
        targets = [{k: v.to(runtime.device, non_blocking=True) for k, v in t.items()} for t in targets]
        with torch.autocast(runtime.device.type, enabled=use_amp):
            losses = model(images, targets)
        loss = sum(losses.values())
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, step {step} "
                                     f"({ {k: round(v.item(), 4) for k, v in losses.items()} }); try a lower --lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.clip_grad:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        for name, value in {"loss": loss, **losses}.items():
            sums[name] = sums.get(name, 0.0) + value.item()
        steps += 1
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
    for path in skipped:
        _log(runtime, f"skipped unreadable image: {path}")
    return {**{name: total / max(steps, 1) for name, total in sums.items()}, "skipped_images": len(skipped)}


def _resume_state(config: TrainConfig, out: Path) -> dict | None:
    path = out / "last.pt"
    if not config.resume:
        if path.exists():
            raise FileExistsError(f"{path} exists; pass --resume to continue that run, or choose another --output")
        return None
    return read_detector_checkpoint(path)


def _check_resumable(state: dict, config: TrainConfig, dataset: CocoDetection, path: Path) -> None:
    saved = DetectorConfig.from_dict(state["detector"])
    if saved != config.detector:
        diff = {k: (v, getattr(config.detector, k)) for k, v in saved.to_dict().items()
                if getattr(config.detector, k) != v}
        raise ValueError(f"cannot resume {path}: detector settings differ (saved, now): {diff}")
    check_categories(state["categories"], dataset, str(path))


def train_detector(config: TrainConfig) -> dict:
    """Train per ``config``; returns the final COCO metrics (also in ``output/metrics.json``)."""
    runtime = init_runtime(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.output)
    resume = _resume_state(config, out)
    masks = config.detector.model == "maskrcnn"
    if runtime.is_main:  # generate the synthetic set once, before the other ranks read it
        config.data.resolve_root()
    if runtime.world_size > 1:
        dist.barrier()
    train_set = config.data.dataset(config.data.train_split, train=True, masks=masks)
    val_set = config.data.dataset(config.data.val_split, train=False, masks=masks)
    _log(runtime, f"train: {train_set.report.summary()}\nval:   {val_set.report.summary()}")
    config.detector.num_classes = train_set.num_classes
    if resume is not None:
        _check_resumable(resume, config, train_set, out / "last.pt")

    torch.manual_seed(config.seed)
    model = build_detector(config.detector, pretrained=None if resume else config.pretrained).to(runtime.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0, momentum=config.momentum, weight_decay=config.weight_decay)
    use_amp = config.amp and runtime.device.type == "cuda"
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=use_amp)
    start_epoch, history = 0, []
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scaler.load_state_dict(resume["scaler"])
        start_epoch, history = resume["epoch"], list(resume["history"])
        _log(runtime, f"resumed {out / 'last.pt'} after epoch {start_epoch}")
    train_model = model
    if runtime.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)

    train_loader = _loader(train_set, config.batch_size, config.workers, runtime, train=True)
    val_loader = _loader(val_set, config.batch_size, config.workers, runtime, train=False)
    base_lr = base_learning_rate(config, runtime.world_size)
    _log(runtime, f"{config.detector.model} on {config.detector.backbone}: {len(train_set)} train images, "
                  f"{len(train_loader)} steps/epoch × {config.epochs} epochs, base lr {base_lr:g}, "
                  f"{runtime.world_size} process(es) on {runtime.device}")
    metrics = None
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed + 1000 * (epoch + 1))  # data order and flips: same after a resume
        start = time.time()
        losses = _train_one_epoch(train_model, optimizer, scaler, train_loader, config, runtime, base_lr, epoch,
                                  use_amp)
        record = {"epoch": epoch + 1, **{k: round(v, 5) for k, v in losses.items()},
                  "seconds": round(time.time() - start, 1)}
        last = epoch + 1 == config.epochs
        if last or (config.eval_every and (epoch + 1) % config.eval_every == 0):
            metrics = evaluate(model, val_loader, runtime.device, use_amp, progress=runtime.is_main)
            record["AP"] = metrics["bbox"]["AP"]
            if "segm" in metrics:
                record["mask_AP"] = metrics["segm"]["AP"]
        history.append(record)
        _log(runtime, "  ".join(f"{k} {v}" for k, v in record.items()))
        if runtime.is_main:
            _save_state(out, model, optimizer, scaler, config, train_set, epoch + 1, history)
            if metrics is not None:
                atomic_write_json(out / "metrics.json", {**metrics, "epoch": epoch + 1})
    if metrics is None:  # nothing left to train (or epochs == 0): report the model as it is
        metrics = evaluate(model, val_loader, runtime.device, use_amp, progress=runtime.is_main)
        if runtime.is_main:
            _save_state(out, model, optimizer, scaler, config, train_set, max(start_epoch, config.epochs), history)
            atomic_write_json(out / "metrics.json", {**metrics, "epoch": max(start_epoch, config.epochs)})
    _log(runtime, format_metrics(metrics))
    return metrics


def _save_state(out: Path, model, optimizer, scaler, config: TrainConfig, dataset, epoch: int, history) -> None:
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT, "detector": config.detector.to_dict(), "train": config.to_dict(),
        "categories": categories_of(dataset), "epoch": epoch, "history": history,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
    }, out / "last.pt")
    atomic_write_json(out / "history.json", history)



# -- evaluation of a saved detector -------------------------------------------------------------
def evaluate_checkpoint(checkpoint: str | os.PathLike, data: DataConfig | None = None, batch_size: int = 2,
                        workers: int = 2, device: str | None = None, reparameterize: bool = False,
                        output: str | os.PathLike | None = None,
                        save_deploy: str | os.PathLike | None = None, threads: int | None = None) -> dict:
    """COCO metrics of a saved detector on ``data``'s val split (default: the data it was trained on).

    ``reparameterize`` evaluates the backbone's deploy form (and ``save_deploy`` writes that
    detector to a file). Metrics are written to ``output`` (default ``<checkpoint dir>/eval_<form>.json``)
    by rank 0.
    """
    from ..reparam import verify_fold
    from .models import detector_body, reparameterize_detector

    if save_deploy and not reparameterize:
        raise ValueError("--save-deploy needs --reparameterize")
    runtime = init_runtime(device)
    if threads:
        torch.set_num_threads(threads)
    model, state = load_detector(checkpoint)
    if data is None:
        if "train" not in state:
            raise ValueError(f"{checkpoint} does not record its data; pass the dataset to evaluate on")
        data = DataConfig(**state["train"]["data"])
    if reparameterize and not model.detector_config.deploy:
        deployed = reparameterize_detector(model)
        check = verify_fold(detector_body(model), detector_body(deployed), (1, 3, 128, 128))
        if not check.ok:
            raise ValueError(f"the folded backbone disagrees with the checkpoint's ({check}); nothing written")
        _log(runtime, f"backbone re-parameterized: {check}")
        model = deployed
    model.to(runtime.device)
    dataset = data.dataset(data.val_split, train=False, masks=model.detector_config.model == "maskrcnn")
    check_categories(state["categories"], dataset, str(checkpoint))
    _log(runtime, f"val: {dataset.report.summary()}")
    loader = _loader(dataset, batch_size, workers, runtime, train=False)
    metrics = evaluate(model, loader, runtime.device, progress=runtime.is_main)
    form = "deploy" if model.detector_config.deploy else "train"
    metrics.update(checkpoint=str(checkpoint), form=form, epoch=state.get("epoch"))
    if runtime.is_main:
        atomic_write_json(Path(output) if output else Path(checkpoint).parent / f"eval_{form}.json", metrics)
        if save_deploy:
            save_detector(model, save_deploy, state["categories"], extra={"epoch": state.get("epoch")})
    _log(runtime, format_metrics(metrics))
    return metrics
