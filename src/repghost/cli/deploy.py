"""`repghost convert` and `repghost export`."""

from __future__ import annotations

import sys


def _cmd_convert(args) -> int:
    from ..deploy import ConvertError, convert

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


def add_convert(sub) -> None:
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
    from ..deploy import ConvertError, ExportError
    from ..deploy.pipeline import export

    try:
        export(args.source, args.out, fmt=args.format, img_size=args.img_size, opset=args.opset,
               exporter=args.exporter, int8=args.int8, recipe=args.recipe, calib=args.calib,
               num_calib=args.num_calib, num_held_out=args.num_held_out, model_name=args.model,
               num_classes=args.num_classes)
    except (ConvertError, ExportError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def add_export(sub) -> None:
    from ..deploy import DEFAULT_RECIPE
    from ..deploy.pipeline import FORMATS

    p = sub.add_parser("export", help="export a model to ONNX (optionally int8), TorchScript, MNN, ncnn, OpenVINO "
                                      "or LiteRT",
                       description="Export the deploy form of a checkpoint (or of a registered model with random "
                                   "weights), run the exported model with its own runtime on random input and "
                                   "compare with PyTorch: above tolerance it fails and removes the file(s). "
                                   "onnx: opset >= 17, dynamic batch axis, input 'input', output 'logits', checked "
                                   "with onnxruntime; --int8 adds a statically quantized model and reports its "
                                   "top-1 change against fp32 on held-out images. Edge runtimes (static input "
                                   "1x3xSIZExSIZE, fp32): mnn -> OUT.mnn; ncnn -> OUT (.param graph) + OUT with "
                                   "suffix .bin, e.g. model.ncnn.param + model.ncnn.bin; openvino -> OUT.xml + "
                                   "OUT.bin; litert -> OUT.tflite. Each needs its extra: pip install "
                                   "'repghost[mnn]' (or ncnn, openvino, litert; edge for all).")
    p.add_argument("source", help="checkpoint path, or a model name such as repghostnet_100")
    p.add_argument("out", help="output file (.onnx, .pt, .mnn, .ncnn.param, .xml or .tflite)")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="default: onnx")
    p.add_argument("--img-size", type=int, default=224, help="example input size (default 224)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 17 (default 18)")
    p.add_argument("--exporter", choices=("dynamo", "legacy"), default="dynamo", help="torch.onnx exporter")
    p.add_argument("--model", help="model name, for checkpoints without repghost metadata")
    p.add_argument("--num-classes", type=int, help="classes of a model built by name (default 1000)")
    q = p.add_argument_group("int8 (onnx only)")
    q.add_argument("--int8", action="store_true", help="also write OUT with suffix .int8.onnx")
    q.add_argument("--recipe", default=DEFAULT_RECIPE,
                   help=f"FORMAT[-nodw][-sSTRIDE], FORMAT qdq|qop (default {DEFAULT_RECIPE}: int8 from stride 16 on)")
    q.add_argument("--calib", default="digits", help="'digits' (built in) or an ImageFolder directory")
    q.add_argument("--num-calib", type=int, default=64, help="calibration images (default 64)")
    q.add_argument("--num-held-out", type=int, default=256, help="held-out images for the top-1 check (default 256)")
    p.set_defaults(func=_cmd_export)
