"""`repghost convert` and `repghost export`."""

from __future__ import annotations

import argparse
import os

from .args import COUNT, USAGE_ERROR, Number, checkpoint_file, fail, mean_std, model_name, output_file
from .errors import usage_errors


def _deploy_out(text: str) -> str:
    if not text.endswith(".safetensors"):
        raise argparse.ArgumentTypeError(f"the output must be a .safetensors file, got {text!r}")
    return output_file(text)


def _cmd_convert(args) -> int:
    from ..deploy import convert

    result = convert(args.checkpoint, args.out, model_name=args.model, num_classes=args.num_classes,
                     use_ema=args.ema, img_size=args.img_size)
    for note in result.notes:
        print(f"note: {note}")
    if result.check is None:
        print(f"{result.model_name}: already in deploy form; copied")
    else:
        print(f"{result.model_name}: deploy form checked against the checkpoint: {result.check}")
    print("preprocessing: " + (result.preprocess.describe() if result.preprocess else
                               "not recorded by the source (consumers will use the model's default)"))
    print(f"wrote {result.path}")
    return 0


def add_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint to the deploy form (safetensors)",
                       description="Load a checkpoint (any file repghost writes — last.pt / best.pt, train-form "
                                   "safetensors — or, with --model, an official RepGhost / timm / raw state dict), "
                                   "re-parameterize it, verify the fold (redone in float64, where a correct fold "
                                   "is exact to ~1e-12, and every float32 weight within rounding of it), and write "
                                   "a deploy safetensors file that keeps the source's preprocessing and class "
                                   "names. Exit codes: 2 bad arguments, 1 unreadable checkpoint or failed check; "
                                   "nothing is written unless everything succeeds.")
    p.add_argument("checkpoint", type=checkpoint_file, help="checkpoint to convert")
    p.add_argument("out", type=_deploy_out, help="output path (.safetensors), in an existing directory")
    p.add_argument("--model", type=model_name,
                   help="model name, for checkpoints without repghost metadata (e.g. repghostnet_100)")
    p.add_argument("--num-classes", type=COUNT, help="classes (default: the checkpoint's classifier width)")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    p.add_argument("--img-size", type=COUNT, default=None,
                   help="input size of the check (default: the recorded input size, else 224)")
    p.set_defaults(func=_cmd_convert)


def _source(text: str) -> str:
    """A checkpoint file, or a model name: registered, or a searched architecture's file or inline name."""
    from ..names import MODEL_NAMES, is_checkpoint_path, is_searched_architecture

    if is_checkpoint_path(text):
        return checkpoint_file(text)  # what it holds is read by the work (exit 1 when it is not a checkpoint)
    if is_searched_architecture(text):
        model_name(text)  # a searched architecture: its errors say what is wrong
        return text
    if text not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a checkpoint file nor a model name; "
                                         f"models: {', '.join(MODEL_NAMES)}")
    return text


def _recipe(text: str) -> str:
    from ..deploy import Recipe

    try:
        Recipe.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _calib(text: str) -> str:
    if text != "digits" and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'digits' or an image folder")
    return text


def _cmd_export(args) -> int:
    from ..deploy.pipeline import export, int8_formats, resolve_format

    with usage_errors(ValueError):  # the output's extension and --format disagree
        fmt = resolve_format(args.out, args.format)
    if args.int8 and fmt not in int8_formats():
        return fail("export", f"--int8 is available for --format {' / '.join(int8_formats())}, not {fmt}",
                    USAGE_ERROR)
    if _is_detector(args.source):
        return _export_detector(args, fmt)
    export(args.source, args.out, fmt=fmt, img_size=args.img_size, mean=args.mean, std=args.std,
           opset=args.opset, exporter=args.exporter, int8=args.int8, recipe=args.recipe, calib=args.calib,
           num_calib=args.num_calib, num_held_out=args.num_held_out, model_name=args.model,
           num_classes=args.num_classes, use_ema=args.ema)
    return 0


def _is_detector(source: str) -> bool:
    from ..detection.files import is_detector_checkpoint
    from ..names import is_checkpoint_path

    return is_checkpoint_path(source) and is_detector_checkpoint(source)


#: ``repghost export`` flags that describe a classifier, and so do not apply to a detector checkpoint.
_CLASSIFIER_FLAGS = ("mean", "std", "model", "num_classes", "calib")


def _export_detector(args, fmt: str) -> int:
    from ..deploy.detector_export import export_detector

    given = [f"--{name.replace('_', '-')}" for name in _CLASSIFIER_FLAGS if getattr(args, name) is not None]
    given += ["--ema"] if args.ema else []
    if given:
        return fail("export", f"{' '.join(given)} do(es) not apply to a detector (it records its classes, input "
                              "and preprocessing; --int8 calibrates on the data it was trained on)", USAGE_ERROR)
    export_detector(args.source, args.out, fmt, img_size=args.img_size, opset=args.opset,
                    exporter=args.exporter, int8=args.int8, recipe=args.recipe, num_calib=args.num_calib,
                    num_held_out=args.num_held_out)
    return 0


def add_export(sub) -> None:
    from ..deploy import DEFAULT_RECIPE
    from ..names import EXPORT_FORMATS as FORMATS
    from ..names import EXPORT_SUFFIXES as SUFFIXES

    p = sub.add_parser("export", help="export a model to ONNX (optionally int8), TorchScript, MNN, ncnn, OpenVINO "
                                      "or LiteRT",
                       description="Export the deploy form of a checkpoint (any file repghost writes, or an "
                                   "official / timm one with --model) or, with random weights, of a model name "
                                   "(registered, or a searched architecture's arch.json or inline name), "
                                   "run the exported model with its own runtime on random input and compare with "
                                   "PyTorch: above tolerance it fails and removes the file(s), as it does for an "
                                   "ONNX graph that still holds a BatchNormalization (or, in a RepGhostNet, a "
                                   "Concat). The input size and "
                                   "the int8 calibration follow the preprocessing the checkpoint records (flags "
                                   "override), and every export carries it (ONNX metadata, a TorchScript extra "
                                   "file, OUT.repghost.json beside an edge runtime's files). onnx: opset >= 17, "
                                   "dynamic batch axis, input 'input', output 'logits', checked with onnxruntime; "
                                   "--int8 adds a statically quantized model and reports its top-1 change against "
                                   "fp32 on held-out images. Edge runtimes (static input 1x3xSIZExSIZE, fp32): "
                                   "mnn -> OUT.mnn; ncnn -> OUT (.param graph) + OUT with suffix .bin, e.g. "
                                   "model.ncnn.param + model.ncnn.bin; openvino -> OUT.xml + OUT.bin; litert -> "
                                   "OUT.tflite. Each needs its extra: pip install 'repghost[mnn]' (or ncnn, "
                                   "openvino, litert; edge for all). A detector checkpoint (det-train's last.pt: "
                                   "SSDLite or RetinaNet) exports to onnx, openvino, litert, mnn or ncnn as a "
                                   "fixed-size graph (backbone re-parameterized, heads, box decoding, scores; "
                                   "resizing and NMS run in Python), checked on bundled photos; --int8 (onnx, "
                                   "openvino) reports the AP change on its val images; Mask R-CNN is refused "
                                   "(exit 2). Exit codes: 2 bad arguments, 1 failed; nothing is written when the "
                                   "arguments or data are bad.")
    suffixes = ", ".join(f"{' or '.join(ends)} {fmt}" for fmt, ends in SUFFIXES.items())
    p.add_argument("source", type=_source,
                   help="checkpoint path, or a model name such as repghostnet_100 or arch.json from `repghost search`")
    p.add_argument("out", type=output_file, help=f"output file, in an existing directory; its extension sets the "
                                                 f"format: {suffixes}")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="default: the one OUT's extension names; an extension that names another format is refused, "
                        "and a name without a known extension needs --format")
    p.add_argument("--img-size", type=COUNT, default=None,
                   help="input size (default: the checkpoint's recorded size, else 224)")
    p.add_argument("--mean", **mean_std("mean"), default=None, help="normalization mean (default: recorded)")
    p.add_argument("--std", **mean_std("std"), default=None, help="normalization std (default: recorded)")
    p.add_argument("--opset", type=Number(int, 17), default=18, help="ONNX opset, >= 17 (default 18)")
    p.add_argument("--exporter", choices=("dynamo", "legacy"), default="dynamo", help="torch.onnx exporter")
    p.add_argument("--model", type=model_name, help="model name, for checkpoints without repghost metadata")
    p.add_argument("--num-classes", type=COUNT, help="classes of a model built by name (default 1000)")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    q = p.add_argument_group("int8 (onnx; openvino through NNCF)")
    q.add_argument("--int8", action="store_true", help="also write OUT with suffix .int8.onnx")
    q.add_argument("--recipe", type=_recipe, default=DEFAULT_RECIPE,
                   help=f"FORMAT[-nodw][-sSTRIDE], FORMAT qdq|qop (default {DEFAULT_RECIPE}: int8 from stride 16 on)")
    q.add_argument("--calib", type=_calib, default=None,
                   help="'digits' or an image folder (train/ + val/, or class folders); default: the data the "
                        "checkpoint was trained on, else digits")
    q.add_argument("--num-calib", type=COUNT, default=64, help="calibration images (default 64)")
    q.add_argument("--num-held-out", type=COUNT, default=None,
                   help="held-out images for the top-1 check (default: the whole val split)")
    p.set_defaults(func=_cmd_export)
