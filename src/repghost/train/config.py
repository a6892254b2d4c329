"""Training configuration: one dataclass, YAML recipes on top, command-line overrides on top of that.

Resolution order: the dataclass defaults < the recipe YAML < explicit overrides (CLI flags); then
what is still unset of :data:`repghost.train.fit.FITTED` is derived from the data (:mod:`.fit`).
The resolved config is saved as ``config.yaml`` in the run directory and inside every training
checkpoint, so ``--resume`` and ``repghost eval`` need nothing else. Paths in it are absolute, so
the files work from any directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ..io import atomic_write_text
from ..limits import COUNT, COUNT0, FRACTION, POSITIVE, RATE, Number, value_problem
from ..names import DIGITS
from ..preprocess import INTERPOLATIONS
from .fit import fit_to_data

#: What an unset (None) setting of :data:`repghost.train.fit.FITTED` means.
DERIVED = "derived from the data at start"
#: crop_pct is a fraction in (0, 1]
CROP = Number(float, 0.0, 1.0, exclusive=True)
#: fixed list lengths
LIST_LENGTHS = {"scale": 2, "ratio": 2, "mean": 3, "std": 3}
CHOICES = {"amp": ("auto", "bf16", "fp16", "none"), "val_interpolation": INTERPOLATIONS,
           "interpolation": ("random", *INTERPOLATIONS)}


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
    data: str | None = _f(None, "ImageFolder root with train/ and val/, or 'digits'", unset="the built-in digits")
    num_classes: int | None = _f(None, "classes", unset="from the data", limit=COUNT)
    pretrained: str | None = _f(None, "initial weights: official, timm or repghost checkpoint; a classifier "
                                      "of another size is replaced", unset="random initialization")
    drop_rate: float = _f(0.2, "dropout before the classifier", limit=FRACTION)
    # schedule and optimizer
    epochs: int = _f(300, "training epochs", limit=COUNT)
    batch_size: int | None = _f(None, "batch size per process", unset=DERIVED, limit=COUNT)
    opt: str = _f("momentum", "optimizer, a timm name: momentum (SGD + momentum), sgd (Nesterov), adamw, ...")
    momentum: float = _f(0.9, "SGD momentum", limit=RATE)
    lr: float | None = _f(None, "learning rate", unset="lr_base × global batch / lr_base_size", limit=RATE)
    lr_base: float = _f(0.6, "learning rate at global batch lr_base_size", limit=RATE)
    lr_base_size: int = _f(1024, "global batch that lr_base refers to", limit=COUNT)
    weight_decay: float = _f(1e-5, "weight decay (not on biases and norms)", limit=RATE)
    sched: str = _f("cosine", "LR schedule (timm name), stepped every update")
    min_lr: float = _f(1e-5, "final learning rate", limit=RATE)
    warmup_epochs: float | None = _f(None, "linear warm-up epochs", unset=DERIVED, limit=RATE)
    warmup_lr: float = _f(1e-4, "learning rate at the start of warm-up", limit=RATE)
    smoothing: float = _f(0.1, "label smoothing", limit=FRACTION)
    clip_grad: float | None = _f(None, "clip gradient norm to this value", unset="no clipping", limit=POSITIVE)
    ema_decay: float | None = _f(None, "EMA decay of the weights (0 = no EMA)", unset=DERIVED, limit=FRACTION)
    ema_warmup: bool = _f(False, "ramp the EMA decay up from 0 (useful for short runs)")
    # data pipeline
    img_size: int | None = _f(None, "training and evaluation resolution", unset=DERIVED, limit=COUNT)
    crop_pct: float = _f(0.875, "eval: resize to img_size / crop_pct, then centre crop", limit=CROP)
    scale: list = _f([0.08, 1.0], "RandomResizedCrop area range", limit=FRACTION)
    ratio: list = _f([0.75, 1.3333333333333333], "RandomResizedCrop aspect-ratio range", limit=POSITIVE)
    interpolation: str = _f("random", "train interpolation (random = per image)")
    val_interpolation: str = _f("bilinear", "eval interpolation")
    hflip: float = _f(0.5, "horizontal flip probability", limit=FRACTION)
    color_jitter: float = _f(0.4, "colour jitter strength", limit=RATE)
    auto_augment: str | None = _f(None, "RandAugment policy, e.g. rand-m9-mstd0.5", unset="none")
    re_prob: float = _f(0.2, "random erasing probability", limit=FRACTION)
    re_mode: str = _f("pixel", "random erasing fill")
    mean: list = _f([0.485, 0.456, 0.406], "normalization mean", limit=FRACTION)
    std: list = _f([0.229, 0.224, 0.225], "normalization std", limit=POSITIVE)
    workers: int | None = _f(None, "data-loading worker processes per training process", unset=DERIVED,
                             limit=COUNT0)
    # engine
    amp: str = _f("auto", "mixed precision: auto (bf16 on CUDA when supported, else fp16; none on CPU), "
                          "bf16, fp16 or none")
    channels_last: bool | None = _f(None, "channels_last memory format", unset="on CUDA")
    sync_bn: bool = _f(False, "SyncBatchNorm across processes")
    device: str | None = _f(None, "cuda, cuda:N or cpu", unset="cuda when available")
    seed: int = _f(42, "random seed", limit=COUNT0)
    threads: int | None = _f(None, "CPU threads per process (torch.set_num_threads)", unset="torch's choice",
                             limit=COUNT)
    # outputs
    output: str = _f("runs", "parent directory of run directories")
    name: str | None = _f(None, "run directory name", unset="<time>-<model>")
    ckpt_every_steps: int = _f(0, "also save last.pt every N optimizer steps (0 = only at epoch ends)", limit=COUNT0)
    eval_every: int = _f(1, "evaluate every N epochs (and always after the last)", limit=COUNT)
    progress: bool = _f(True, "show progress bars")
    # a record, not a setting: which settings were derived from the data, and why
    derived: dict = _f({}, "settings derived from the data and why (filled in by repghost.train.fit)", setting=False)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
#: What a recipe key or a command-line flag may set.
SETTINGS = {name: f for name, f in FIELDS.items() if f.metadata.get("setting", True)}


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
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"recipe {recipe}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ValueError(f"recipe {recipe}: expected a mapping of settings (key: value), got a "
                         f"{type(values).__name__}")
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        raise ValueError(f"recipe {recipe}: unknown keys {unknown}; valid keys: {', '.join(SETTINGS)}")
    return values


#: The default recipe for a user's own image folder (``--data DIR``): settings fitted to its size.
FOLDER_RECIPE = "folder"


def default_recipe(overrides: dict) -> str:
    """The digits recipe without ``--data``; with data, the folder recipe (fitted to the data). The
    paper's ImageNet runs are named explicitly: ``--recipe repghostnet_100``."""
    return "digits" if overrides.get("data") in (None, DIGITS) else FOLDER_RECIPE


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """``data`` and ``pretrained`` as absolute paths: checkpoints record them, and are read from anywhere."""
    data = cfg.data if cfg.data in (None, DIGITS) else str(Path(cfg.data).expanduser().resolve())
    pretrained = cfg.pretrained and str(Path(cfg.pretrained).expanduser().resolve())
    return dataclasses.replace(cfg, data=data, pretrained=pretrained)


def resolve_config(recipe: str | None = None, **overrides) -> TrainConfig:
    """Defaults < recipe < overrides (``None`` overrides are ignored, i.e. "not given"); what is still
    unset is then derived from the data (:func:`repghost.train.fit.fit_to_data`, which reads the
    training split's file list). Raises ``ValueError`` for bad settings, :class:`~repghost.data.DataError`
    for data that cannot be read."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys: {', '.join(SETTINGS)}")
    recipe = default_recipe(given) if recipe is None else recipe
    values = {**(read_recipe(recipe) if recipe else {}), **given}
    return fit_to_data(absolute_paths(validate_config(TrainConfig(**values))))


def validate_config(cfg: TrainConfig) -> TrainConfig:
    """Raise ``ValueError`` naming the first setting outside its allowed range; return ``cfg``."""
    for name, f in FIELDS.items():
        value, limit = getattr(cfg, name), f.metadata.get("limit")
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if name in CHOICES and value not in CHOICES[name]:
            raise ValueError(f"{flag}: expected one of {', '.join(CHOICES[name])}, got {value!r}")
        if limit is None:
            continue
        if name in LIST_LENGTHS and (not isinstance(value, (list, tuple)) or len(value) != LIST_LENGTHS[name]):
            raise ValueError(f"{flag}: expected {LIST_LENGTHS[name]} values, got {value!r}")
        problem = value_problem(limit, value)
        if problem:
            raise ValueError(f"{flag}: {problem}")
    for name in ("scale", "ratio"):
        low, high = getattr(cfg, name)
        if low > high:
            raise ValueError(f"--{name}: the lower bound {low} exceeds the upper {high}")
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(values: dict) -> TrainConfig:
    return TrainConfig(**{k: v for k, v in values.items() if k in FIELDS})


def save_config(cfg: TrainConfig, path: Path, extra: dict | None = None) -> None:
    body = {**config_to_dict(cfg), **(extra or {})}
    atomic_write_text(path, yaml.safe_dump(body, sort_keys=False))
