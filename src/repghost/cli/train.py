"""`repghost train` and `repghost eval`."""

from __future__ import annotations

import argparse
import dataclasses

from .args import (
    COUNT,
    COUNT0,
    USAGE_ERROR,
    DefaultsFormatter,
    checkpoint_file,
    data_root,
    fail,
    mean_std,
    model_name,
    output_dir,
    output_file,
)
from .errors import usage_errors, work_errors

#: Config keys whose flags take paths or names, with the check each gets at parse time.
_PATH_TYPES = {"pretrained": checkpoint_file, "output": output_dir, "model": model_name}
_CHOICE_HELP = {"amp": "AMP", "interpolation": "MODE", "val_interpolation": "MODE"}


def _config_flag_type(f) -> dict:
    """argparse options for a TrainConfig field: its type and allowed range from the field itself."""
    from ..train.config import CHOICES, LIST_LENGTHS

    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    limit = f.metadata.get("limit")
    if f.name in LIST_LENGTHS:
        return dict(type=limit, nargs=LIST_LENGTHS[f.name])
    if f.name in CHOICES:
        return dict(choices=CHOICES[f.name])
    if isinstance(default, bool) or f.name == "channels_last":
        return dict(type=_parse_bool, metavar="BOOL")
    if limit is not None:
        return dict(type=limit)
    if isinstance(default, dict):
        return dict(type=_parse_mapping, metavar="YAML")
    if f.name == "data":
        return dict(type=data_root)
    if f.name in _PATH_TYPES:
        return dict(type=_PATH_TYPES[f.name])
    return dict(type=str)


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parse_mapping(text: str) -> dict:
    """A YAML / JSON mapping given on the command line, e.g. ``'{reparam: identity}'``."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"not YAML: {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{reparam: identity}}', got {text!r}")
    return value


def _cmd_train(args) -> int:
    from ..train import TrainConfig, resolve_config, train
    from ..train.config import SETTINGS

    overrides = {name: getattr(args, name) for name in SETTINGS}
    if args.resume:
        given = sorted(k for k, v in overrides.items() if v is not None)
        if given:
            flags = ", ".join("--" + g.replace("_", "-") for g in given)
            return fail("train", f"--resume continues the saved config; drop {flags}", USAGE_ERROR)
    with usage_errors(ValueError, FileNotFoundError):  # a recipe that does not exist or holds bad values
        cfg: TrainConfig | None = None if args.resume else resolve_config(args.recipe, **overrides)
    result = train(cfg, resume=args.resume)
    return 130 if result.interrupted else 0


def _shown(value, unset: str) -> str:
    if value is None:
        return unset
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, dict):
        return _yaml_flow(value) if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _yaml_flow(value: dict) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip()


def _setting_help(name: str, f, recipes: dict[str, dict]) -> str:
    """A setting's help with the value each default recipe gives it (what a run without the flag uses)."""
    from ..train.config import TrainConfig

    base = getattr(TrainConfig, name, None) if f.default is not dataclasses.MISSING else f.default_factory()
    unset = f.metadata.get("unset", "none")
    # --data picks the recipe rather than taking a value from it
    shown = {recipe: _shown(values.get(name, base) if name != "data" else None, unset)
             for recipe, values in recipes.items()}
    if len(set(shown.values())) == 1:
        default = next(iter(shown.values()))
    else:
        default = "; ".join(f"{recipe} recipe: {value}" for recipe, value in shown.items())
    return f"{f.metadata['help']} (default: {default})".replace("%", "%%")


def add_train(sub) -> None:
    from ..train.config import FOLDER_RECIPE, SETTINGS, read_recipe
    from ..train.fit import describe_rules

    recipes = {"digits": read_recipe("digits"), FOLDER_RECIPE: read_recipe(FOLDER_RECIPE)}
    p = sub.add_parser(
        "train", help="train a model (default: repghostnet_050 on the built-in digits set)",
        formatter_class=DefaultsFormatter,
        description="Train on an ImageFolder tree (--data DIR with train/<class>/* and val/<class>/*) or, "
                    "without --data, on scikit-learn's bundled handwritten digits (no download). Settings come "
                    "from a recipe (--recipe; default: 'digits' without --data, 'folder' with it; the paper's "
                    "ImageNet runs are --recipe repghostnet_050 … repghostnet_200) and every flag below overrides "
                    "the recipe's key of the same name. What the folder recipe leaves unset is derived from the "
                    f"data at start and printed in one line: {describe_rules()}. A schedule that cannot work (a "
                    "warm-up as long as the run, less than one batch of images) is refused. The run "
                    "directory gets config.yaml, metrics.csv, curves.png, last.pt / best.pt (resumable) and "
                    "best_model.safetensors / best_deploy.safetensors, all carrying the preprocessing the "
                    "model was trained with. Works under torchrun (DDP). Ctrl-C saves a resumable checkpoint. "
                    "Exit codes: 0 done, 2 bad arguments (nothing written), 1 failed, 130 interrupted.",
        epilog="examples:  repghost train\n"
               "           repghost train --data ~/flowers --model repghostnet_100 --epochs 50 --img-size 160 "
               "--pretrained repghostnet_1_0x.pth\n"
               "           torchrun --nproc_per_node=8 -m repghost train --recipe repghostnet_100 --data /imagenet\n"
               "           repghost train --resume runs/NAME/last.pt")
    p.add_argument("--recipe", default=None,
                   help="built-in recipe (digits, folder, repghostnet_050 … _200) or a YAML path (default: digits "
                        "without --data, folder with it)")
    p.add_argument("--resume", default=None, metavar="CKPT", type=checkpoint_file,
                   help="continue a run exactly from its last.pt (default: start a new run)")
    for name, f in SETTINGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=_setting_help(name, f, recipes),
                       **_config_flag_type(f))
    p.set_defaults(func=_cmd_train)


def _cmd_eval(args) -> int:
    from ..train import evaluate_checkpoint

    with work_errors(RuntimeError):  # e.g. weights that do not fit the model they name
        res = evaluate_checkpoint(args.checkpoint, data=args.data, split=args.split, use_ema=args.ema,
                                  reparam=args.reparam, batch_size=args.batch_size, workers=args.workers,
                                  device=args.device, img_size=args.img_size, mean=args.mean, std=args.std,
                                  model_name=args.model, log=print, runtime=args.runtime, threads=args.threads)
    print(f"{res['checkpoint']} ({res['format']} on {res['runtime']}, {res['form']} form) on {res['data']} "
          f"{res['split']}: "
          f"top-1 {res['top1']:.2f} %  top-5 {res['top5']:.2f} %  loss {res['loss']:.4f}  "
          f"({res['count']} images" + (f", {res['skipped']} unreadable skipped)" if res["skipped"] else ")"))
    if args.json:
        from ..io import atomic_write_json
        atomic_write_json(args.json, res)
    return 0


def add_eval(sub) -> None:
    from ..names import FILE_RUNTIMES as RUNNER_RUNTIMES

    p = sub.add_parser(
        "eval", help="top-1 / top-5 / loss of a classifier file of any format (checkpoint or export)",
        formatter_class=DefaultsFormatter,
        description="Evaluate any classifier file repghost writes — a training checkpoint (last.pt / best.pt; "
                    "--ema for its EMA weights), a train- or deploy-form .safetensors, an export (.pt TorchScript, "
                    ".onnx / .int8.onnx, OpenVINO .xml / .int8.xml, LiteRT .tflite, .mnn, ncnn .param) run on its "
                    "own runtime — or (with --model) an official / timm checkpoint: the accuracy that format "
                    "really gives. Data, resolution and normalization default to what the file records (the "
                    "model's training preprocessing); the flags override them. A file that records none uses the "
                    "model's default and says so. Exit codes: 2 bad arguments or a detector file (use det-eval), "
                    "1 a file or data that cannot be evaluated.")
    p.add_argument("checkpoint", type=checkpoint_file,
                   help="last.pt / best.pt, best_model.safetensors, best_deploy.safetensors, model.onnx, ...")
    p.add_argument("--data", default=None, type=data_root,
                   help="ImageFolder root, or 'digits' (default: the data the file was trained on)")
    p.add_argument("--split", default="val", help="split folder to evaluate")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    p.add_argument("--reparam", action="store_true", help="re-parameterize to the deploy form before evaluating")
    p.add_argument("--model", default=None, type=model_name,
                   help="model name, for checkpoints without repghost metadata (default: the name the file records)")
    p.add_argument("--img-size", type=COUNT, default=None, help="resolution (default: the file's)")
    p.add_argument("--mean", **mean_std("mean"), default=None, help="normalization mean (default: the file's)")
    p.add_argument("--std", **mean_std("std"), default=None, help="normalization std (default: the file's)")
    p.add_argument("--batch-size", type=COUNT, default=128, help="images per batch")
    p.add_argument("--workers", type=COUNT0, default=2, help="data-loading worker processes")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--runtime", default=None, choices=RUNNER_RUNTIMES,
                   help="runtime for a file that can run on several (an .onnx file: onnxruntime or openvino) "
                        "(default: the file's own)")
    p.add_argument("--threads", type=COUNT, default=None, help="CPU threads (default: torch's setting)")
    p.add_argument("--json", default=None, metavar="PATH", type=output_file,
                   help="also write the result as JSON (default: printed only)")
    p.set_defaults(func=_cmd_eval)
