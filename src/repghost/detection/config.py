"""Detector training settings: the 1× schedule (:class:`DetTrainConfig`), the recipes a flat set of
options fills in (synthetic set or COCO), and the learning rate per step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..run import step_decay
from .data import DataConfig
from .detectors import DetectorConfig

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

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["lr_steps"] = list(self.lr_steps)
        return values


#: The old name, kept importable (``repghost.train.TrainConfig`` is the classification trainer's).
TrainConfig = DetTrainConfig


#: The built-in synthetic set's CPU-friendly recipe: used for every option left unset without ``--data``.
SYNTHETIC_DEFAULTS = dict(backbone="repghostnet_050", fpn_channels=64, min_size=128, max_size=128, batch_size=8,
                          epochs=24, lr_steps=(23,), lr=0.05, warmup_iters=50, clip_grad=10.0)
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
def learning_rate(config: DetTrainConfig, base_lr: float, epoch: int, iteration: int) -> float:
    """Step decay at ``lr_steps`` (epochs) after a linear warm-up over the first ``warmup_iters``."""
    return step_decay(base_lr, epoch, config.lr_steps, config.lr_gamma, iteration, config.warmup_iters,
                      config.warmup_factor)


def base_learning_rate(config: DetTrainConfig, world_size: int) -> float:
    if config.lr is not None:
        return config.lr
    return BASE_LR_PER_16[config.detector.model] * config.batch_size * world_size / 16
