"""Training the weight-sharing super-network (:mod:`.sandwich`) on a COCO-layout training split,
resumably.

Step ``s`` trains the sandwich architectures of (seed, s) on minibatch ``s`` of a seeded stream of
epochs with the flips of (seed, s) (:mod:`.data`), SGD with momentum, linear warm-up then cosine. No
other randomness enters, so the state a resume needs is the step, the parameters and the SGD
momentum, and that is all ``supernet.pt`` holds (with the settings, to refuse a resume with others):

- no BatchNorm running statistics — training normalizes with the batch's statistics, and every
  architecture is scored after its own are re-estimated (:mod:`.calibrate`), so they are never read;
- no momentum once the last step is done (a finished training cannot go on: ``steps`` is a setting a
  resume must keep).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import CheckpointError
from ..detection.config import DataConfig
from ..detection.data import CocoDetection
from ..detection.synthetic import annotation_path, image_dir
from ..io import atomic_torch_save
from ..limits import COUNT, COUNT0, POSITIVE, RATE, Number, check_limits, limited
from ..models.repghostnet_space import RepGhostNetSpace
from ..progress import write
from ..run import StopFlag, check_resumable, read_run_state
from ..run.schedule import warmup_cosine
from .calibrate import batch_norms
from .data import StepBatches, flips, step_loader
from .sandwich import SandwichTrainer
from .superspace import SuperSSDLite

CHECKPOINT_FILE = "supernet.pt"
CHECKPOINT_FORMAT = "repghost-supernet/1"
#: Settings a resume may change (they do not alter what is computed).
RUN_ONLY = ("output", "threads", "workers", "checkpoint_every", "log_every")


@dataclass
class SupernetConfig:
    """One super-network training: ``data`` a COCO-layout root, or (``data.root`` None) the built-in
    synthetic set generated into ``output/synthetic``."""

    output: str
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = limited(COUNT, default=600)
    batch_size: int = limited(COUNT, default=8)
    img_size: int = limited(Number(int, 32), default=128)
    lr: float = limited(POSITIVE, default=0.05)
    lr_warmup_steps: int = limited(COUNT0, default=50)
    momentum: float = limited(Number(float, 0.0, 1.0), default=0.9)
    weight_decay: float = limited(RATE, default=4e-5)
    clip_grad: float = limited(POSITIVE, default=10.0)
    num_random: int = limited(COUNT0, default=2)
    distill_weight: float = limited(RATE, default=1.0)
    #: The first steps train every block as the RepGhost bottleneck (widths, kernels, SE, skips still vary):
    #: with four unshared op types per block from the start, the shared stem, extra layers and head see four
    #: kinds of features at every position and the loss stalls (benchmarks/README.md, super-network plateau).
    reference_op_steps: int = limited(COUNT0, default=0)
    #: After ``reference_op_steps``, the share of reference ops falls linearly to none over these steps.
    op_ramp_steps: int = limited(COUNT0, default=0)
    #: The first steps train the largest architecture alone (Once-for-All's order: the full network first);
    #: the sandwich starts from a network that already detects (benchmarks/README.md, super-network plateau).
    largest_only_steps: int = limited(COUNT0, default=0)
    seed: int = limited(COUNT0, default=0)
    checkpoint_every: int = limited(COUNT, default=50)
    log_every: int = limited(COUNT, default=25)
    workers: int = limited(COUNT0, default=0)
    threads: int | None = limited(COUNT, default=None)

    def __post_init__(self):
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        if self.data.root is None and self.data.synthetic_dir is None:
            self.data.synthetic_dir = str(Path(self.output).resolve() / "synthetic")
        check_limits(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class SupernetTraining:
    """The super-network, its optimizer and the step; :meth:`state_dict` is what a resume needs."""

    def __init__(self, config: SupernetConfig, num_classes: int, device: torch.device | str = "cpu"):
        self.config, self.space = config, RepGhostNetSpace()
        torch.manual_seed(config.seed)
        self.supernet = SuperSSDLite(self.space, num_classes, config.img_size)
        self.supernet.model.to(device)
        self.optimizer = torch.optim.SGD(self.supernet.model.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.trainer = SandwichTrainer(self.supernet, self.optimizer, config.seed, config.num_random,
                                       config.distill_weight, config.clip_grad, config.reference_op_steps,
                                       config.largest_only_steps, config.op_ramp_steps)
        self.step = 0
        self.history: list[dict] = []
        self.window: list[dict] = []  # the steps since the last history record (a resume logs the same)

    def bn_buffer_keys(self) -> set[str]:
        names = {m: n for n, m in self.supernet.model.named_modules()}
        return {f"{names[m]}.{b}" for m in batch_norms(self.supernet.model) for b, _ in m.named_buffers()}

    def state_dict(self) -> dict:
        skip = self.bn_buffer_keys()
        state = {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "space": self.space.fingerprint,
                 "step": self.step, "history": self.history, "window": self.window,
                 "model": {k: v.detach().cpu() for k, v in self.supernet.model.state_dict().items() if k not in skip}}
        if self.step < self.config.steps:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if state["space"] != self.space.fingerprint:
            raise CheckpointError(f"it trained space {state['space']}, not {self.space.fingerprint}")
        result = self.supernet.model.load_state_dict(state["model"], strict=False)
        missing = sorted(set(result.missing_keys) - self.bn_buffer_keys())
        if missing or result.unexpected_keys:
            raise CheckpointError(f"its super-network tensors do not match this one (missing {missing[:2]}, "
                                  f"unexpected {result.unexpected_keys[:2]})")
        self.step, self.history, self.window = int(state["step"]), list(state["history"]), list(state["window"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        elif self.step < self.config.steps:
            raise CheckpointError(f"it holds no optimizer state, which a resume at step {self.step} needs")


def saved_settings(state: dict) -> dict:
    """A checkpoint's settings as a :class:`SupernetConfig` reads them: a setting added after the checkpoint
    was written takes its default, which keeps the training as it was."""
    return SupernetConfig(**state["config"]).to_dict()


def _window_means(window: list[dict]) -> dict[str, float]:
    """Each loss's mean over the steps of ``window`` that report it (steps that train the largest path alone
    have no students)."""
    keys = dict.fromkeys(k for record in window for k in record)
    return {k: sum(r[k] for r in window if k in r) / sum(k in r for r in window) for k in keys}


def load_supernet(path: str | os.PathLike, device: torch.device | str = "cpu") -> SupernetTraining:
    """A *finished* super-network training from its ``supernet.pt`` (read safely: tensors and plain
    containers only), its training data resolved from the settings it was trained with."""
    state = read_run_state(path, "format", CHECKPOINT_FORMAT, "is not a super-network checkpoint")
    config = SupernetConfig(**state["config"])
    if int(state["step"]) < config.steps:
        raise CheckpointError(f"{path} is a training stopped at step {state['step']} of {config.steps}; resume it "
                              "to its end before scoring with it")
    training = SupernetTraining(config, train_dataset(config.data).num_classes, device)
    training.load_state_dict(state)
    return training


def train_dataset(data: DataConfig) -> CocoDetection:
    root = data.resolve_root()
    return CocoDetection(annotation_path(root, data.train_split), image_dir(root, data.train_split), train=True,
                         flip=False, skip_missing_images=data.skip_missing_images)


def train_supernet(config: SupernetConfig, resume: bool = False,
                   callback: Callable[[SupernetTraining], None] | None = None) -> SupernetTraining:
    """Train (or, with ``resume``, continue) the super-network ``config`` describes; ``supernet.pt`` in
    ``config.output`` every ``checkpoint_every`` steps, on Ctrl-C / SIGTERM and at the end."""
    out = Path(config.output)
    ckpt = out / CHECKPOINT_FILE
    state = None
    if resume and ckpt.is_file():
        state = read_run_state(ckpt, "format", CHECKPOINT_FORMAT, "is not a super-network checkpoint")
        check_resumable(ckpt, saved_settings(state), config.to_dict(), ignore=RUN_ONLY,
                        hint="resume with the same settings or start a new output")
    elif ckpt.exists():
        raise FileExistsError(f"{ckpt} exists; resume it or choose another output")
    if config.threads:
        torch.set_num_threads(config.threads)
    dataset = train_dataset(config.data)
    training = SupernetTraining(config, dataset.num_classes)
    if state is not None:
        training.load_state_dict(state)
    out.mkdir(parents=True, exist_ok=True)
    batches = step_loader(dataset, StepBatches(range(len(dataset)), config.batch_size, (config.seed, 0), training.step,
                                               config.steps), config.workers)
    with StopFlag(note="run the same command again to resume") as stop:
        while training.step < config.steps and not stop.requested:
            step = training.step
            images, targets, _ = next(batches)
            images, targets = flips(images, targets, (config.seed, 0), step)
            for group in training.optimizer.param_groups:
                group["lr"] = warmup_cosine(config.lr, step, config.lr_warmup_steps, config.steps)
            window = training.window
            window.append(training.trainer.step(step, images, targets))
            training.step += 1
            if training.step % config.log_every == 0 or training.step == config.steps:
                record = {"step": training.step, **_window_means(window)}
                training.history.append(record)
                training.window = []
                write(f"supernet step {training.step}/{config.steps}: " +
                      ", ".join(f"{k} {v:.3f}" for k, v in record.items() if k != "step"))
            if callback is not None:
                callback(training)
            if training.step % config.checkpoint_every == 0 and training.step < config.steps:
                atomic_torch_save(training.state_dict(), ckpt)
    if state is None or training.step > int(state["step"]):  # a finished checkpoint stays the same file
        atomic_torch_save(training.state_dict(), ckpt)
    return training
