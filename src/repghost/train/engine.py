"""The training loop: data → model (+EMA, DDP) → optimizer and per-step schedule → checkpoints → deploy form.

``train(cfg)`` runs a whole job and leaves a run directory::

    runs/<name>/config.yaml              the resolved config
    runs/<name>/metrics.csv, curves.png  per-epoch metrics and their plot (tb/ when TensorBoard is installed)
    runs/<name>/last.pt, best.pt         resumable training checkpoints (best = best val top-1, raw or EMA)
    runs/<name>/best_model.safetensors   the best weights, train form  (repghost.load_model rebuilds it)
    runs/<name>/best_deploy.safetensors  the same, re-parameterized and checked equal to the train form
    runs/<name>/log.txt

Exact resume: the data order and every augmentation depend only on (seed, epoch, sample index),
and checkpoints carry all RNG states and the position within the epoch, so a resumed run makes
the same updates as an uninterrupted one.

Over 350 lines for one reason: :class:`Trainer` is one object whose methods share the run's state
(model, EMA, optimizer, position, best result); what does not need that state lives beside it
(:mod:`.config`, :mod:`.fit`, :mod:`.evaluate`, :mod:`.report`, :mod:`.state`, :mod:`repghost.run`).
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import load_checkpoint, save_checkpoint, training_checkpoint
from ..data import (
    DataError,
    SampleDataset,
    build_datasets,
    build_loader,
    build_transform,
    describe_data,
    recorded_root,
)
from ..io import atomic_torch_save
from ..models import create_model, resolve_model_name, short_model_name
from ..preprocess import Preprocess
from ..progress import progress
from ..reparam import FoldCheck, fold_and_verify
from ..run import StopFlag, any_rank, capture_rng, check_resumable, cleanup, gather_lists, init_distributed, restore_rng
from .config import TrainConfig, absolute_paths, config_from_dict, config_to_dict, save_config, validate_config
from .evaluate import autocast, evaluate
from .fit import check_schedule, describe_derived, fit_to_data
from .report import FILE_ONLY, MetricsLog, plot_curves, setup_logging
from .state import load_training_checkpoint, plain_scheduler_state

log = logging.getLogger("repghost.train")


@dataclass
class TrainResult:
    run_dir: Path
    best_top1: float
    best_epoch: int
    best_source: str            # "model" or "ema": which weights scored best_top1
    epochs_done: int
    interrupted: bool
    deploy_path: Path | None
    equivalence: FoldCheck | None   # how the deploy file relates to the best train-form weights


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    choice = cfg.amp
    if choice == "auto":
        if device.type != "cuda":
            return None
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """One training job. Build it with a resolved config (or a checkpoint to resume), then :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, resume: str | Path | None = None,
                 on_step: Callable[[Trainer], None] | None = None, stop_note: str | None = None):
        resume_state = load_training_checkpoint(resume) if resume else None
        if resume_state is not None:
            cfg = config_from_dict(resume_state["config"])
        validate_config(cfg)
        self.cfg, self.on_step = cfg, on_step
        self.stop_note = stop_note  # what Ctrl-C's one line says to do next (default: the resume command)
        self._new_dir: Path | None = None
        try:
            self._setup(cfg, resume, resume_state)
        except BaseException:
            # A run that failed to start leaves nothing behind (an empty or half-made run directory).
            if self._new_dir is not None:
                shutil.rmtree(self._new_dir, ignore_errors=True)
            raise

    def _setup(self, cfg: TrainConfig, resume, resume_state) -> None:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.dist, self.device = init_distributed(cfg.device)
        self.amp_dtype = _amp_dtype(cfg, self.device)
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else self.device.type == "cuda"

        # Everything that can be wrong with the data, the schedule or the model name fails here, before any training.
        if resume_state is not None:
            recorded_root(cfg.data, str(resume), "run --resume from that directory")
        raw = build_datasets(cfg.data)
        self.classes = raw["train"].classes
        self.num_classes = cfg.num_classes or len(self.classes)
        if self.num_classes < len(self.classes):
            raise DataError(f"num_classes={self.num_classes} but the data has {len(self.classes)} classes")
        cfg = fit_to_data(absolute_paths(cfg), raw["train"], self.dist.world_size)  # a config built in Python
        self.schedule_warnings = check_schedule(cfg, len(raw["train"]), self.dist.world_size)
        global_batch = cfg.batch_size * self.dist.world_size
        _seed_all(cfg.seed)  # same initial weights on every rank
        # A searched architecture's file is recorded as its inline name: the run does not need the file.
        self.cfg = cfg = replace(cfg, model=resolve_model_name(cfg.model))
        model = create_model(cfg.model, num_classes=self.num_classes, drop_rate=cfg.drop_rate, **cfg.model_kwargs)

        self.run_dir = Path(resume).parent if resume else self._new_run_dir()
        setup_logging(log, self.run_dir if self.dist.is_main else None, self.dist.is_main)
        if cfg.pretrained and resume_state is None:
            load_checkpoint(model, cfg.pretrained, use_ema=True, drop_classifier=True)
            log.info("initial weights: %s", cfg.pretrained)
        if cfg.sync_bn and self.dist.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=cfg.ema_warmup) if cfg.ema_decay > 0 else None
        self.ddp = DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None) \
            if self.dist.enabled else model

        self.lr = cfg.lr if cfg.lr is not None else cfg.lr_base * global_batch / cfg.lr_base_size
        self.optimizer = create_optimizer_v2(model, opt=cfg.opt, lr=self.lr, weight_decay=cfg.weight_decay,
                                             momentum=cfg.momentum)
        self.datasets = {s: SampleDataset(r, build_transform(cfg, s == "train"), seed=cfg.seed) for s, r in raw.items()}
        pin = self.device.type == "cuda"
        self.train_loader = build_loader(self.datasets["train"], cfg.batch_size, train=True, seed=cfg.seed,
                                         workers=cfg.workers, rank=self.dist.rank, world_size=self.dist.world_size,
                                         pin_memory=pin)
        self.val_loader = build_loader(self.datasets["val"], cfg.batch_size, train=False, seed=cfg.seed,
                                       workers=cfg.workers, rank=self.dist.rank, world_size=self.dist.world_size,
                                       pin_memory=pin)
        self.steps_per_epoch = self.train_loader.sampler.num_samples // cfg.batch_size
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, sched=cfg.sched, num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
            warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr, step_on_epochs=False, updates_per_epoch=self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        self.epoch = self.step_in_epoch = self.global_step = 0
        self.epoch_loss = {"sum": 0.0, "seen": 0}  # this epoch so far: a mid-epoch resume continues it
        self.best = {"top1": -1.0, "epoch": -1, "source": "model"}
        self.skipped: set[str] = set()
        self.best_weights: dict | None = None
        if resume_state is not None:
            self._load_state(resume_state, resume)
            log.info("resumed %s at epoch %d, step %d of %d", resume, self.epoch, self.step_in_epoch,
                     self.steps_per_epoch)
        else:
            _seed_all(cfg.seed + self.dist.rank)  # per-rank randomness (dropout) from here on
            if self.dist.is_main:
                save_config(cfg, self.run_dir / "config.yaml", extra={"resolved_lr": self.lr,
                                                                      "world_size": self.dist.world_size})
        self.metrics = MetricsLog(self.run_dir, resume_epoch=self.epoch if resume_state else None) \
            if self.dist.is_main else None
        self._log_setup(raw, resumed=resume_state is not None)

    # -- setup helpers ---------------------------------------------------------------------
    def _new_run_dir(self) -> Path:
        name = self.cfg.name or f"{time.strftime('%Y%m%d-%H%M%S')}-{short_model_name(self.cfg.model)}"
        run_dir = Path(self.cfg.output) / name
        if self.dist.is_main:
            if (run_dir / "last.pt").exists():
                raise FileExistsError(f"{run_dir} already holds a run; resume it with --resume {run_dir}/last.pt "
                                      "or choose another --name")
            if run_dir.exists() and not run_dir.is_dir():
                raise FileExistsError(f"{run_dir} is a file; choose another --output or --name")
            if not run_dir.exists():
                self._new_dir = run_dir
            run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _log_setup(self, raw, resumed: bool) -> None:
        cfg, d = self.cfg, self.dist
        log.info("run directory: %s", self.run_dir)
        if cfg.derived and not resumed:
            log.info(describe_derived(cfg))
        for warning in self.schedule_warnings:
            log.warning("warning: %s", warning)
        log.info("data: %s — %d train / %d val images, %d classes", describe_data(cfg.data), len(raw["train"]),
                 len(raw["val"]), len(self.classes))
        log.info("model: %s (%.2fM params), %d epochs × %d steps, batch %d × %d processes, lr %.4g, device %s%s",
                 cfg.model, sum(p.numel() for p in self.model.parameters()) / 1e6, cfg.epochs, self.steps_per_epoch,
                 cfg.batch_size, d.world_size, self.lr, self.device,
                 f", AMP {self.amp_dtype}".replace("torch.", "") if self.amp_dtype else "")

    # -- checkpoint state ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return training_checkpoint(
            self.model.state_dict(), config_to_dict(self.cfg), dict(self.model.model_kwargs), self.num_classes,
            list(self.classes), dict(self.best), self.ema.module.state_dict() if self.ema is not None else None,
            optimizer=self.optimizer.state_dict(), scheduler=plain_scheduler_state(self.scheduler),
            scaler=self.scaler.state_dict(), epoch=self.epoch, step_in_epoch=self.step_in_epoch,
            global_step=self.global_step, skipped=sorted(self.skipped), rng=capture_rng(),
            world_size=self.dist.world_size, epoch_loss=dict(self.epoch_loss))

    def _load_state(self, state: dict, path) -> None:
        check_resumable(path, {"world_size": state["world_size"]}, {"world_size": self.dist.world_size},
                        what="process counts", hint="exact resume needs the same number of processes",
                        error=RuntimeError)
        self.model.load_state_dict(state["state_dict"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["state_dict_ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        self.best, self.skipped = dict(state["best"]), set(state["skipped"])
        self.epoch_loss = dict(state.get("epoch_loss", {"sum": 0.0, "seen": 0}))
        restore_rng(state["rng"])

    def save(self, name: str = "last.pt") -> Path | None:
        if not self.dist.is_main:
            return None
        return atomic_torch_save(self.state_dict(), self.run_dir / name)

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg, interrupted = self.cfg, False
        note = self.stop_note or f"resume with: repghost train --resume {self.run_dir / 'last.pt'}"
        with StopFlag(note=note, announce=log.warning) as stop:
            while self.epoch < cfg.epochs and not interrupted:
                train_stats = self._train_epoch(stop)
                if train_stats is None:
                    interrupted = True
                    break
                self._end_epoch(train_stats)
            interrupted = interrupted or stop.requested  # asked for in the last step: stop before finishing
        if interrupted:  # the console has had its one line from StopFlag
            path = self.save()
            log.warning("interrupted at epoch %d step %d, saved %s", self.epoch, self.step_in_epoch,
                        path or self.run_dir / "last.pt", extra={FILE_ONLY: True})
        result = self._finish(interrupted)
        if self.metrics is not None:
            self.metrics.close()
        return result

    def _batches(self):
        """This epoch's batches, starting after those already consumed (mid-epoch resume)."""
        self.datasets["train"].set_epoch(self.epoch)
        sampler = self.train_loader.sampler
        sampler.set_epoch(self.epoch)
        sampler.set_start(self.step_in_epoch * self.cfg.batch_size)
        return iter(self.train_loader)

    def _train_epoch(self, stop: StopFlag) -> dict | None:
        """One epoch (or its remainder). Returns its stats, or ``None`` when interrupted."""
        cfg = self.cfg
        self.ddp.train()
        start, seen_here = time.perf_counter(), 0
        # Transient: off a terminal the epoch's one line is the summary _end_epoch logs.
        bar = progress(total=self.steps_per_epoch, initial=self.step_in_epoch, leave=False, unit="step",
                       desc=f"epoch {self.epoch + 1}/{cfg.epochs}", enabled=cfg.progress and self.dist.is_main,
                       dynamic_ncols=True)
        batches = self._batches()
        while self.step_in_epoch < self.steps_per_epoch:
            if any_rank(stop.requested, self.dist, self.device):
                bar.close()
                return None
            try:
                images, targets, bad = next(batches)
            except StopIteration:
                break
            except Exception:
                if stop.requested:  # Ctrl-C also reaches loader workers; their exit is not an error then
                    bar.close()
                    return None
                raise
            self._note_skipped(bad)
            if images is not None:
                self.epoch_loss["sum"] += self._train_step(images, targets) * len(targets)
                self.epoch_loss["seen"] += len(targets)
                seen_here += len(targets)
            self.step_in_epoch += 1
            self.global_step += 1
            self.scheduler.step_update(num_updates=self.global_step)
            if self.ema is not None:
                self.ema.update(self.model, step=self.global_step)
            elapsed = time.perf_counter() - start
            bar.update()
            loss = self.epoch_loss["sum"] / max(self.epoch_loss["seen"], 1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self._lr():.2e}",
                            img_s=f"{seen_here * self.dist.world_size / max(elapsed, 1e-9):.0f}")
            if (cfg.ckpt_every_steps and self.global_step % cfg.ckpt_every_steps == 0
                    and self.step_in_epoch < self.steps_per_epoch):
                self.save()
            if self.on_step is not None:
                self.on_step(self)
        bar.close()
        elapsed = time.perf_counter() - start
        train_loss = self.epoch_loss["sum"] / max(self.epoch_loss["seen"], 1)
        return dict(train_loss=train_loss, train_img_s=seen_here * self.dist.world_size / max(elapsed, 1e-9),
                    epoch_time_s=elapsed)

    def _train_step(self, images: torch.Tensor, targets: torch.Tensor) -> float:
        cfg = self.cfg
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp_dtype):
            loss = F.cross_entropy(self.ddp(images), targets, label_smoothing=cfg.smoothing)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.global_step}; lower the learning rate "
                                     "or set clip_grad")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _note_skipped(self, bad: list[str]) -> None:
        for path in bad:
            if path not in self.skipped:
                self.skipped.add(path)
                log.warning("skipped unreadable image: %s", path)

    def _end_epoch(self, train_stats: dict) -> None:
        cfg = self.cfg
        self.skipped |= set(gather_lists(sorted(self.skipped), self.dist))
        last_epoch = self.epoch + 1 == cfg.epochs
        row = {"epoch": self.epoch, "step": self.global_step, "lr": self._lr(), **train_stats}
        if (self.epoch + 1) % cfg.eval_every == 0 or last_epoch:
            row.update(self._evaluate_epoch())
        row["skipped_images"] = len(self.skipped)  # train and val images, since the start of the run
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self.epoch_loss = {"sum": 0.0, "seen": 0}
        improved = self._update_best(row)
        if self.dist.is_main:
            self.metrics.append(row)
            msg = (f"epoch {row['epoch'] + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f}, "
                   f"{row['train_img_s']:.0f} img/s")
            if "val_top1" in row:
                msg += f", val top-1 {row['val_top1']:.2f} % (loss {row['val_loss']:.4f})"
            if "ema_top1" in row:
                msg += f", EMA top-1 {row['ema_top1']:.2f} %"
            if self.skipped:
                msg += f", {len(self.skipped)} unreadable images skipped"
            log.info(msg)
            self.save()
            if improved:
                self.save("best.pt")

    def _evaluate_epoch(self) -> dict:
        kw = dict(device=self.device, amp_dtype=self.amp_dtype, channels_last=self.channels_last, dist_info=self.dist)
        self.datasets["val"].set_epoch(0)
        res = evaluate(self.model, self.val_loader, **kw)
        self._note_skipped(res["skipped_paths"])
        row = {"val_loss": res["loss"], "val_top1": res["top1"], "val_top5": res["top5"]}
        if self.ema is not None:
            ema = evaluate(self.ema.module, self.val_loader, **kw)
            row.update(ema_val_loss=ema["loss"], ema_top1=ema["top1"], ema_top5=ema["top5"])
        return row

    def _update_best(self, row: dict) -> bool:
        candidates = [(row[k], src) for k, src in (("val_top1", "model"), ("ema_top1", "ema")) if k in row]
        if not candidates:
            return False
        top1, source = max(candidates, key=lambda c: c[0])
        if top1 <= self.best["top1"]:
            return False
        self.best = {"top1": top1, "epoch": row["epoch"], "source": source}
        module = self.ema.module if source == "ema" else self.model
        self.best_weights = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        return True

    # -- end of run: the deploy form -------------------------------------------------------
    def _best_state(self) -> dict | None:
        if self.best_weights is not None:
            return self.best_weights
        best = self.run_dir / "best.pt"  # resumed after the best epoch: read it back
        if self.best["epoch"] < 0 or not best.is_file():
            return None
        state = load_training_checkpoint(best)
        return state["state_dict_ema" if self.best["source"] == "ema" else "state_dict"]

    def _finish(self, interrupted: bool) -> TrainResult:
        deploy_path = equivalence = None
        if self.dist.is_main and not interrupted:
            deploy_path, equivalence = self._export_best()
            plot_curves(self.run_dir / "metrics.csv", self.run_dir / "curves.png",
                        title=f"{self.cfg.model} on {describe_data(self.cfg.data)}")
            log.info("best val top-1 %.2f %% (epoch %d, %s weights); run directory %s", self.best["top1"],
                     self.best["epoch"] + 1, self.best["source"], self.run_dir)
        cleanup(self.dist)
        return TrainResult(self.run_dir, self.best["top1"], self.best["epoch"], self.best["source"], self.epoch,
                           interrupted, deploy_path, equivalence)

    def _export_best(self) -> tuple[Path | None, FoldCheck | None]:
        """Best weights → ``best_model.safetensors`` (train form) and ``best_deploy.safetensors`` (fold
        verified), both carrying the run's preprocessing, class names and data."""
        weights = self._best_state()
        if weights is None:
            return None, None
        model = create_model(self.cfg.model, **self.model.model_kwargs)
        model.load_state_dict(weights)
        model.eval()
        meta = {"classes": list(self.classes), "data": self.cfg.data or "digits", "best_top1": self.best["top1"],
                "best_epoch": self.best["epoch"], "weights": self.best["source"]}
        preprocess = Preprocess.from_train_config(self.cfg)
        save_checkpoint(model, self.run_dir / "best_model.safetensors", metadata=meta, preprocess=preprocess)
        deployed, check = fold_and_verify(model, (8, 3, self.cfg.img_size, self.cfg.img_size))
        path = save_checkpoint(deployed, self.run_dir / "best_deploy.safetensors", metadata=meta,
                               preprocess=preprocess)
        log.info("deploy form: %s (%s)", path, check)
        return path, check


def train(cfg: TrainConfig | None = None, resume: str | Path | None = None,
          on_step: Callable[[Trainer], None] | None = None, stop_note: str | None = None) -> TrainResult:
    """Train with ``cfg`` (default: the digits recipe), or continue the run saved in ``resume``.

    ``on_step(trainer)`` is called after every optimizer step (progress hooks, tests); ``stop_note`` is
    what the one line printed on Ctrl-C says to do next (default: the ``train --resume`` command).
    """
    if cfg is None and resume is None:
        from .config import resolve_config
        cfg = resolve_config()
    return Trainer(cfg, resume=resume, on_step=on_step, stop_note=stop_note).fit()
