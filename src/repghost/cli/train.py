"""`repghost train` and `repghost eval`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def _config_flag_type(f):
    """argparse type for a TrainConfig field, from its default (lists take several values)."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if isinstance(default, bool) or f.name == "channels_last":
        return dict(type=_parse_bool, metavar="BOOL")
    if isinstance(default, list):
        return dict(type=float, nargs="+")
    if isinstance(default, dict):
        return dict(type=_parse_mapping, metavar="YAML")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return dict(type=type(default))
    if f.name in ("num_classes", "threads"):
        return dict(type=int)
    if f.name in ("lr", "clip_grad"):
        return dict(type=float)
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
    from ..data import DataError
    from ..models import UnknownModelError
    from ..train import TrainConfig, resolve_config, train
    from ..train.config import FIELDS

    overrides = {name: getattr(args, name) for name in FIELDS}
    try:
        if args.resume:
            given = sorted(k for k, v in overrides.items() if v is not None)
            if given:
                flags = ", ".join("--" + g.replace("_", "-") for g in given)
                print(f"--resume continues the saved config; drop {flags}", file=sys.stderr)
                return 2
            result = train(resume=args.resume)
        else:
            cfg: TrainConfig = resolve_config(args.recipe, **overrides)
            result = train(cfg)
    except (DataError, UnknownModelError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 130 if result.interrupted else 0


def add_train(sub) -> None:
    from ..train.config import FIELDS

    p = sub.add_parser(
        "train", help="train a model (default: repghostnet_050 on the built-in digits set)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train on an ImageFolder tree (--data DIR with train/<class>/* and val/<class>/*) or, "
                    "without --data, on scikit-learn's bundled handwritten digits (no download). Settings come "
                    "from a recipe (--recipe; default: 'digits' without --data, else the model's ImageNet "
                    "recipe) and every flag below overrides the recipe's key of the same name. The run "
                    "directory gets config.yaml, metrics.csv, curves.png, last.pt / best.pt (resumable) and "
                    "best_model.safetensors / best_deploy.safetensors. Works under torchrun (DDP). Ctrl-C "
                    "saves a resumable checkpoint.",
        epilog="examples:  repghost train\n"
               "           repghost train --data ~/flowers --model repghostnet_100 --epochs 50 --img-size 160 "
               "--pretrained repghostnet_1_0x.pth\n"
               "           torchrun --nproc_per_node=8 -m repghost train --recipe repghostnet_100 --data /imagenet\n"
               "           repghost train --resume runs/NAME/last.pt")
    p.add_argument("--recipe", default=None, help="built-in recipe (digits, repghostnet_050 … _200) or a YAML path")
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue a run exactly from its last.pt")
    for name, f in FIELDS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=f.metadata["help"],
                       **_config_flag_type(f))
    p.set_defaults(func=_cmd_train)


def _cmd_eval(args) -> int:
    from ..checkpoint import CheckpointError
    from ..data import DataError
    from ..models import UnknownModelError
    from ..train import evaluate_checkpoint

    try:
        res = evaluate_checkpoint(args.checkpoint, data=args.data, split=args.split, use_ema=args.ema,
                                  reparam=args.reparam, batch_size=args.batch_size, workers=args.workers,
                                  device=args.device, img_size=args.img_size, model_name=args.model)
    except (CheckpointError, DataError, UnknownModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{res['checkpoint']} ({res['form']} form) on {res['data']} {res['split']}: "
          f"top-1 {res['top1']:.2f} %  top-5 {res['top5']:.2f} %  loss {res['loss']:.4f}  "
          f"({res['count']} images" + (f", {res['skipped']} unreadable skipped)" if res["skipped"] else ")"))
    if args.json:
        import json
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="top-1 / top-5 / loss of a checkpoint",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Evaluate a training checkpoint (.pt; --ema for its EMA weights), a train- or deploy-form "
                    ".safetensors file, or (with --model) an official / timm checkpoint. Data, resolution and "
                    "normalization default to what the checkpoint was trained with.")
    p.add_argument("checkpoint", help="last.pt / best.pt, best_model.safetensors, best_deploy.safetensors, ...")
    p.add_argument("--data", default=None, help="ImageFolder root (default: the checkpoint's training data)")
    p.add_argument("--split", default="val", help="split folder to evaluate")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    p.add_argument("--reparam", action="store_true", help="re-parameterize to the deploy form before evaluating")
    p.add_argument("--model", default=None, help="model name, for checkpoints without repghost metadata")
    p.add_argument("--img-size", type=int, default=None, help="resolution (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON")
    p.set_defaults(func=_cmd_eval)

