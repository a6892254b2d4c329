"""Training configuration: one dataclass, YAML recipes on top, command-line overrides on top of that.

Resolution order: the dataclass defaults < the recipe YAML < explicit overrides (CLI flags).
The resolved config is saved as ``config.yaml`` in the run directory and inside every training
checkpoint, so ``--resume`` and ``repghost eval`` need nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ..data.datasets import DIGITS


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # what to train
    model: str = _f("repghostnet_050", "model name (see `repghost models`)")
    model_kwargs: dict = _f({}, "extra keyword arguments of the model builder, e.g. "
                                "'{reparam: identity, shortcut: false}' (the paper's ablations)")
    data: str | None = _f(None, "ImageFolder root with train/ and val/; unset = built-in digits")
    num_classes: int | None = _f(None, "classes (default: from the data)")
    pretrained: str | None = _f(None, "initial weights: official, timm or repghost checkpoint; a classifier "
                                      "of another size is replaced")
    drop_rate: float = _f(0.2, "dropout before the classifier")
    # schedule and optimizer
    epochs: int = _f(300, "training epochs")
    batch_size: int = _f(128, "batch size per process")
    opt: str = _f("momentum", "optimizer, a timm name: momentum (SGD + momentum), sgd (Nesterov), adamw, ...")
    momentum: float = _f(0.9, "SGD momentum")
    lr: float | None = _f(None, "learning rate (default: lr_base scaled by global batch / lr_base_size)")
    lr_base: float = _f(0.6, "learning rate at global batch lr_base_size")
    lr_base_size: int = _f(1024, "global batch that lr_base refers to")
    weight_decay: float = _f(1e-5, "weight decay (not on biases and norms)")
    sched: str = _f("cosine", "LR schedule (timm name), stepped every update")
    min_lr: float = _f(1e-5, "final learning rate")
    warmup_epochs: float = _f(5, "linear warm-up epochs")
    warmup_lr: float = _f(1e-4, "learning rate at the start of warm-up")
    smoothing: float = _f(0.1, "label smoothing")
    clip_grad: float | None = _f(None, "clip gradient norm to this value (unset = no clipping)")
    ema_decay: float = _f(0.9999, "EMA decay of the weights (0 = no EMA)")
    ema_warmup: bool = _f(False, "ramp the EMA decay up from 0 (useful for short runs)")
    # data pipeline
    img_size: int = _f(224, "training and evaluation resolution")
    crop_pct: float = _f(0.875, "eval: resize to img_size / crop_pct, then centre crop")
    scale: list = _f([0.08, 1.0], "RandomResizedCrop area range")
    ratio: list = _f([0.75, 1.3333333333333333], "RandomResizedCrop aspect-ratio range")
    interpolation: str = _f("random", "train interpolation (random = per image)")
    val_interpolation: str = _f("bilinear", "eval interpolation")
    hflip: float = _f(0.5, "horizontal flip probability")
    color_jitter: float = _f(0.4, "colour jitter strength")
    auto_augment: str | None = _f(None, "RandAugment policy, e.g. rand-m9-mstd0.5")
    re_prob: float = _f(0.2, "random erasing probability")
    re_mode: str = _f("pixel", "random erasing fill")
    mean: list = _f([0.485, 0.456, 0.406], "normalization mean")
    std: list = _f([0.229, 0.224, 0.225], "normalization std")
    workers: int = _f(4, "data-loading worker processes per training process")
    # engine
    amp: str = _f("auto", "mixed precision: auto (bf16 on CUDA when supported, else fp16; none on CPU), "
                          "bf16, fp16 or none")
    channels_last: bool | None = _f(None, "channels_last memory format (default: on CUDA)")
    sync_bn: bool = _f(False, "SyncBatchNorm across processes")
    device: str | None = _f(None, "cuda, cuda:N or cpu (default: cuda when available)")
    seed: int = _f(42, "random seed")
    threads: int | None = _f(None, "CPU threads per process (torch.set_num_threads)")
    # outputs
    output: str = _f("runs", "parent directory of run directories")
    name: str | None = _f(None, "run directory name (default: <time>-<model>)")
    ckpt_every_steps: int = _f(0, "also save last.pt every N optimizer steps (0 = only at epoch ends)")
    eval_every: int = _f(1, "evaluate every N epochs (and always after the last)")
    progress: bool = _f(True, "show progress bars")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _configs_dir():
    # configs/ is package data of ``repghost`` (pyproject), not a package of its own.
    return resources.files("repghost").joinpath("configs")


def recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in _configs_dir().iterdir() if p.name.endswith(".yaml"))


def read_recipe(recipe: str) -> dict:
    """A recipe by name (``digits``, ``repghostnet_100``, ...) or a path to a YAML file."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"recipe file not found: {path}")
        text = path.read_text()
    else:
        res = _configs_dir().joinpath(f"{recipe}.yaml")
        if not res.is_file():
            raise ValueError(f"unknown recipe {recipe!r}; built-in recipes: {', '.join(recipe_names())}, "
                             "or pass a path to a .yaml file")
        text = res.read_text()
    values = yaml.safe_load(text) or {}
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"recipe {recipe}: unknown keys {unknown}; valid keys: {', '.join(FIELDS)}")
    return values


def default_recipe(overrides: dict) -> str:
    """The digits recipe without ``--data``; with data, the model's ImageNet recipe when one exists."""
    if overrides.get("data") in (None, DIGITS):
        return "digits"
    model = overrides.get("model") or TrainConfig.model
    return model if model in recipe_names() else ""


def resolve_config(recipe: str | None = None, **overrides) -> TrainConfig:
    """Defaults < recipe < overrides (``None`` overrides are ignored, i.e. "not given")."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys: {', '.join(FIELDS)}")
    recipe = default_recipe(given) if recipe is None else recipe
    values = {**(read_recipe(recipe) if recipe else {}), **given}
    return TrainConfig(**values)


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(values: dict) -> TrainConfig:
    return TrainConfig(**{k: v for k, v in values.items() if k in FIELDS})


def save_config(cfg: TrainConfig, path: Path, extra: dict | None = None) -> None:
    body = {**config_to_dict(cfg), **(extra or {})}
    Path(path).write_text(yaml.safe_dump(body, sort_keys=False))
