"""What a detection run is, as plain data: the detector's architecture (:class:`DetectorConfig`), where
its data is (:class:`DataConfig`) and the training schedule (:class:`DetTrainConfig`), with the
built-in recipes and the learning rate per step. Light on purpose (no torch until a method needs it):
``repghost det-train --help`` is built from these defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..limits import Number
from ..names import DETECTORS, MODEL_NAMES

if TYPE_CHECKING:
    from .data import CocoDetection

#: Input resizing: (min_size, max_size) of the paper's COCO setting; SSDLite is a fixed square.
DEFAULT_SIZES = {"retinanet": (800, 1333), "maskrcnn": (800, 1333), "ssdlite": (320, 320)}


@dataclass
class DetectorConfig:
    """Everything that defines a detector's architecture (and so its checkpoint's layout).

    ``num_classes`` counts the background, as torchvision does: K object classes → K + 1.
    ``min_size`` / ``max_size`` default to the paper's COCO setting (800 / 1333; SSDLite 320).
    ``backbone`` may be a searched architecture's file; it is kept as its inline name, so the checkpoint
    does not depend on the file.
    """

    model: str = "retinanet"
    backbone: str = "repghostnet_100"
    num_classes: int = 91
    fpn_channels: int = 256
    min_size: int | None = None
    max_size: int | None = None
    frozen_bn: bool | None = None
    trainable_stages: int | None = None
    deploy: bool = False

    def __post_init__(self):
        if self.model not in DETECTORS:
            raise ValueError(f"unknown detector {self.model!r}; choose one of {', '.join(DETECTORS)}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be ≥ 2, got {self.num_classes}")
        if self.backbone not in MODEL_NAMES:  # a registered backbone stays as it is; anything else is resolved
            from .backbone import backbone_name  # (a searched architecture) or refused, which needs the models

            self.backbone = backbone_name(self.backbone)
        default_min, default_max = DEFAULT_SIZES[self.model]
        self.min_size = self.min_size or default_min
        self.max_size = self.max_size or max(default_max, self.min_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DetectorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown detector config keys: {', '.join(unknown)}")
        return cls(**values)


@dataclass
class DataConfig:
    """Where the data is: a COCO-layout root (``annotations/instances_<split>.json`` + ``<split>/``),
    or, when ``root`` is None, the built-in synthetic set generated into ``synthetic_dir``."""

    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    skip_missing_images: bool = False
    synthetic_dir: str | None = None
    synthetic_train: int = 256
    synthetic_val: int = 64
    synthetic_size: int = 128
    seed: int = 0

    def __post_init__(self):
        # Absolute, so that det-eval finds the data from any working directory.
        if self.root is not None:
            self.root = str(Path(self.root).resolve())
        if self.synthetic_dir is not None:
            self.synthetic_dir = str(Path(self.synthetic_dir).resolve())

    def resolve_root(self) -> Path:
        """The dataset root, generating the synthetic set first when no ``root`` is given."""
        from .synthetic import make_synthetic_coco

        if self.root is not None:
            return Path(self.root)
        if self.synthetic_dir is None:
            raise ValueError("no dataset root and no synthetic_dir to generate the synthetic set into")
        return make_synthetic_coco(self.synthetic_dir, self.synthetic_train, self.synthetic_val,
                                   self.synthetic_size, seed=self.seed)

    def dataset(self, split: str, train: bool, masks: bool) -> CocoDetection:
        from .data import CocoDetection
        from .synthetic import annotation_path, image_dir

        root = self.resolve_root()
        return CocoDetection(annotation_path(root, split), image_dir(root, split), train=train, masks=masks,
                             skip_missing_images=self.skip_missing_images)


LR_SCHEDULES = ("step", "cosine")
EMA_DECAY = Number(float, 0.0, 0.9999)  # 0: no EMA
BN_MOMENTUM = Number(float, 0.0, 1.0, exclusive=True)
#: Base learning rate per 16 images (the 1× recipes' 8 GPUs × 2); scaled linearly with the batch.
BASE_LR_PER_16 = {"retinanet": 0.01, "maskrcnn": 0.02, "ssdlite": 0.01}


@dataclass
class DetTrainConfig:
    """The 1× schedule by default: 12 epochs, SGD, lr × 0.1 at epochs 8 and 11, linear warm-up."""

    output: str
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrained: str | None = None
    epochs: int = 12
    lr_steps: tuple[int, ...] = (8, 11)
    lr_gamma: float = 0.1
    lr: float | None = None  # None: BASE_LR_PER_16 scaled to the global batch
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    batch_size: int = 2  # per process
    workers: int = 2
    amp: bool = True  # CUDA only
    clip_grad: float | None = None
    seed: int = 42
    device: str | None = None
    threads: int | None = None  # torch CPU threads (None: torch's default)
    eval_every: int = 1
    resume: bool = False
    lr_schedule: str = "step"  # "step": × lr_gamma at lr_steps; "cosine": to 0 at the last step (lr_steps unused)
    ema_decay: float = 0.0  # EMA of the weights (0: none); when on, the EMA weights are evaluated and reported
    bn_momentum: float | None = None  # every BN layer's running-stat momentum (None: each layer's own)

    def __post_init__(self):
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
        for name, limit in (("ema_decay", EMA_DECAY), ("bn_momentum", BN_MOMENTUM)):
            problem = getattr(self, name) is not None and limit.problem(getattr(self, name))
            if problem:
                raise ValueError(f"{name}: {problem}")

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["lr_steps"] = list(self.lr_steps)
        return values


DETECTOR_FIELDS = frozenset(f.name for f in dataclasses.fields(DetectorConfig))
#: The benchmark's shapes (rectangle, ellipse, triangle) + background; the trainer sets it from the data too.
BENCHMARK_CLASSES = 4


#: The old name, kept importable (``repghost.train.TrainConfig`` is the classification trainer's).
TrainConfig = DetTrainConfig


#: The built-in synthetic set's CPU-friendly recipe: used for every option left unset without ``--data``.
SYNTHETIC_DEFAULTS = dict(backbone="repghostnet_050", fpn_channels=64, min_size=128, max_size=128, batch_size=8,
                          epochs=24, lr_steps=(23,), lr=0.05, warmup_iters=50, clip_grad=10.0)
#: The detection benchmark's sizes (:func:`repghost.detection.synthetic.make_detection_benchmark`): 128² images
#: of the default set's shapes. Sized for a 1-thread CPU: a stand-alone run of :data:`BENCHMARK_RECIPE`
#: (2048 images × 8 epochs = 2048 steps, then one pass over ``test``) takes ~6 min on an idle core and
#: ~15–25 min on a loaded one, so the later studies (≥ 17
#: architectures × 2 seeds, several searches' results × 3 seeds) fit resumable pieces on a 2-core machine.
#: ``train`` is 8× the default set (more images, fewer epochs: less over-fitting, less seed noise);
#: ``search`` is small because a search scores on it many times; ``test`` is larger because it is
#: touched once per run and its size bounds how noisy one run's AP is (~1,260 objects).
BENCHMARK_SIZES = dict(num_train=2048, num_search=256, num_test=512, image_size=128)
#: The detection benchmark's stand-alone recipe (:func:`benchmark_train_config`; the benchmark is
#: :func:`repghost.detection.synthetic.make_detection_benchmark`): SSDLite at 128², trained from scratch on the
#: ``train`` split and evaluated once, at the end, on ``test``. Aimed at a seed-to-seed spread small enough to
#: compare architectures (the synthetic recipe's AP ranged 12–30 for MobileDet-CPU and 30–55 for RepGhostNet
#: 0.5× over 4 seeds): a cosine decay to 0 (the last weights are not those of a high learning rate), an EMA
#: of the weights, and 8 epochs (2048 steps). Measured (benchmarks/README.md, "Detection benchmark"): at 4
#: epochs the seed SD was 14.2 AP (RepGhostNet 0.5×) and 9.7 (MobileDet-CPU) over 3 seeds — 1024 steps end
#: mid-descent, where seeds differ most; at 8 epochs the loss has flattened (see the README for the SDs).
BENCHMARK_RECIPE = dict(model="ssdlite", min_size=128, max_size=128, batch_size=8, epochs=8,
                        lr=0.05, lr_schedule="cosine", warmup_iters=100, clip_grad=10.0, ema_decay=0.998,
                        bn_momentum=None, eval_every=0, workers=1)
#: The paper's COCO setting, for every option left unset with ``--data``.
COCO_DEFAULTS = dict(backbone="repghostnet_100", fpn_channels=256)


def make_train_config(output: str, model: str = "retinanet", data: str | None = None, **options) -> DetTrainConfig:
    """A :class:`DetTrainConfig` from flat options (the CLI's); ``None`` means "default": the synthetic
    recipe (:data:`SYNTHETIC_DEFAULTS`) without ``data``, the paper's COCO setting with it."""
    preset = COCO_DEFAULTS if data is not None else SYNTHETIC_DEFAULTS
    values = {**preset, **{k: v for k, v in options.items() if v is not None}}
    detector_fields = {f.name for f in dataclasses.fields(DetectorConfig)}
    data_fields = {f.name for f in dataclasses.fields(DataConfig)}
    detector = DetectorConfig(model=model, **{k: values.pop(k) for k in list(values) if k in detector_fields})
    data_values = {k: values.pop(k) for k in list(values) if k in data_fields and k != "seed"}
    if data is None and data_values.get("synthetic_dir") is None:
        data_values["synthetic_dir"] = str(Path(output) / "synthetic")
    data_config = DataConfig(root=data, **data_values)
    if "lr_steps" in values:
        values["lr_steps"] = tuple(values["lr_steps"])
    return DetTrainConfig(output=output, detector=detector, data=data_config, **values)


# -- schedule -----------------------------------------------------------------------------------
def learning_rate(config: DetTrainConfig, base_lr: float, epoch: int, iteration: int,
                  total_iters: int | None = None) -> float:
    """After a linear warm-up over the first ``warmup_iters``: step decay at ``lr_steps`` (epochs), or
    (``lr_schedule="cosine"``) a cosine to 0 at ``total_iters``."""
    from ..run import step_decay, warmup_cosine  # the shared schedules; imported here so the config stays light

    if config.lr_schedule == "cosine":
        if total_iters is None:
            raise ValueError("the cosine schedule needs the run's total iterations")
        return warmup_cosine(base_lr, iteration, config.warmup_iters, total_iters)
    return step_decay(base_lr, epoch, config.lr_steps, config.lr_gamma, iteration, config.warmup_iters,
                      config.warmup_factor)


def base_learning_rate(config: DetTrainConfig, world_size: int) -> float:
    if config.lr is not None:
        return config.lr
    return BASE_LR_PER_16[config.detector.model] * config.batch_size * world_size / 16


def benchmark_train_config(output: str, backbone: str, benchmark: str | Path, seed: int = 0,
                           eval_split: str = "test", **overrides) -> DetTrainConfig:
    """The :data:`BENCHMARK_RECIPE` run of ``backbone`` (a registered name or a searched architecture) on the
    detection benchmark at ``benchmark``, trained on its ``train`` split and evaluated on ``eval_split``
    (``test`` for a comparison's numbers; ``search`` for anything that chooses between architectures or
    settings). ``overrides`` change recipe entries (e.g. ``epochs``, ``threads``)."""
    values = {**BENCHMARK_RECIPE, **overrides}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(DetTrainConfig)}
                     - {f.name for f in dataclasses.fields(DetectorConfig)})
    if unknown:
        raise ValueError(f"unknown recipe entries: {', '.join(unknown)}")
    detector = DetectorConfig(backbone=backbone, num_classes=BENCHMARK_CLASSES,
                              **{k: values.pop(k) for k in list(values) if k in DETECTOR_FIELDS})
    data = DataConfig(root=str(benchmark), train_split="train", val_split=eval_split)
    return DetTrainConfig(output=output, detector=detector, data=data, seed=seed, **values)
