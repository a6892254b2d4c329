"""`repghost bench`."""

from __future__ import annotations

import sys


def _cmd_bench(args) -> int:
    from ..bench import (
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
        from ..deploy.edge import MissingRuntimeError

        try:
            results = run_benchmark(config)
        except MissingRuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except ValueError as err:  # bad spec / runtime / unknown model
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(format_table(results))
        paths = write_results(results, args.out, config)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_bench(sub) -> None:
    from ..bench import RUNTIMES

    p = sub.add_parser("bench", help="measure latency of models across runtimes (or the Concat-vs-Add study)",
                       description="Latency of each MODEL under each runtime, thread count, batch size and input "
                                   "size: warm-up, then the runners interleaved round by round; median and p90 "
                                   "with params, MACs and the paper's top-1. Writes latency.{json,csv,md,png} to "
                                   "--out. MODEL is [SOURCE:]NAME[@FORM]: SOURCE repghost (default) | timm | "
                                   "torchvision, FORM train (default) | deploy; e.g. repghostnet_100@deploy "
                                   "timm:ghostnet_100 timm:repghostnet_100@deploy torchvision:mobilenet_v3_large. "
                                   "Edge runtimes (mnn ncnn openvino litert; CPU, fp32) need their extras, e.g. "
                                   "pip install 'repghost[edge]'; each export is checked against PyTorch before "
                                   "it is timed. --concat-vs-add runs the paper's Fig. 1/2 study instead.")
    p.add_argument("models", nargs="*", metavar="MODEL", help="model specs (see above)")
    p.add_argument("--runtimes", nargs="+", default=["eager", "onnxruntime"], choices=RUNTIMES,
                   help="default: eager onnxruntime; also channels_last torchscript compile mnn ncnn openvino litert")
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

