"""`repghost det-train` and `repghost det-eval`."""

from __future__ import annotations

import argparse

from .args import (
    COUNT,
    COUNT0,
    POSITIVE,
    RATE,
    USAGE_ERROR,
    DefaultsFormatter,
    Number,
    checkpoint_file,
    fail,
    input_dir,
    model_name,
    output_dir,
    output_file,
)


def _cmd_det_train(args) -> int:
    from ..detection.engine import make_train_config, train_detector

    options = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    result = train_detector(make_train_config(**options))
    return 130 if result.get("interrupted") else 0  # stopped by Ctrl-C: its one line is printed


def _default(name: str, coco_value) -> str:
    """``(default: X)`` for an option whose default differs with and without --data (the synthetic recipe)."""
    from ..detection.config import COCO_DEFAULTS, SYNTHETIC_DEFAULTS

    def shown(value):
        if value is None:
            return "none"
        return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    coco, synthetic = shown(COCO_DEFAULTS.get(name, coco_value)), shown(SYNTHETIC_DEFAULTS.get(name, coco_value))
    return f"(default: {coco}" + (f"; synthetic set: {synthetic}" if synthetic != coco else "") + ")"


def add_det_train(sub) -> None:
    from ..detection.config import (
        BN_MOMENTUM,
        DEFAULT_SIZES,
        EMA_DECAY,
        LR_SCHEDULES,
        SYNTHETIC_DEFAULTS,
        DataConfig,
        DetectorConfig,
        TrainConfig,
    )
    from ..names import DETECTORS

    p = sub.add_parser(
        "det-train", help="train RetinaNet / Mask R-CNN / SSDLite with a RepGhostNet backbone on COCO-format data",
        formatter_class=DefaultsFormatter,
        description="Train a torchvision detector whose backbone is a RepGhostNet (or GhostNet, or a MobileDet) "
                    "on a COCO-format dataset (annotations/instances_<split>.json + <split>/ images under "
                    "--data), with the 1x schedule: 12 epochs, SGD, lr x0.1 at epochs 8 and 11, linear "
                    "warm-up; AMP on CUDA; torchrun for several GPUs. Without --data it generates the built-in "
                    "synthetic shapes set and uses a small CPU-friendly recipe: "
                    + ", ".join(f"{k}={v}" for k, v in SYNTHETIC_DEFAULTS.items()) + ". Writes last.pt "
                    "(resumable), metrics.json and history.json to --output. Ctrl-C saves last.pt at the next step "
                    "(the same command with --resume continues from that step). Exit codes: 0 done, 2 bad "
                    "arguments, 1 failed, 130 interrupted.")
    defaults, data_defaults, detector = TrainConfig(output=""), DataConfig(), DetectorConfig()
    sizes = "; ".join(f"{model} {low}/{high}" for model, (low, high) in DEFAULT_SIZES.items())
    p.add_argument("--model", choices=DETECTORS, default="retinanet", help="detector")
    p.add_argument("--backbone", default=None, type=model_name,
                   help="repghostnet_*, ghostnet_* or mobiledet_*, or a searched architecture's JSON file or inline "
                        "name (either search space) "
                        + _default("backbone", detector.backbone))
    p.add_argument("--pretrained", default=None, metavar="CKPT", type=checkpoint_file,
                   help="classification checkpoint for the backbone (ours, official RepGhost or timm layout) "
                        "(default: none, random initial weights)")
    p.add_argument("--frozen-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="FrozenBatchNorm2d in the backbone (default: on with --pretrained)")
    p.add_argument("--trainable-stages", type=Number(int, 0, 5), default=None, metavar="N",
                   help="train only the last N of the 5 backbone stages (default: 3 with --pretrained, else 5)")
    p.add_argument("--fpn-channels", type=COUNT, default=None, help="FPN width " + _default("fpn_channels", 256))
    p.add_argument("--min-size", type=COUNT, default=None,
                   help=f"resize the short side to this (default: {sizes} as min/max; synthetic set: "
                        f"{SYNTHETIC_DEFAULTS['min_size']})")
    p.add_argument("--max-size", type=COUNT, default=None,
                   help="cap on the long side (default: see --min-size; synthetic set: "
                        f"{SYNTHETIC_DEFAULTS['max_size']})")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, metavar="ROOT", type=input_dir,
                   help="COCO-layout dataset root (default: synthetic)")
    g.add_argument("--train-split", default=None, help="train split name, e.g. train2017 (default train)")
    g.add_argument("--val-split", default=None, help="val split name, e.g. val2017 (default val)")
    g.add_argument("--skip-missing-images", action="store_true",
                   help="skip (and count) images whose files are missing instead of stopping")
    g.add_argument("--synthetic-dir", default=None, type=output_dir,
                   help="where to generate the synthetic set (default OUTPUT/synthetic)")
    g.add_argument("--synthetic-train", type=COUNT, default=None,
                   help=f"synthetic train images (default: {data_defaults.synthetic_train})")
    g.add_argument("--synthetic-val", type=COUNT, default=None,
                   help=f"synthetic val images (default: {data_defaults.synthetic_val})")
    g.add_argument("--synthetic-size", type=Number(int, 32), default=None,
                   help=f"synthetic image size, square (default: {data_defaults.synthetic_size})")
    g = p.add_argument_group("schedule")
    g.add_argument("--epochs", type=COUNT0, default=None, help="epochs " + _default("epochs", defaults.epochs))
    g.add_argument("--lr-steps", type=COUNT, nargs="*", default=None,
                   help="epochs where lr drops x0.1 " + _default("lr_steps", defaults.lr_steps))
    g.add_argument("--lr", type=RATE, default=None,
                   help="base lr (default: 0.01 RetinaNet/SSDLite, 0.02 Mask R-CNN per 16 images, scaled to the "
                        f"batch; synthetic set: {SYNTHETIC_DEFAULTS['lr']})")
    g.add_argument("--momentum", type=RATE, default=defaults.momentum, help="SGD momentum")
    g.add_argument("--weight-decay", type=RATE, default=defaults.weight_decay, help="SGD weight decay")
    g.add_argument("--warmup-iters", type=COUNT0, default=None,
                   help="linear warm-up iterations " + _default("warmup_iters", defaults.warmup_iters))
    g.add_argument("--batch-size", type=COUNT, default=None,
                   help="images per process " + _default("batch_size", defaults.batch_size))
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=defaults.lr_schedule,
                   help="step: x0.1 at --lr-steps; cosine: to 0 at the last step (--lr-steps unused)")
    g.add_argument("--ema-decay", type=EMA_DECAY, default=defaults.ema_decay,
                   help="EMA of the weights, evaluated and reported instead of the raw weights (0: none; the "
                        "decay ramps up from 0 as timm's warm-up does)")
    g.add_argument("--bn-momentum", type=BN_MOMENTUM, default=None,
                   help="running-statistics momentum of every BN layer (default: each layer's own)")
    g.add_argument("--clip-grad", type=POSITIVE, default=None,
                   help="clip the gradient norm to this " + _default("clip_grad", defaults.clip_grad))
    g = p.add_argument_group("run")
    g.add_argument("--output", default="runs/det", type=output_dir, help="output directory")
    g.add_argument("--resume", action="store_true",
                   help="continue from OUTPUT/last.pt, at the epoch and step it was saved")
    g.add_argument("--eval-every", type=COUNT0, default=defaults.eval_every,
                   help="COCO eval every N epochs (0: at the end)")
    g.add_argument("--workers", type=COUNT0, default=defaults.workers, help="data loader workers per process")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=defaults.amp,
                   help="mixed precision on CUDA; --no-amp trains in float32 (default: "
                        f"{'on' if defaults.amp else 'off'}; CPU runs are always float32)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    g.add_argument("--threads", type=COUNT, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--seed", type=COUNT0, default=defaults.seed, help="random seed (weights, data order, flips)")
    p.set_defaults(func=_cmd_det_train)


def _cmd_det_eval(args) -> int:
    from ..deploy.evaluation import evaluate_detector_file
    from ..detection.data import DataConfig
    from ..detection.evaluate import format_metrics
    from ..names import is_exported_file

    if is_exported_file(args.checkpoint):
        given = [flag for flag, on in (("--reparameterize", args.reparameterize), ("--save-deploy", args.save_deploy),
                                       ("--device", args.device)) if on]
        if given:
            return fail("det-eval", f"{' '.join(given)} do(es) not apply to an exported detector (it is in deploy "
                                    "form and runs on its runtime's CPU)", USAGE_ERROR)
    elif args.runtime is not None:
        return fail("det-eval", "--runtime applies to exported detectors (.onnx, .xml, .tflite, ...), not to a "
                                "checkpoint", USAGE_ERROR)
    data = None
    if args.data is not None:
        data = DataConfig(root=args.data, val_split=args.val_split, skip_missing_images=args.skip_missing_images)
    metrics = evaluate_detector_file(args.checkpoint, data, batch_size=args.batch_size, workers=args.workers,
                                     device=args.device, reparameterize=args.reparameterize, output=args.output,
                                     save_deploy=args.save_deploy, threads=args.threads, runtime=args.runtime)
    if metrics.get("format"):  # an exported file; a checkpoint's evaluation printed its own table
        print(f"{args.checkpoint} ({metrics['format']} on {metrics['runtime']}):\n{format_metrics(metrics)}")
    return 0


def add_det_eval(sub) -> None:
    from ..names import FILE_RUNTIMES

    p = sub.add_parser(
        "det-eval", help="COCO AP of a trained detector (optionally its re-parameterized form)",
        formatter_class=DefaultsFormatter,
        description="Evaluate a detector file with pycocotools: AP, AP50, AP75, APs/APm/APl (and mask AP for "
                    "Mask R-CNN), printed and saved as JSON. A detector checkpoint (det-train's last.pt, a "
                    "--save-deploy file) is evaluated as torchvision evaluates it, by default on the val split "
                    "of the data it was trained on; an exported detector file (.onnx, .int8.onnx, .xml, .tflite, "
                    ".mnn, .ncnn.param) on its own runtime, with the same post-processing and scoring. Exit "
                    "codes: 2 bad arguments or a classifier file (use eval), 1 a file or data that cannot be "
                    "evaluated.")
    p.add_argument("checkpoint", type=checkpoint_file,
                   help="last.pt from det-train, a detector saved with --save-deploy, or an exported detector")
    p.add_argument("--data", default=None, metavar="ROOT", type=input_dir,
                   help="COCO-layout dataset root (default: the training data)")
    p.add_argument("--val-split", default="val", help="split to evaluate with --data, e.g. val2017")
    p.add_argument("--skip-missing-images", action="store_true", help="skip (and count) missing image files")
    p.add_argument("--reparameterize", action="store_true",
                   help="fold the backbone into its deploy form first (same detections, faster)")
    p.add_argument("--save-deploy", default=None, metavar="PATH", type=output_file,
                   help="with --reparameterize: also save the deploy-form detector here (default: not saved)")
    p.add_argument("--output", default=None, type=output_file,
                   help="metrics JSON (default: next to the checkpoint, eval_<form>.json)")
    p.add_argument("--batch-size", type=COUNT, default=2, help="images per batch")
    p.add_argument("--workers", type=COUNT0, default=2, help="data-loading worker processes")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--threads", type=COUNT, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--runtime", choices=FILE_RUNTIMES, default=None,
                   help="runtime for an exported file that can run on several (default: the file's own)")
    p.set_defaults(func=_cmd_det_eval)

