"""`repghost bench`."""

from __future__ import annotations

import sys

from .args import COUNT, COUNT0, USAGE_ERROR, checkpoint_file, data_root, fail, model_name, output_dir
from .errors import usage_errors


def _cmd_bench(args) -> int:
    from ..bench import BenchConfig, format_table, run_benchmark, write_results

    if args.concat_vs_add:  # an alias of `repghost study concat-add`
        from ..study import concat_add
        from .study import report

        return report(concat_add.run, args.out, batch_sizes=args.batch, img_size=(args.img_size or [224])[0],
                      runs=args.runs, warmup=args.warmup, threads=args.threads[0], opt_level=args.ort_opt_level,
                      progress=sys.stderr.isatty())
    if not args.models:
        return fail("bench", "name at least one model (or pass --concat-vs-add)", USAGE_ERROR)
    if args.data is not None:
        return _formats(args)
    detectors = _detector_checkpoints(args.models)
    if detectors:
        return _bench_detectors(args, detectors)
    with usage_errors(ValueError):  # a bad spec / runtime / size; a model file's contents keep their own code
        img_sizes = args.img_size or _recorded_sizes(args.models)
        config = BenchConfig(models=args.models, runtimes=args.runtimes, threads=args.threads,
                             batch_sizes=args.batch, img_sizes=img_sizes, warmup=args.warmup, runs=args.runs,
                             device=args.device)
        results = run_benchmark(config)
    print(format_table(results))
    paths = write_results(results, args.out, config)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _formats(args) -> int:
    """``bench FILE... --data DIR``: accuracy, size and latency per model file."""
    import os

    from ..bench.formats import benchmark_formats, format_formats_table, write_formats

    not_files = [m for m in args.models if not os.path.isfile(m)]
    if not_files:
        return fail("bench", f"--data measures model files; {', '.join(not_files)} is not one", USAGE_ERROR)
    if len(args.threads) > 1:
        return fail("bench", "--data times at one thread count; give one --threads value", USAGE_ERROR)
    rows = benchmark_formats(args.models, args.data, args.split, threads=args.threads[0], warmup=args.warmup,
                             runs=args.runs, progress=sys.stderr.isatty(), log=print)
    print(format_formats_table(rows))
    paths = write_formats(rows, args.out, dict(data=args.data, split=args.split, threads=args.threads[0],
                                               warmup=args.warmup, runs=args.runs))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _detector_checkpoints(specs: list[str]) -> list[str]:
    from ..detection.files import is_detector_checkpoint
    from ..names import is_checkpoint_path

    return [s for s in specs if is_checkpoint_path(s) and is_detector_checkpoint(s)]


def _bench_detectors(args, detectors: list[str]) -> int:
    """Detector checkpoints: body, body + head and end to end (with post-processing) per runtime."""
    from ..bench.detectors import DETECTOR_RUNTIMES, bench_detector, format_detector_table, write_detector_results
    from ..detection.files import load_detector
    from ..detection.graph import exportable

    if len(detectors) != len(args.models):
        return fail("bench", "detector checkpoints are benchmarked on their own: pass only detectors, or only "
                             "classifiers", USAGE_ERROR)
    wrong = [r for r in args.runtimes if r not in DETECTOR_RUNTIMES]
    if wrong or len(args.batch) > 1 or args.batch[0] != 1 or args.device != "cpu" or (args.img_size and
                                                                                         len(args.img_size) > 1):
        return fail("bench", f"a detector is timed at batch 1 on the CPU, at one --img-size, on "
                             f"{' '.join(DETECTOR_RUNTIMES)}", USAGE_ERROR)
    results = []
    for path in detectors:
        model, state = load_detector(path)
        exportable(model.detector_config.model)  # a Mask R-CNN is refused (exit 2)
        label = f"{model.detector_config.model}_{model.detector_config.backbone}"
        for threads in args.threads:
            results += bench_detector(model, state["categories"], label, args.runtimes,
                                      (args.img_size or [None])[0], threads, args.warmup, args.runs,
                                      progress=sys.stderr.isatty())
    print(format_detector_table(results))
    paths = write_detector_results(results, args.out)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _recorded_sizes(specs: list[str]) -> list[int]:
    """The one input size the model files among ``specs`` record (224 when none does)."""
    from ..bench.specs import ModelSpec

    sizes = {s for s in (ModelSpec.parse(t).input_size() for t in specs) if s is not None}
    if len(sizes) > 1:
        raise ValueError(f"the model files record different input sizes {sorted(sizes)}; pass --img-size")
    return sorted(sizes) or [224]


def _spec(text: str) -> str:
    import argparse

    from ..bench.specs import ModelSpec

    try:
        spec = ModelSpec.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if spec.source == "file":
        checkpoint_file(spec.name)  # its contents are read by the work: exit 1 when it is not a checkpoint, as in eval
    elif spec.source == "repghost":
        model_name(spec.name)
    elif spec.source == "timm":
        import timm

        if not timm.is_model(spec.name):
            raise argparse.ArgumentTypeError(f"{text}: timm has no model {spec.name!r}")
    else:
        import torchvision

        if spec.name not in torchvision.models.list_models():
            raise argparse.ArgumentTypeError(f"{text}: torchvision has no model {spec.name!r}")
    return text


def add_bench(sub) -> None:
    from ..names import ORT_OPT_LEVELS, RUNTIMES

    p = sub.add_parser("bench", help="measure latency of models across runtimes (or the Concat-vs-Add study)",
                       description="Latency of each MODEL under each runtime, thread count, batch size and input "
                                   "size: warm-up, then the runners interleaved round by round; median and p90 "
                                   "with params, MACs and the paper's top-1. Writes latency.{json,csv,md,png} to "
                                   "--out. MODEL is [SOURCE:]NAME[@FORM]: SOURCE repghost (default) | timm | "
                                   "torchvision, FORM train (default) | deploy; e.g. repghostnet_100@deploy "
                                   "timm:ghostnet_100 timm:repghostnet_100@deploy torchvision:mobilenet_v3_large; "
                                   "a repghost NAME may be a searched architecture's arch.json or inline name; "
                                   "MODEL may also be a checkpoint repghost wrote (PATH[@FORM], weights loaded). "
                                   "Edge runtimes (mnn ncnn openvino litert; CPU, fp32) need their extras, e.g. "
                                   "pip install 'repghost[edge]'; each export is checked against PyTorch before "
                                   "it is timed. --concat-vs-add runs the paper's Fig. 1/2 study instead (= "
                                   "`repghost study concat-add`). A detector checkpoint (det-train's last.pt; "
                                   "SSDLite, RetinaNet) is timed in three parts per runtime (eager onnxruntime mnn "
                                   "ncnn openvino litert): the backbone alone, backbone + heads (the graph `repghost "
                                   "export` writes), and end to end on bundled photos with resizing and the "
                                   "post-processing (threshold, top-k, NMS), whose time and share are reported; "
                                   "writes detector_latency.{json,md}.")
    p.add_argument("models", nargs="*", metavar="MODEL", type=_spec, help="model specs (see above)")
    p.add_argument("--runtimes", nargs="+", default=["eager", "onnxruntime"], choices=RUNTIMES,
                   help="default: eager onnxruntime; also channels_last torchscript compile mnn ncnn openvino litert")
    p.add_argument("--threads", nargs="+", type=COUNT, default=[1], help="thread counts (default 1)")
    p.add_argument("--batch", nargs="+", type=COUNT, default=[1], help="batch sizes (default 1)")
    p.add_argument("--img-size", nargs="+", type=COUNT, default=None,
                   help="input sizes (default: the size model files record, else 224)")
    p.add_argument("--warmup", type=COUNT0, default=10, help="warm-up runs per runner (default 10)")
    p.add_argument("--runs", type=COUNT, default=50, help="timed rounds (default 50)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu or cuda (default cpu)")
    p.add_argument("--out", default="bench-results", type=output_dir,
                   help="output directory (default bench-results)")
    a = p.add_argument_group("accuracy per format (like Ultralytics' benchmark mode)")
    a.add_argument("--data", default=None, type=data_root,
                   help="measure each MODEL file (a checkpoint and its exports) on this data: format, file size, "
                        "top-1 (classifiers: an ImageFolder root or 'digits') or box AP (detectors: a COCO-layout "
                        "root), and latency at batch 1; writes formats.{json,csv,md} to --out (default: latency "
                        "only)")
    a.add_argument("--split", default="val", help="split to measure accuracy on (default val)")
    s = p.add_argument_group("Concat vs Add (paper Fig. 1 and 2)")
    s.add_argument("--concat-vs-add", action="store_true",
                   help="profile ghostnet_100 vs ghostnet_add_100 per operator with onnxruntime at each --batch "
                        "(e.g. --batch 1 2 4 8 16 32); an alias of `repghost study concat-add`, same files")
    s.add_argument("--ort-opt-level", default="basic", choices=ORT_OPT_LEVELS,
                   help="onnxruntime graph optimization for the study (default basic: keeps Concat/Add nodes)")
    p.set_defaults(func=_cmd_bench)

