"""Latency-aware architecture search (TuNAS, as MobileDets ran it) for an SSDLite detector.

The backbone of the detector is the one-shot :class:`~.supernet.SuperNet` over the cost model's
search space. Each step:

1. **weights**: the controller samples an architecture; the super-network trains that path on a
   training minibatch (SGD, the detector's own losses);
2. **controller** (after the warm-up): it samples another architecture, scores it on a held-out
   minibatch and takes one REINFORCE step on the absolute reward ``Q + τ·|c/T − 1|``.

During the warm-up (the first ``warmup_fraction`` of the steps) only the weights train, on
architectures drawn from the controller's initial, uniform distribution, so every choice gets
trained before its reward counts.

**Quality proxy** ``Q``: the sampled path's soft recall at IoU 0.5 on a held-out minibatch, in
[0, 1] like the accuracy TuNAS rewards (see :mod:`.quality` for what it is and why not mAP or the
loss). The held-out minibatches come from a fixed share of the *training* split that the weights
never see; the validation split is left for evaluating the result.

**Exact resume.** Every source of randomness is either a function of (seed, step) — which images
form a minibatch, which are flipped — or saved in the checkpoint (controller generator, torch's
RNG), so a search stopped at a step and resumed (with the same number of threads: the float
rounding differs with it, and the search's trajectory follows) reproduces the uninterrupted one.

**What the checkpoint holds** is what a resume needs, no more: the blocks of choices never trained
are left out (they still hold the seeded initial weights, which a resume rebuilds; the optimizer
has no state for them), and once the last step is done the optimizer's momentum is too (a finished
search cannot go on: ``steps`` is a setting a resume must keep).

**Several processes** (torchrun): every rank samples the same architecture (same controller,
same generator), trains it on its share of the global minibatch, and the gradients are averaged
across ranks; Q (pooled over the ranks' objects) and the held-out loss too, so the controllers stay
identical.

The settings and set-up checks are in :mod:`.config`, the data split and step-indexed minibatches in
:mod:`.data`, log records and the result files in :mod:`.report`; this module holds the loop.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint import CheckpointError
from ..detection.detectors import build_ssdlite
from ..io import atomic_torch_save, atomic_write_json
from ..models.searched import SearchSpace
from ..progress import progress, write
from ..run import (
    StopFlag,
    any_rank,
    average_gradients,
    barrier,
    check_resumable,
    cleanup,
    init_distributed,
    read_run_state,
)
from .config import ARCH_FILE, CHECKPOINT_FILE, RUN_ONLY, SearchConfig, SearchError, SearchResult
from .controller import Controller, LinearCost, absolute_reward
from .data import StepBatches, flips, open_datasets, step_loader
from .quality import held_out_quality
from .report import choice_counts, finish, format_record, log_record, measure, report, short_choice
from .setup import CHECKPOINT_FORMAT, check_target, learning_rate, load_cost
from .supernet import SuperNet

#: What this module offered before its settings, data and report moved out: importable from here still.
__all__ = [
    "ARCH_FILE", "CHECKPOINT_FILE", "CHECKPOINT_FORMAT", "RUN_ONLY", "Search", "SearchConfig", "SearchError",
    "SearchResult", "StepBatches", "check_target", "choice_counts", "learning_rate", "load_cost", "measure",
    "open_datasets", "read_search_checkpoint", "report", "run_search", "short_choice",
]


class _FrozenBatchStats:
    """BatchNorm keeps its running statistics while the controller scores a held-out minibatch
    (momentum 0: the batch's own statistics normalize, nothing is accumulated)."""

    def __init__(self, model: nn.Module):
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def __enter__(self):
        self.saved = [(m.momentum, m.num_batches_tracked.clone()) for m in self.norms]
        for m in self.norms:
            m.momentum = 0.0

    def __exit__(self, *exc):
        for m, (momentum, tracked) in zip(self.norms, self.saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


class Search:
    """A search's state and its step; :func:`run_search` drives it."""

    def __init__(self, config: SearchConfig, space: SearchSpace, cost: LinearCost, num_classes: int,
                 device: torch.device, rank: int, world_size: int):
        self.config, self.space, self.cost = config, space, cost
        self.device, self.rank, self.world_size = device, rank, world_size
        torch.manual_seed(config.seed)
        self.supernet = SuperNet(space)
        self.model = build_ssdlite(self.supernet, num_classes, config.img_size).to(device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(self.params, lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.controller = Controller(space.num_layers, len(space.choice_names), config.controller_lr,
                                     config.baseline_momentum, seed=config.seed)
        self.step = 0
        self.history: list[dict] = []
        self.window: list[dict] = []  # the steps since the last history record (saved: a resume logs the same)
        # Which (layer, choice) blocks have been trained: the others keep their seeded initial weights.
        self.trained = torch.zeros(space.num_layers, len(space.choice_names), dtype=torch.bool)
        body = next(name for name, module in self.model.named_modules() if module is self.supernet)
        self.choice_keys = {choice: [f"{body}.{k}" for k in keys]
                            for choice, keys in self.supernet.choice_state_keys().items()}

    # -- one step -------------------------------------------------------------------------
    def _to_device(self, images, targets):
        return ([i.to(self.device) for i in images],
                [{k: v.to(self.device) for k, v in t.items()} for t in targets])

    def train_weights(self, images, targets) -> tuple[list[int], float]:
        choices = self.controller.sample()
        if not images:  # every image of the minibatch was unreadable (skipped and counted)
            return choices, float("nan")
        self.supernet.set_arch_indices(choices)
        self.model.train()
        lr = learning_rate(self.config, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = sum(self.model(*self._to_device(images, targets)).values())
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"super-network loss is {loss.item()} at step {self.step}; try a lower --lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world_size > 1:
            average_gradients(self.params, self.world_size)
        nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None], self.config.clip_grad)
        self.optimizer.step()
        self.trained[torch.arange(len(choices)), torch.as_tensor(choices)] = True
        return choices, loss.item()

    @torch.no_grad()
    def score(self, choices: Sequence[int], images, targets) -> tuple[float, float]:
        """``(Q, held-out loss)`` of ``choices`` on this minibatch (pooled over ranks): see :mod:`.quality`."""
        self.supernet.set_arch_indices(choices)
        self.model.train()  # BN on the batch's statistics, as the path trains
        with _FrozenBatchStats(self.model):
            quality, loss, objects = held_out_quality(self.model, *self._to_device(images, targets))
        if self.world_size > 1:
            pooled = torch.tensor([quality * objects, float(objects), loss], dtype=torch.float64,
                                  device=self.device)
            dist.all_reduce(pooled)
            found, objects, loss_sum = pooled.tolist()
            quality, loss = (found / objects if objects else 0.0), loss_sum / self.world_size
        return quality, loss

    def train_controller(self, images, targets) -> dict:
        choices = self.controller.sample()
        if not images:
            return {}
        quality, held_out_loss = self.score(choices, images, targets)
        cost = self.cost(choices)
        reward = absolute_reward(quality, cost, self.config.target_ms, self.config.tau)
        advantage = self.controller.update(choices, reward)
        return dict(held_out_loss=held_out_loss, quality=quality, sampled_ms=cost, reward=reward, advantage=advantage)

    # -- reporting ------------------------------------------------------------------------
    def most_likely(self) -> tuple[str, ...]:
        return tuple(self.space.choice_names[i] for i in self.controller.most_likely())

    def summary(self) -> dict:
        best = self.controller.most_likely()
        return dict(most_likely=list(self.most_likely()), most_likely_ms=self.cost(best),
                    entropy=self.controller.entropy(),
                    mean_top_probability=float(self.controller.probs.max(-1).values.mean()))

    # -- checkpoints ----------------------------------------------------------------------
    def untrained_keys(self) -> set[str]:
        """State-dict keys of the choice blocks never trained (still at their seeded initial weights)."""
        return {k for (layer, choice), keys in self.choice_keys.items() if not self.trained[layer, choice]
                for k in keys}

    def state_dict(self) -> dict:
        untrained = self.untrained_keys()
        state = {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "space": self.space.fingerprint,
                 "step": self.step, "trained": self.trained.clone(),
                 "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items() if k not in untrained},
                 "controller": self.controller.state_dict(), "torch_rng": torch.get_rng_state(),
                 "history": self.history, "window": self.window}
        if self.step < self.config.steps:  # a finished search has no step left for its optimizer to take
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; a checkpoint without ``trained`` (an older one) holds every block."""
        trained = state.get("trained", torch.ones_like(self.trained))
        if not isinstance(trained, torch.Tensor) or trained.shape != self.trained.shape:
            raise CheckpointError(f"'trained' must be a {tuple(self.trained.shape)} tensor of the choices trained")
        self.trained = trained.to(torch.bool).clone()
        missing = sorted(set(self.model.state_dict()) - self.untrained_keys() - set(state["model"]))
        if missing:
            raise CheckpointError(f"it lacks {len(missing)} super-network tensor(s) a resume needs (e.g. {missing[0]})")
        unexpected = self.model.load_state_dict(state["model"], strict=False).unexpected_keys
        if unexpected:
            raise CheckpointError(f"it holds {len(unexpected)} tensor(s) this super-network does not have "
                                  f"(e.g. {unexpected[0]})")
        self.step, self.history, self.window = int(state["step"]), list(state["history"]), list(state["window"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        elif self.step < self.config.steps:
            raise CheckpointError(f"it holds no optimizer state, which a resume at step {self.step} needs")
        self.controller.load_state_dict(state["controller"])
        torch.set_rng_state(state["torch_rng"])


def read_search_checkpoint(path: str | os.PathLike) -> dict:
    return read_run_state(path, "format", CHECKPOINT_FORMAT,
                          f"is not a repghost search checkpoint (no {CHECKPOINT_FORMAT!r} format tag)")


def _check_resumable(state: dict, config: SearchConfig, space: SearchSpace, path: Path) -> None:
    if state["space"] != space.fingerprint:
        raise SearchError(f"cannot resume {path}: it searched space {state['space']}, not {space.fingerprint}")
    check_resumable(path, state["config"], config.to_dict(), ignore=RUN_ONLY, error=SearchError,
                    hint="resume with the same settings or start a new --output")


def run_search(config: SearchConfig, callback: Callable[[Search], None] | None = None) -> SearchResult:
    """Run (or resume) the search ``config`` describes; writes ``search.pt`` (resumable),
    ``history.json``, and at the end ``arch.json`` and ``report.md`` into ``config.output``.

    ``callback`` is called after every step with the :class:`Search` (for tests and notebooks).
    A SIGINT / SIGTERM stops at the end of the current step with a checkpoint saved.
    """
    space = SearchSpace()
    cost_model, cost = load_cost(config.costmodel, space, config.allow_unfit_costmodel)
    check_target(config.target_ms, cost)
    out = Path(config.output)
    ckpt = out / CHECKPOINT_FILE
    resume_state = None
    if config.resume:
        if not ckpt.is_file():
            raise SearchError(f"--resume: {ckpt} does not exist; leave out --resume to start a search there")
        resume_state = read_search_checkpoint(ckpt)
        _check_resumable(resume_state, config, space, ckpt)
    elif ckpt.exists():
        raise SearchError(f"{ckpt} exists; pass --resume to continue that search, or choose another --output")

    info, device = init_distributed(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    if info.is_main:
        config.data.resolve_root()  # generate the synthetic set once, before the other ranks read it
    barrier(info)
    dataset, weight_pool, reward_pool = open_datasets(config)
    global_batch = config.batch_size * info.world_size
    log = write if info.is_main else (lambda message: None)
    log(f"search space {space.fingerprint}: {space.num_layers} layers × {len(space.choice_names)} choices; "
        f"cost model {config.costmodel} ({cost_model.timing.get('runtime')}, {cost_model.timing.get('img_size')}²): "
        f"{cost.cheapest[0]:.2f} … {cost.dearest[0]:.2f} ms, target {config.target_ms:g} ms, τ {config.tau:g}")
    log(f"data: {dataset.report.summary()}; {len(weight_pool)} images train the weights, {len(reward_pool)} are "
        f"held out for the reward")
    if cost_model.unfit_reason():
        log(f"warning: searching with an unfit cost model (--allow-unfit): {cost_model.unfit_reason()}")

    search = Search(config, space, cost, dataset.num_classes, device, info.rank, info.world_size)
    if resume_state is not None:
        try:
            search.load_state_dict(resume_state)
        except CheckpointError as err:
            raise CheckpointError(f"cannot resume {ckpt}: {err}") from None
        log(f"resumed {ckpt} at step {search.step}")
    start = search.step
    train_batches = step_loader(dataset, StepBatches(weight_pool, global_batch, (config.seed, 0), start, config.steps,
                                                 info.rank, info.world_size), config.workers)
    reward_start = max(start, config.warmup_steps)
    reward_batches = step_loader(dataset, StepBatches(reward_pool, global_batch, (config.seed, 1), reward_start,
                                                  config.steps, info.rank, info.world_size,
                                                  what="held-out images (--reward-fraction of the train split)"),
                             config.workers)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        if info.is_main:
            atomic_torch_save(search.state_dict(), ckpt)
            atomic_write_json(out / "history.json", search.history)

    bar = progress(total=config.steps, initial=start, desc="search", enabled=info.is_main, unit="step")
    interrupted, started = False, time.time()
    # The one line Ctrl-C prints: on stderr, from the main process, whatever logging is set up.
    announce = (lambda line: write(line, file=sys.stderr)) if info.is_main else (lambda line: None)
    with StopFlag(note="resume with the same command and --resume", announce=announce) as stop:
        while search.step < config.steps:
            step = search.step
            images, targets, skipped = next(train_batches)
            images, targets = flips(images, targets, (config.seed, 0), step)
            _, train_loss = search.train_weights(images, targets)
            record = dict(train_loss=train_loss, skipped=len(skipped))
            if step >= config.warmup_steps:
                images, targets, skipped = next(reward_batches)
                images, targets = flips(images, targets, (config.seed, 1), step)
                record.update(search.train_controller(images, targets))
                record["skipped"] += len(skipped)
            search.step += 1
            search.window.append(record)
            bar.update(1)
            if search.step % config.log_every == 0 or search.step == config.steps:
                search.history.append(log_record(search, search.window))
                search.window = []
                entry = search.history[-1]
                bar.set_postfix(phase=entry["phase"], ml_ms=f"{entry['most_likely_ms']:.2f}",
                                reward=f"{entry.get('reward', float('nan')):.4f}")
                log(format_record(entry, config.steps))
            if callback is not None:
                callback(search)
            if any_rank(stop.requested, info, device):
                interrupted = True
                break
            if search.step % config.checkpoint_every == 0:
                save()
        interrupted = interrupted or stop.requested  # asked for in the last step: stop before finishing
    bar.close()
    save()
    if interrupted:
        log(f"interrupted at step {search.step}: resume with the same command and --resume")
        result = SearchResult(out, search.most_likely(), cost(search.controller.most_likely()), None, search.step,
                              True, search.history)
    else:
        log(f"search finished in {time.time() - started:.0f} s")
        result = finish(search, cost_model, config, out, info.is_main)
    cleanup(info)
    return result


