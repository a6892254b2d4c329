"""Detector training (the 1× schedule) and evaluation, resumable and torchrun-ready.

One run writes into its output directory:

- ``last.pt``: the resumable training state (model, optimizer, AMP scaler, epoch and step within
  it, RNG, history, configs), written atomically after every epoch — and at the next step after
  Ctrl-C or SIGTERM — with ``torch.save`` of tensors and plain containers only, and read back with
  ``torch.load(weights_only=True)``;
- ``metrics.json``: the latest COCO evaluation; ``history.json``: losses and AP per epoch.

Under ``torchrun`` every process trains on its shard (DistributedSampler) and only rank 0 logs
and writes files. The data order and every flip depend only on (seed, epoch, image index), and the
checkpoint keeps the RNG state and the loss summed so far in the epoch, so a run resumed from a
mid-epoch checkpoint continues that epoch where it stopped.

The settings are in :mod:`.config`, the detector files in :mod:`.files`; this module holds the loop,
its checkpoint and the evaluation of a saved detector.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from ..data import SkipSampler, worker_ignores_stop
from ..io import atomic_torch_save, atomic_write_json
from ..progress import progress, write
from ..run import (
    Runtime,
    StopFlag,
    any_rank,
    barrier,
    capture_rng,
    check_resumable,
    init_runtime,
    restore_rng,
)
from .config import (
    BASE_LR_PER_16,
    COCO_DEFAULTS,
    SYNTHETIC_DEFAULTS,
    DetTrainConfig,
    TrainConfig,
    base_learning_rate,
    learning_rate,
    make_train_config,
)
from .data import CocoDetection, DataConfig, SeededFlips, collate
from .detectors import DetectorConfig, build_detector
from .evaluate import evaluate, format_metrics
from .files import (
    CHECKPOINT_FORMAT,
    categories_of,
    check_categories,
    load_detector,
    read_detector_checkpoint,
    save_detector,
)

#: What this module offered before its settings and files moved out: importable from here still.
__all__ = [
    "BASE_LR_PER_16", "CHECKPOINT_FORMAT", "COCO_DEFAULTS", "SYNTHETIC_DEFAULTS", "DataConfig", "DetTrainConfig",
    "EpochProgress", "Runtime", "SeededFlips", "TrainConfig", "base_learning_rate", "categories_of", "check_categories",
    "evaluate_checkpoint", "init_runtime", "learning_rate", "load_detector", "make_train_config",
    "read_detector_checkpoint", "save_detector", "train_detector",
]


# -- training -----------------------------------------------------------------------------------
def _loader(dataset, batch_size: int, workers: int, runtime: Runtime, train: bool, seed: int = 0) -> DataLoader:
    """Train: shuffled per (seed, epoch) by a sampler that can start mid-epoch; eval: in order, sharded.
    The loader's own generator keeps creating an iterator from drawing on the global RNG."""
    if train:
        sampler = SkipSampler(dataset, runtime.world_size, runtime.rank, shuffle=True, seed=seed)
    elif runtime.world_size > 1:
        sampler = DistributedSampler(dataset, shuffle=False)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                      drop_last=train and len(dataset) >= batch_size, pin_memory=runtime.device.type == "cuda",
                      persistent_workers=False, generator=torch.Generator().manual_seed(seed),
                      worker_init_fn=worker_ignores_stop)


def _log(runtime: Runtime, message: str) -> None:
    if runtime.is_main:
        write(message)


@dataclass
class EpochProgress:
    """How far the current epoch has come; saved when a run stops mid-epoch, so its resumption
    continues the epoch (and its loss averages) where it stopped."""

    step: int = 0                                 # optimizer steps done in this epoch
    sums: dict = field(default_factory=dict)      # loss name → sum over the steps with images
    steps: int = 0                                # steps that had readable images
    skipped: list = field(default_factory=list)   # unreadable images met so far
    seconds: float = 0.0


def _train_one_epoch(model, optimizer, scaler, loader, config: DetTrainConfig, runtime: Runtime, base_lr: float,
                     epoch: int, use_amp: bool, done: EpochProgress, stop: StopFlag | None = None,
                     on_step: Callable[[dict], None] | None = None, ema=None) -> bool:
    """Train the rest of ``epoch`` from ``done.step``, updating ``done``; ``False`` when ``stop`` cut it short."""
    model.train()
    steps_per_epoch = loader.sampler.num_samples // config.batch_size if loader.drop_last else \
        math.ceil(loader.sampler.num_samples / config.batch_size)
    loader.dataset.set_epoch(epoch)
    loader.sampler.set_epoch(epoch)
    loader.sampler.set_start(done.step * config.batch_size)
    started = time.time() - done.seconds
    # Transient: off a terminal the epoch's one line is the record train_detector logs.
    bar = progress(total=steps_per_epoch, initial=done.step, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                   enabled=runtime.is_main, unit="step")
    batches = iter(loader)
    try:
        while done.step < steps_per_epoch:
            if stop is not None and any_rank(stop.requested, runtime.info, runtime.device):
                return False
            try:
                images, targets, unreadable = next(batches)
            except StopIteration:
                break
            except Exception:
                if stop is not None and stop.requested:  # Ctrl-C reaches loader workers too; not an error then
                    return False
                raise
            _train_step(model, optimizer, scaler, images, targets, unreadable, config, runtime, base_lr, epoch,
                        epoch * steps_per_epoch + done.step, config.epochs * steps_per_epoch, use_amp, done, bar,
                        ema)
            done.step += 1
            done.seconds = time.time() - started
            bar.update()
            if on_step is not None:
                on_step({"epoch": epoch, "step": done.step, "global_step": epoch * steps_per_epoch + done.step})
    finally:
        bar.close()
    return True


def _train_step(model, optimizer, scaler, images, targets, unreadable, config: DetTrainConfig, runtime: Runtime,
                base_lr: float, epoch: int, iteration: int, total_iters: int, use_amp: bool, done: EpochProgress,
                bar, ema=None) -> None:
    lr = learning_rate(config, base_lr, epoch, iteration, total_iters)
    for group in optimizer.param_groups:
        group["lr"] = lr
    for path in unreadable:
        if path not in done.skipped:
            done.skipped.append(path)
            _log(runtime, f"skipped unreadable image: {path}")
    if not images:
        return
    images = [img.to(runtime.device, non_blocking=True) for img in images]
    targets = [{k: v.to(runtime.device, non_blocking=True) for k, v in t.items()} for t in targets]
    with torch.autocast(runtime.device.type, enabled=use_amp):
        losses = model(images, targets)
    loss = sum(losses.values())
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, step {done.step} "
                                 f"({ {k: round(v.item(), 4) for k, v in losses.items()} }); try a lower --lr")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.clip_grad:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
    scaler.step(optimizer)
    scaler.update()
    if ema is not None:
        ema.update(model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model,
                   step=iteration + 1)
    for name, value in {"loss": loss, **losses}.items():
        done.sums[name] = done.sums.get(name, 0.0) + value.item()
    done.steps += 1
    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")


def _epoch_record(epoch: int, done: EpochProgress) -> dict:
    return {"epoch": epoch + 1, **{name: round(total / max(done.steps, 1), 5) for name, total in done.sums.items()},
            "skipped_images": len(done.skipped), "seconds": round(done.seconds, 1)}


def _resume_state(config: DetTrainConfig, out: Path) -> dict | None:
    path = out / "last.pt"
    if not config.resume:
        if path.exists():
            raise FileExistsError(f"{path} exists; pass --resume to continue that run, or choose another --output")
        return None
    return read_detector_checkpoint(path)


def _check_resumable(state: dict, config: DetTrainConfig, dataset: CocoDetection, path: Path) -> None:
    check_resumable(path, DetectorConfig.from_dict(state["detector"]).to_dict(), config.detector.to_dict(),
                    what="detector settings")
    check_categories(state["categories"], dataset, str(path))


def train_detector(config: DetTrainConfig, on_step: Callable[[dict], None] | None = None,
                   stop_note: str | None = None, stop_after_epoch: int | None = None) -> dict:
    """Train per ``config``; returns the final COCO metrics (also in ``output/metrics.json``).

    Ctrl-C (SIGINT) or SIGTERM stops the run at the next step and saves a resumable ``last.pt``
    (a second one aborts at once); it then returns ``{"interrupted": True, "epoch": ..., "step": ...,
    "checkpoint": ...}`` instead of metrics. ``on_step({"epoch", "step", "global_step"})`` is called
    after every optimizer step (progress hooks, tests). ``stop_note`` replaces the Ctrl-C line's hint on
    how to go on (a study that runs this training says how to resume the study).

    ``stop_after_epoch=k`` trains only up to epoch ``k`` of the schedule now (the first rung of successive
    halving: the schedule, learning rate included, is still ``config.epochs`` long). It saves the resumable
    ``last.pt`` and returns ``{"paused": True, "epoch": ..., "checkpoint": ...}``; resuming without it later
    finishes the run as if it had never stopped. A run already at or past epoch ``k`` is not trained.
    """
    if stop_after_epoch is not None and stop_after_epoch < 1:
        raise ValueError(f"stop_after_epoch must be ≥ 1, got {stop_after_epoch}")
    runtime = init_runtime(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.output)
    resume = _resume_state(config, out)
    masks = config.detector.model == "maskrcnn"
    if runtime.is_main:  # generate the synthetic set once, before the other ranks read it
        config.data.resolve_root()
    barrier(runtime.info)
    train_set = config.data.dataset(config.data.train_split, train=True, masks=masks)
    val_set = config.data.dataset(config.data.val_split, train=False, masks=masks)
    _log(runtime, f"train: {train_set.report.summary()}\nval:   {val_set.report.summary()}")
    config.detector.num_classes = train_set.num_classes
    if resume is not None:
        _check_resumable(resume, config, train_set, out / "last.pt")

    torch.manual_seed(config.seed)
    model = build_detector(config.detector, pretrained=None if resume else config.pretrained).to(runtime.device)
    if config.bn_momentum is not None:
        set_bn_momentum(model, config.bn_momentum)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0, momentum=config.momentum, weight_decay=config.weight_decay)
    use_amp = config.amp and runtime.device.type == "cuda"
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=use_amp)
    start_epoch, history, partial = 0, [], None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scaler.load_state_dict(resume["scaler"])
        start_epoch, history = resume["epoch"], list(resume["history"])
        if resume.get("progress", {}).get("step"):
            partial = EpochProgress(**resume["progress"])
        _log(runtime, f"resumed {out / 'last.pt'} at epoch {start_epoch + 1}, step {partial.step if partial else 0}")
    ema = _make_ema(model, config, resume)
    train_model = model
    if runtime.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)

    train_loader = _loader(SeededFlips(train_set, config.seed), config.batch_size, config.workers, runtime,
                           train=True, seed=config.seed)
    val_loader = _loader(val_set, config.batch_size, config.workers, runtime, train=False)
    base_lr = base_learning_rate(config, runtime.world_size)
    _log(runtime, f"{config.detector.model} on {config.detector.backbone}: {len(train_set)} train images, "
                  f"{len(train_loader)} steps/epoch × {config.epochs} epochs, base lr {base_lr:g}, "
                  f"{runtime.world_size} process(es) on {runtime.device}")
    save = _saver(out, model, optimizer, scaler, config, train_set, runtime, ema)
    scored = model if ema is None else ema.module  # the weights evaluated and reported
    # The one line Ctrl-C prints goes to stderr, from the main process.
    stop = StopFlag(note=stop_note or f"resume with the same det-train command and --resume (continues "
                                      f"{out / 'last.pt'})",
                    announce=lambda message: write(message, file=sys.stderr) if runtime.is_main else None)
    metrics = None

    def paused_at(epoch: int) -> dict | None:
        if stop_after_epoch is None or not stop_after_epoch <= epoch < config.epochs:
            return None
        return {"paused": True, "epoch": epoch, "checkpoint": str(out / "last.pt")}

    if partial is None and (paused := paused_at(start_epoch)):
        return paused
    with stop:
        for epoch in range(start_epoch, config.epochs):
            torch.manual_seed(config.seed + 1000 * (epoch + 1))  # model-side randomness: same after a resume
            done = EpochProgress()
            if partial is not None and epoch == start_epoch:
                done = partial
                restore_rng(resume["rng"])  # where the interrupted epoch left the RNG
            if not _train_one_epoch(train_model, optimizer, scaler, train_loader, config, runtime, base_lr, epoch,
                                    use_amp, done, stop, on_step, ema):
                save(epoch, history, done)
                return {"interrupted": True, "epoch": epoch, "step": done.step, "checkpoint": str(out / "last.pt")}
            record = _epoch_record(epoch, done)
            last = epoch + 1 == config.epochs
            if last or (config.eval_every and (epoch + 1) % config.eval_every == 0):
                metrics = evaluate(scored, val_loader, runtime.device, use_amp, progress=runtime.is_main)
                record["AP"] = metrics["bbox"]["AP"]
                if "segm" in metrics:
                    record["mask_AP"] = metrics["segm"]["AP"]
            history.append(record)
            _log(runtime, "  ".join(f"{k} {v}" for k, v in record.items()))
            save(epoch + 1, history)
            if runtime.is_main and metrics is not None:
                atomic_write_json(out / "metrics.json", {**metrics, "epoch": epoch + 1})
            # Asked for in the epoch's last step or its evaluation: the epoch is saved whole; stop here.
            if any_rank(stop.requested, runtime.info, runtime.device):
                return {"interrupted": True, "epoch": epoch + 1, "step": 0, "checkpoint": str(out / "last.pt")}
            if paused := paused_at(epoch + 1):
                return paused
    if metrics is None:  # nothing left to train (or epochs == 0): report the model as it is
        metrics = evaluate(scored, val_loader, runtime.device, use_amp, progress=runtime.is_main)
        save(max(start_epoch, config.epochs), history)
        if runtime.is_main:
            atomic_write_json(out / "metrics.json", {**metrics, "epoch": max(start_epoch, config.epochs)})
    _log(runtime, format_metrics(metrics))
    return metrics


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """Give every BatchNorm layer of ``model`` this running-statistics momentum (PyTorch convention)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


def _make_ema(model: nn.Module, config: DetTrainConfig, resume: dict | None):
    """The weights' EMA (timm's, with its warm-up: the decay ramps from 0 towards ``ema_decay``, so a short
    run's average soon forgets the random initial weights), restored on resume; ``None`` without EMA."""
    if not config.ema_decay:
        return None
    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(model, decay=config.ema_decay, use_warmup=True)
    if resume is not None and resume.get("ema") is not None:
        ema.module.load_state_dict(resume["ema"])
    return ema


def _saver(out: Path, model, optimizer, scaler, config: DetTrainConfig, dataset, runtime: Runtime, ema=None):
    """``save(epoch, history, progress=None)``: ``last.pt`` (rank 0) after ``epoch`` whole epochs and,
    mid-epoch, ``progress`` steps into the next; ``history.json`` beside it. With EMA, ``ema`` holds the
    averaged weights (what the run evaluates and what :func:`load_detector` loads)."""
    def save(epoch: int, history: list, done: EpochProgress | None = None) -> None:
        if not runtime.is_main:
            return
        atomic_torch_save({
            "format": CHECKPOINT_FORMAT, "detector": config.detector.to_dict(), "train": config.to_dict(),
            "categories": categories_of(dataset), "epoch": epoch, "history": history,
            "progress": dataclasses.asdict(done or EpochProgress()), "rng": capture_rng(),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "ema": None if ema is None else {k: v.detach().cpu() for k, v in ema.module.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        }, out / "last.pt")
        atomic_write_json(out / "history.json", history)

    return save


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
    from ..reparam import fold_and_verify
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
        model, check = fold_and_verify(model, (1, 3, 128, 128), fold=reparameterize_detector, part=detector_body)
        _log(runtime, f"backbone re-parameterized: {check}")
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
