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

**Several processes** (torchrun): every rank samples the same architecture (same controller,
same generator), trains it on its share of the global minibatch, and the gradients are averaged
across ranks; Q (pooled over the ranks' objects) and the held-out loss too, so the controllers stay
identical.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ..checkpoint import CheckpointError, read_checkpoint_file
from ..costmodel.fit import CostModel, CostModelError
from ..costmodel.space import SearchSpace
from ..detection.data import CocoDetection, collate, hflip
from ..detection.models import build_ssdlite
from ..detection.synthetic import annotation_path, image_dir
from ..io import atomic_torch_save, atomic_write_json, atomic_write_text
from ..progress import progress, write
from ..train.distributed import any_rank, cleanup, init_distributed
from ..train.engine import StopFlag
from .config import SearchConfig, SearchError
from .controller import Controller, LinearCost, absolute_reward
from .quality import held_out_quality
from .supernet import SuperNet

CHECKPOINT_FORMAT = "repghost-search/1"
CHECKPOINT_FILE = "search.pt"
ARCH_FILE = "arch.json"

#: Options a resumed search may change (they do not alter what it computes).
RUN_ONLY = ("output", "resume", "threads", "workers", "device", "measure", "log_every", "checkpoint_every")


@dataclass
class SearchResult:
    output: Path
    arch: tuple[str, ...]
    predicted_ms: float
    measured_ms: float | None
    steps_done: int
    interrupted: bool
    history: list[dict]


# -- set-up checks: everything that can be wrong is found before any training -----------------------
def load_cost(path: str | os.PathLike, space: SearchSpace) -> tuple[CostModel, LinearCost]:
    try:
        model = CostModel.load(path, space)
    except CostModelError as err:
        raise SearchError(f"{err}; fit a cost model on this search space with `repghost costmodel sample` "
                          "and `repghost costmodel fit`") from None
    return model, LinearCost(model, space)


def check_target(target_ms: float, cost: LinearCost) -> None:
    """The target must lie between the cheapest and the dearest architecture the model predicts."""
    low, high = cost.cheapest[0], cost.dearest[0]
    if not low <= target_ms <= high:
        side = "below the cheapest" if target_ms < low else "above the dearest"
        raise SearchError(f"--target-ms {target_ms:g} is {side} architecture of the space ({low:.3f} … "
                          f"{high:.3f} ms predicted by the cost model); choose a target in that range")


def open_datasets(config: SearchConfig) -> tuple[CocoDetection, list[int], list[int]]:
    """The training split and its (weights, reward) index split, a seeded ``reward_fraction`` held out."""
    data = config.data
    if data.root is not None:
        root = Path(data.root)
        ann = annotation_path(root, data.train_split)
        if not root.is_dir():
            raise SearchError(f"data root {root} does not exist; pass a COCO-layout folder (annotations/"
                              f"instances_{data.train_split}.json + {data.train_split}/), or leave --data out for "
                              "the built-in synthetic set")
        if not ann.is_file():
            raise SearchError(f"{root} has no {ann.relative_to(root)}; a COCO-layout root holds annotations/"
                              f"instances_<split>.json and <split>/ (choose the split with --train-split)")
    root = data.resolve_root()
    dataset = CocoDetection(annotation_path(root, data.train_split), image_dir(root, data.train_split), train=True,
                            flip=False, skip_missing_images=data.skip_missing_images)
    order = np.random.default_rng([config.seed, 7]).permutation(len(dataset))
    n_reward = int(round(len(dataset) * config.reward_fraction))
    reward, weights = sorted(order[:n_reward].tolist()), sorted(order[n_reward:].tolist())
    return dataset, weights, reward


# -- minibatches as a function of the step -------------------------------------------------------
class StepBatches(torch.utils.data.Sampler):
    """Minibatch ``step`` (this rank's share) of a stream of seeded epochs over ``pool``, for the steps
    ``start…stop-1``: resuming at any step gives the same minibatches as running through."""

    def __init__(self, pool: Sequence[int], global_batch: int, seed: Sequence[int], start: int, stop: int,
                 rank: int = 0, world_size: int = 1, what: str = "images"):
        if len(pool) < global_batch:
            raise SearchError(f"{len(pool)} {what} for a global minibatch of {global_batch}; use a smaller "
                              "--batch-size or more data")
        self.pool, self.global_batch, self.seed = np.asarray(pool), global_batch, list(seed)
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size
        self.per_epoch = len(pool) // global_batch

    def batch(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.per_epoch)
        order = self.pool[np.random.default_rng([*self.seed, epoch]).permutation(len(self.pool))]
        return order[k * self.global_batch:(k + 1) * self.global_batch][self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self.batch(step) for step in range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _flips(images, targets, seed: Sequence[int], step: int):
    """Horizontal flips of half the images, chosen by (seed, step)."""
    coins = np.random.default_rng([*seed, step]).random(len(images)) < 0.5
    pairs = [hflip(i, t) if c else (i, t) for i, t, c in zip(images, targets, coins, strict=True)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


# -- the search ---------------------------------------------------------------------------------
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


def learning_rate(config: SearchConfig, step: int) -> float:
    """Linear warm-up over ``lr_warmup_steps``, then cosine to 0 at the last step."""
    if step < config.lr_warmup_steps:
        return config.lr * (step + 1) / config.lr_warmup_steps
    span = max(1, config.steps - config.lr_warmup_steps)
    return 0.5 * config.lr * (1 + math.cos(math.pi * (step - config.lr_warmup_steps) / span))


def _average_gradients(params: list[nn.Parameter], world_size: int) -> None:
    """All ranks ran the same path, so the same parameters have gradients: one flat all-reduce."""
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


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
            _average_gradients(self.params, self.world_size)
        nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None], self.config.clip_grad)
        self.optimizer.step()
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
    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "space": self.space.fingerprint,
                "step": self.step, "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "controller": self.controller.state_dict(),
                "torch_rng": torch.get_rng_state(), "history": self.history, "window": self.window}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.controller.load_state_dict(state["controller"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.history, self.window = int(state["step"]), list(state["history"]), list(state["window"])


def read_search_checkpoint(path: str | os.PathLike) -> dict:
    state = read_checkpoint_file(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a repghost search checkpoint (no {CHECKPOINT_FORMAT!r} format tag)")
    return state


def _check_resumable(state: dict, config: SearchConfig, space: SearchSpace, path: Path) -> None:
    if state["space"] != space.fingerprint:
        raise SearchError(f"cannot resume {path}: it searched space {state['space']}, not {space.fingerprint}")
    saved, now = state["config"], config.to_dict()
    diff = {k: (saved.get(k), v) for k, v in now.items() if k not in RUN_ONLY and saved.get(k) != v}
    if diff:
        raise SearchError(f"cannot resume {path}: settings differ (saved, now): {diff}; resume with the same "
                          "settings or start a new --output")


def _loader(dataset, sampler: StepBatches, workers: int) -> Iterator:
    return iter(DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate))


def run_search(config: SearchConfig, callback: Callable[[Search], None] | None = None) -> SearchResult:
    """Run (or resume) the search ``config`` describes; writes ``search.pt`` (resumable),
    ``history.json``, and at the end ``arch.json`` and ``report.md`` into ``config.output``.

    ``callback`` is called after every step with the :class:`Search` (for tests and notebooks).
    A SIGINT / SIGTERM stops at the end of the current step with a checkpoint saved.
    """
    space = SearchSpace()
    cost_model, cost = load_cost(config.costmodel, space)
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
    if info.enabled:
        dist.barrier()
    dataset, weight_pool, reward_pool = open_datasets(config)
    global_batch = config.batch_size * info.world_size
    log = write if info.is_main else (lambda message: None)
    log(f"search space {space.fingerprint}: {space.num_layers} layers × {len(space.choice_names)} choices; "
        f"cost model {config.costmodel} ({cost_model.timing.get('runtime')}, {cost_model.timing.get('img_size')}²): "
        f"{cost.cheapest[0]:.2f} … {cost.dearest[0]:.2f} ms, target {config.target_ms:g} ms, τ {config.tau:g}")
    log(f"data: {dataset.report.summary()}; {len(weight_pool)} images train the weights, {len(reward_pool)} are "
        f"held out for the reward")

    search = Search(config, space, cost, dataset.num_classes, device, info.rank, info.world_size)
    if resume_state is not None:
        search.load_state_dict(resume_state)
        log(f"resumed {ckpt} at step {search.step}")
    start = search.step
    train_batches = _loader(dataset, StepBatches(weight_pool, global_batch, (config.seed, 0), start, config.steps,
                                                 info.rank, info.world_size), config.workers)
    reward_start = max(start, config.warmup_steps)
    reward_batches = _loader(dataset, StepBatches(reward_pool, global_batch, (config.seed, 1), reward_start,
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
    with StopFlag() as stop:
        while search.step < config.steps:
            step = search.step
            images, targets, skipped = next(train_batches)
            images, targets = _flips(images, targets, (config.seed, 0), step)
            _, train_loss = search.train_weights(images, targets)
            record = dict(train_loss=train_loss, skipped=len(skipped))
            if step >= config.warmup_steps:
                images, targets, skipped = next(reward_batches)
                images, targets = _flips(images, targets, (config.seed, 1), step)
                record.update(search.train_controller(images, targets))
                record["skipped"] += len(skipped)
            search.step += 1
            search.window.append(record)
            bar.update(1)
            if search.step % config.log_every == 0 or search.step == config.steps:
                search.history.append(_log_record(search, search.window))
                search.window = []
                entry = search.history[-1]
                bar.set_postfix(phase=entry["phase"], ml_ms=f"{entry['most_likely_ms']:.2f}",
                                reward=f"{entry.get('reward', float('nan')):.4f}")
                log(_format_record(entry, config.steps))
            if callback is not None:
                callback(search)
            if any_rank(stop.requested, info, device):
                interrupted = True
                break
            if search.step % config.checkpoint_every == 0:
                save()
    bar.close()
    save()
    if interrupted:
        log(f"interrupted at step {search.step}: resume with the same command and --resume")
        result = SearchResult(out, search.most_likely(), cost(search.controller.most_likely()), None, search.step,
                              True, search.history)
    else:
        log(f"search finished in {time.time() - started:.0f} s")
        result = _finish(search, cost_model, config, out, info.is_main)
    cleanup(info)
    return result


def _log_record(search: Search, window: list[dict]) -> dict:
    """The mean of the last steps' numbers, with the controller's current state."""
    entry = dict(step=search.step, phase="warm-up" if search.step <= search.config.warmup_steps else "joint",
                 lr=learning_rate(search.config, search.step - 1))
    for key in ("train_loss", "held_out_loss", "quality", "sampled_ms", "reward"):
        values = [r[key] for r in window if key in r and math.isfinite(r[key])]
        if values:
            entry[key] = float(np.mean(values))
    entry["skipped_images"] = int(sum(r["skipped"] for r in window))
    return {**entry, **search.summary()}


def _format_record(entry: dict, steps: int) -> str:
    parts = [f"step {entry['step']}/{steps} [{entry['phase']}]",
             f"train loss {entry.get('train_loss', float('nan')):.3f}"]
    if "reward" in entry:
        parts += [f"held-out Q {entry['quality']:.4f}", f"loss {entry['held_out_loss']:.3f}",
                  f"reward {entry['reward']:.4f}",
                  f"sampled {entry['sampled_ms']:.2f} ms"]
    if entry["phase"] == "warm-up":
        parts.append("controller uniform until the warm-up ends")
    else:
        parts += [f"entropy {entry['entropy']:.2f}", f"most likely {entry['most_likely_ms']:.2f} ms:",
                  " ".join(short_choice(name) for name in entry["most_likely"])]
    if entry["skipped_images"]:
        parts.append(f"skipped {entry['skipped_images']} unreadable image(s)")
    return "  ".join(parts)


def short_choice(name: str) -> str:
    """A layer choice in a few characters for log lines: ``ibn_k5_e8`` → ``I5e8``,
    ``tucker_k3_r25_75`` → ``T3r25/75``, ``repghost_k3_e4`` → ``R3e4``, ``fused_k5_e4`` → ``F5e4``."""
    op, kernel, *rest = name.split("_")
    return op[0].upper() + kernel[1:] + "/".join(rest)


# -- the result ---------------------------------------------------------------------------------
def measure(space: SearchSpace, arch: Sequence[str], timing: dict) -> dict:
    """The deploy-form latency of ``arch`` on this machine under the cost model's timing settings,
    with the reference architecture timed in the same rounds."""
    from ..costmodel.sampling import TimingSettings, time_archs

    settings = TimingSettings(runtime=timing.get("runtime", "onnxruntime"), threads=int(timing.get("threads", 1)),
                              batch=int(timing.get("batch", 1)), img_size=int(timing.get("img_size", 320)),
                              warmup=5, runs=30, chunk=1, reference=timing.get("reference") or "mobiledet_cpu")
    threads = torch.get_num_threads()
    try:
        (record,) = time_archs(space, [arch], settings, progress=False)
    finally:
        torch.set_num_threads(threads)  # timing sets its own; the caller's must survive
    return dict(measured_ms=record["median_ms"], reference=settings.reference,
                reference_measured_ms=record.get("ref_median_ms"), relative_to_reference=record.get("rel_to_ref"),
                runtime=settings.runtime, threads=settings.threads, batch=settings.batch, img_size=settings.img_size,
                runs=settings.runs, params=record["params"], macs=record["macs"])


def choice_counts(arch: Sequence[str]) -> dict[str, int]:
    """How many layers picked each layer type (ibn / fused / tucker / repghost)."""
    counts: dict[str, int] = {}
    for name in arch:
        op = name.split("_", 1)[0]
        counts[op] = counts.get(op, 0) + 1
    return counts


def _finish(search: Search, cost_model: CostModel, config: SearchConfig, out: Path, is_main: bool) -> SearchResult:
    space, arch = search.space, search.most_likely()
    predicted = search.cost(search.controller.most_likely())
    timing = None
    if is_main:
        probs = search.controller.probs
        layers = [dict(layer=i, in_chs=p.in_chs, out=p.out, stride=p.stride, residual=p.residual, choice=name,
                       probability=float(probs[i, space.choice_names.index(name)]))
                  for i, (p, name) in enumerate(zip(space.positions, arch, strict=True))]
        result = {**space.arch_to_json(arch), "predicted_ms": predicted, "target_ms": config.target_ms,
                  "measured": None, "choice_counts": choice_counts(arch), "layer_details": layers,
                  "costmodel": dict(path=str(config.costmodel), timing=cost_model.timing,
                                    metrics=cost_model.metrics.get("test")),
                  "search": dict(steps=search.step, warmup_steps=config.warmup_steps, tau=config.tau,
                                 seed=config.seed, final=search.history[-1] if search.history else None)}
        _write_result(out, result)  # before timing: a runtime missing here must not cost the search's result
        if config.measure:
            try:
                timing = measure(space, arch, cost_model.timing)
            except (ImportError, RuntimeError, OSError, ValueError) as err:
                write(f"warning: could not time the result under the cost model's settings here ({err}); "
                      "arch.json keeps the predicted latency only")
            else:
                _write_result(out, {**result, "measured": timing})
        write(f"architecture: {', '.join(arch)}")
        write(f"layer types: {result['choice_counts']}; predicted {predicted:.3f} ms (target {config.target_ms:g})"
              + (f", measured {timing['measured_ms']:.3f} ms on this machine ({timing['runtime']}, "
                 f"{timing['threads']} thread(s), {timing['img_size']}²; {timing['reference']} "
                 f"{timing['reference_measured_ms']:.3f} ms in the same rounds)" if timing else ""))
        write(f"wrote {out / ARCH_FILE} (use it as `--backbone {out / ARCH_FILE}` or `create_model(path)`)")
    measured = timing["measured_ms"] if timing else None
    return SearchResult(out, arch, predicted, measured, search.step, False, search.history)


def _write_result(out: Path, result: dict) -> None:
    atomic_write_json(out / ARCH_FILE, result)
    atomic_write_text(out / "report.md", report(result))


def report(result: dict) -> str:
    """The found architecture as Markdown: one row per searchable layer, and the latencies."""
    lines = ["# Architecture search result", "",
             f"Predicted latency **{result['predicted_ms']:.3f} ms** (target {result['target_ms']:g} ms, cost model "
             f"`{result['costmodel']['path']}`)."]
    timing = result.get("measured")
    if timing:
        lines.append(f"Measured on the searching machine: **{timing['measured_ms']:.3f} ms** ({timing['runtime']}, "
                     f"{timing['threads']} thread(s), batch {timing['batch']}, {timing['img_size']}², median of "
                     f"{timing['runs']}); `{timing['reference']}` in the same rounds: "
                     f"{timing['reference_measured_ms']:.3f} ms.")
    lines += ["", f"Layer types: {json.dumps(result['choice_counts'])}.", "",
              "| layer | in → out | stride | residual | choice | probability |", "|---|---|---|---|---|---|"]
    for d in result["layer_details"]:
        lines.append(f"| {d['layer']} | {d['in_chs']} → {d['out']} | {d['stride']} | {'yes' if d['residual'] else 'no'}"
                     f" | `{d['choice']}` | {d['probability']:.2f} |")
    return "\n".join(lines) + "\n"
