"""``repghost <command>``: parse arguments, call the library, print. No logic of its own.

Each command is a ``_add_<name>(subparsers)`` function that registers its parser and sets
``func``; :data:`COMMANDS` lists them in the order ``--help`` shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from . import __version__


def _cmd_models(args) -> int:
    from . import create_model, list_models, profile, reparameterize

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}; available: {', '.join(list_models())}", file=sys.stderr)
        return 2
    if args.names_only:
        print("\n".join(names))
        return 0
    size = (1, 3, args.img_size, args.img_size)
    print(f"{'model':<20} {'params (M)':>10} {'MACs (M)':>9} {'deploy params (M)':>18} {'deploy MACs (M)':>16}")
    for name in names:
        model = create_model(name).eval()
        train, deploy = profile(model, size), profile(reparameterize(model), size)
        print(f"{name:<20} {train.params / 1e6:>10.3f} {train.macs / 1e6:>9.1f} "
              f"{deploy.params / 1e6:>18.3f} {deploy.macs / 1e6:>16.1f}")
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the registered models with params and MACs",
                       description="List registered models. Params count every learnable parameter; "
                                   "MACs count conv and linear layers (the paper's convention), for the "
                                   "train form and the re-parameterized deploy form.")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'repghostnet_*'")
    p.add_argument("--img-size", type=int, default=224, help="input resolution for MACs (default 224)")
    p.add_argument("--names-only", action="store_true", help="print names only, no profiling")
    p.set_defaults(func=_cmd_models)


def _config_flag_type(f):
    """argparse type for a TrainConfig field, from its default (lists take several values)."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if isinstance(default, bool) or f.name == "channels_last":
        return dict(type=_parse_bool, metavar="BOOL")
    if isinstance(default, list):
        return dict(type=float, nargs="+")
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


def _cmd_train(args) -> int:
    from .data import DataError
    from .models import UnknownModelError
    from .train import TrainConfig, resolve_config, train
    from .train.config import FIELDS

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


def _add_train(sub) -> None:
    from .train.config import FIELDS

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
    from .checkpoint import CheckpointError
    from .data import DataError
    from .models import UnknownModelError
    from .train import evaluate_checkpoint

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


def _add_eval(sub) -> None:
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


def _cmd_convert(args) -> int:
    from .deploy import ConvertError, convert

    try:
        result = convert(args.checkpoint, args.out, model_name=args.model, num_classes=args.num_classes,
                         use_ema=args.ema, input_size=(2, 3, args.img_size, args.img_size))
    except ConvertError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{result.model_name}: deploy form agrees with the checkpoint (max abs error {result.max_abs:.3g}, "
          f"relative {result.max_rel:.3g})")
    print(f"wrote {result.path}")
    return 0


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint to the deploy form (safetensors)",
                       description="Load a checkpoint (ours, official RepGhost or timm layout; safetensors or "
                                   "torch.save), re-parameterize it, check the deploy form gives the same output "
                                   "on random input, and write a deploy safetensors file. Exits non-zero and "
                                   "writes nothing when the checkpoint is missing or unreadable or the check fails.")
    p.add_argument("checkpoint", help="checkpoint to convert")
    p.add_argument("out", help="output path (.safetensors)")
    p.add_argument("--model", help="model name, for checkpoints without repghost metadata (e.g. repghostnet_100)")
    p.add_argument("--num-classes", type=int, help="classes (default: the checkpoint's classifier width)")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    p.add_argument("--img-size", type=int, default=224, help="input size of the equivalence check (default 224)")
    p.set_defaults(func=_cmd_convert)


def _cmd_export(args) -> int:
    from .deploy import ConvertError, ExportError
    from .deploy.pipeline import export

    try:
        export(args.source, args.out, fmt=args.format, img_size=args.img_size, opset=args.opset,
               exporter=args.exporter, int8=args.int8, recipe=args.recipe, calib=args.calib,
               num_calib=args.num_calib, num_held_out=args.num_held_out, model_name=args.model,
               num_classes=args.num_classes)
    except (ConvertError, ExportError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _add_export(sub) -> None:
    from .deploy import DEFAULT_RECIPE

    p = sub.add_parser("export", help="export a model to ONNX (optionally int8) or TorchScript",
                       description="Export the deploy form of a checkpoint (or of a registered model with random "
                                   "weights) to ONNX — opset >= 17, dynamic batch axis, input 'input', output "
                                   "'logits' — then run it with onnxruntime and compare with PyTorch (fails above "
                                   "tolerance). --int8 adds a statically quantized model and reports its top-1 "
                                   "change against fp32 on held-out images.")
    p.add_argument("source", help="checkpoint path, or a model name such as repghostnet_100")
    p.add_argument("out", help="output file (.onnx or .pt)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--img-size", type=int, default=224, help="example input size (default 224)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 17 (default 18)")
    p.add_argument("--exporter", choices=("dynamo", "legacy"), default="dynamo", help="torch.onnx exporter")
    p.add_argument("--model", help="model name, for checkpoints without repghost metadata")
    p.add_argument("--num-classes", type=int, help="classes of a model built by name (default 1000)")
    q = p.add_argument_group("int8")
    q.add_argument("--int8", action="store_true", help="also write OUT with suffix .int8.onnx")
    q.add_argument("--recipe", default=DEFAULT_RECIPE,
                   help=f"FORMAT[-nodw][-sSTRIDE], FORMAT qdq|qop (default {DEFAULT_RECIPE}: int8 from stride 16 on)")
    q.add_argument("--calib", default="digits", help="'digits' (built in) or an ImageFolder directory")
    q.add_argument("--num-calib", type=int, default=64, help="calibration images (default 64)")
    q.add_argument("--num-held-out", type=int, default=256, help="held-out images for the top-1 check (default 256)")
    p.set_defaults(func=_cmd_export)


def _cmd_bench(args) -> int:
    from .bench import (
        BenchConfig,
        environment,
        format_study,
        format_table,
        run_benchmark,
        run_study,
        write_results,
        write_study,
    )

    if args.concat_vs_add:
        rows = run_study(args.batch, args.img_size[0], runs=args.runs, warmup=args.warmup,
                         threads=args.threads[0], opt_level=args.ort_opt_level)
        print(format_study(rows))
        paths = write_study(rows, args.out, meta=dict(environment=environment(), threads=args.threads[0],
                                                      img_size=args.img_size[0], opt_level=args.ort_opt_level))
    else:
        if not args.models:
            print("error: name at least one model (or pass --concat-vs-add)", file=sys.stderr)
            return 2
        config = BenchConfig(models=args.models, runtimes=args.runtimes, threads=args.threads,
                             batch_sizes=args.batch, img_sizes=args.img_size, warmup=args.warmup, runs=args.runs,
                             device=args.device)
        try:
            results = run_benchmark(config)
        except ValueError as err:  # bad spec / runtime / unknown model
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(format_table(results))
        paths = write_results(results, args.out, config)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _add_bench(sub) -> None:
    from .bench import RUNTIMES

    p = sub.add_parser("bench", help="measure latency of models across runtimes (or the Concat-vs-Add study)",
                       description="Latency of each MODEL under each runtime, thread count, batch size and input "
                                   "size: warm-up, then the runners interleaved round by round; median and p90 "
                                   "with params, MACs and the paper's top-1. Writes latency.{json,csv,md,png} to "
                                   "--out. MODEL is [SOURCE:]NAME[@FORM]: SOURCE repghost (default) | timm | "
                                   "torchvision, FORM train (default) | deploy; e.g. repghostnet_100@deploy "
                                   "timm:ghostnet_100 timm:repghostnet_100@deploy torchvision:mobilenet_v3_large. "
                                   "--concat-vs-add runs the paper's Fig. 1/2 study instead.")
    p.add_argument("models", nargs="*", metavar="MODEL", help="model specs (see above)")
    p.add_argument("--runtimes", nargs="+", default=["eager", "onnxruntime"], choices=RUNTIMES,
                   help="default: eager onnxruntime")
    p.add_argument("--threads", nargs="+", type=int, default=[1], help="thread counts (default 1)")
    p.add_argument("--batch", nargs="+", type=int, default=[1], help="batch sizes (default 1)")
    p.add_argument("--img-size", nargs="+", type=int, default=[224], help="input sizes (default 224)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up runs per runner (default 10)")
    p.add_argument("--runs", type=int, default=50, help="timed rounds (default 50)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--out", default="bench-results", help="output directory (default bench-results)")
    s = p.add_argument_group("Concat vs Add (paper Fig. 1 and 2)")
    s.add_argument("--concat-vs-add", action="store_true",
                   help="profile ghostnet_100 vs ghostnet_add_100 per operator with onnxruntime at each --batch "
                        "(e.g. --batch 1 2 4 8 16 32); writes concat_vs_add.{json,md} and two PNGs")
    s.add_argument("--ort-opt-level", default="basic", choices=("disable", "basic", "extended", "all"),
                   help="onnxruntime graph optimization for the study (default basic: keeps Concat/Add nodes)")
    p.set_defaults(func=_cmd_bench)


def _detection_errors():
    from .checkpoint import CheckpointError
    from .detection.data import DetectionDataError

    return CheckpointError, DetectionDataError, FileExistsError, FloatingPointError, ValueError


def _cmd_det_train(args) -> int:
    from .detection.engine import make_train_config, train_detector

    options = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    try:
        train_detector(make_train_config(**options))
    except _detection_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _add_det_train(sub) -> None:
    from .detection.engine import SYNTHETIC_DEFAULTS, TrainConfig
    from .detection.models import DETECTORS

    p = sub.add_parser(
        "det-train", help="train RetinaNet / Mask R-CNN / SSDLite with a RepGhostNet backbone on COCO-format data",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a torchvision detector whose backbone is a RepGhostNet (or GhostNet) on a COCO-format "
                    "dataset (annotations/instances_<split>.json + <split>/ images under --data), with the 1x "
                    "schedule: 12 epochs, SGD, lr x0.1 at epochs 8 and 11, linear warm-up; AMP on CUDA; "
                    "torchrun for several GPUs. Without --data it generates the built-in synthetic shapes "
                    "set and uses a small CPU-friendly recipe: "
                    + ", ".join(f"{k}={v}" for k, v in SYNTHETIC_DEFAULTS.items()) + ". Writes last.pt "
                    "(resumable), metrics.json and history.json to --output.")
    defaults = TrainConfig(output="")
    p.add_argument("--model", choices=DETECTORS, default="retinanet", help="detector")
    p.add_argument("--backbone", default=None, help="repghostnet_* or ghostnet_* (default: repghostnet_100; "
                                                    "synthetic: see above)")
    p.add_argument("--pretrained", default=None, metavar="CKPT",
                   help="classification checkpoint for the backbone (ours, official RepGhost or timm layout)")
    p.add_argument("--frozen-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="FrozenBatchNorm2d in the backbone (default: on with --pretrained)")
    p.add_argument("--trainable-stages", type=int, default=None, metavar="N",
                   help="train only the last N of the 5 backbone stages (default: 3 with --pretrained, else 5)")
    p.add_argument("--fpn-channels", type=int, default=None, help="FPN width (default 256)")
    p.add_argument("--min-size", type=int, default=None,
                   help="resize the short side to this (default 800; SSDLite 320)")
    p.add_argument("--max-size", type=int, default=None, help="cap on the long side (default 1333)")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, metavar="ROOT", help="COCO-layout dataset root (default: synthetic)")
    g.add_argument("--train-split", default=None, help="train split name, e.g. train2017 (default train)")
    g.add_argument("--val-split", default=None, help="val split name, e.g. val2017 (default val)")
    g.add_argument("--skip-missing-images", action="store_true",
                   help="skip (and count) images whose files are missing instead of stopping")
    g.add_argument("--synthetic-dir", default=None,
                   help="where to generate the synthetic set (default OUTPUT/synthetic)")
    g.add_argument("--synthetic-train", type=int, default=None, help="synthetic train images")
    g.add_argument("--synthetic-val", type=int, default=None, help="synthetic val images")
    g.add_argument("--synthetic-size", type=int, default=None, help="synthetic image size (square)")
    g = p.add_argument_group("schedule")
    g.add_argument("--epochs", type=int, default=None, help=f"epochs (default {defaults.epochs})")
    g.add_argument("--lr-steps", type=int, nargs="*", default=None,
                   help=f"epochs where lr drops x0.1 (default {' '.join(map(str, defaults.lr_steps))})")
    g.add_argument("--lr", type=float, default=None,
                   help="base lr (default: 0.01 RetinaNet/SSDLite, 0.02 Mask R-CNN per 16 images, scaled to the batch)")
    g.add_argument("--momentum", type=float, default=defaults.momentum)
    g.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    g.add_argument("--warmup-iters", type=int, default=None, help=f"default {defaults.warmup_iters}")
    g.add_argument("--batch-size", type=int, default=None, help=f"images per process (default {defaults.batch_size})")
    g.add_argument("--clip-grad", type=float, default=None, help="clip the gradient norm to this")
    g = p.add_argument_group("run")
    g.add_argument("--output", default="runs/det", help="output directory")
    g.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    g.add_argument("--eval-every", type=int, default=defaults.eval_every,
                   help="COCO eval every N epochs (0: at the end)")
    g.add_argument("--workers", type=int, default=defaults.workers, help="data loader workers per process")
    g.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision on CUDA")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--seed", type=int, default=defaults.seed)
    p.set_defaults(func=_cmd_det_train)


def _cmd_det_eval(args) -> int:
    from .detection.engine import DataConfig, evaluate_checkpoint

    data = None
    if args.data is not None:
        data = DataConfig(root=args.data, val_split=args.val_split, skip_missing_images=args.skip_missing_images)
    try:
        evaluate_checkpoint(args.checkpoint, data, batch_size=args.batch_size, workers=args.workers,
                            device=args.device, reparameterize=args.reparameterize, output=args.output,
                            save_deploy=args.save_deploy, threads=args.threads)
    except _detection_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _add_det_eval(sub) -> None:
    p = sub.add_parser(
        "det-eval", help="COCO AP of a trained detector (optionally its re-parameterized form)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Evaluate a detector checkpoint written by det-train with pycocotools: AP, AP50, AP75, "
                    "APs/APm/APl (and mask AP for Mask R-CNN), printed and saved as JSON. By default on the "
                    "val split of the data it was trained on.")
    p.add_argument("checkpoint", help="last.pt from det-train, or a detector saved with --save-deploy")
    p.add_argument("--data", default=None, metavar="ROOT", help="COCO-layout dataset root (default: the training data)")
    p.add_argument("--val-split", default="val", help="split to evaluate with --data, e.g. val2017")
    p.add_argument("--skip-missing-images", action="store_true", help="skip (and count) missing image files")
    p.add_argument("--reparameterize", action="store_true",
                   help="fold the backbone into its deploy form first (same detections, faster)")
    p.add_argument("--save-deploy", default=None, metavar="PATH",
                   help="with --reparameterize: also save the deploy-form detector here")
    p.add_argument("--output", default=None, help="metrics JSON (default: next to the checkpoint, eval_<form>.json)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_cmd_det_eval)


COMMANDS = [_add_models, _add_train, _add_eval, _add_convert, _add_export, _add_bench,
            _add_det_train, _add_det_eval]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repghost",
        description="RepGhostNet toolkit: build → train → reparameterize → export → bench.",
    )
    parser.add_argument("--version", action="version", version=f"repghost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
