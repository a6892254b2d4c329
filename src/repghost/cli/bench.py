"""`repghost bench`."""

from __future__ import annotations

import sys


def _cmd_bench(args) -> int:
    from ..bench import BenchConfig, format_table, run_benchmark, write_results

    if args.concat_vs_add:  # an alias of `repghost study concat-add`
        from ..study import concat_add
        from .study import report

        return report(concat_add.run, args.out, batch_sizes=args.batch, img_size=args.img_size[0], runs=args.runs,
                      warmup=args.warmup, threads=args.threads[0], opt_level=args.ort_opt_level,
                      progress=sys.stderr.isatty())
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


def add_bench(sub) -> None:
    from ..bench import RUNTIMES

    p = sub.add_parser("bench", help="measure latency of models across runtimes (or the Concat-vs-Add study)",
                       description="Latency of each MODEL under each runtime, thread count, batch size and input "
                                   "size: warm-up, then the runners interleaved round by round; median and p90 "
                                   "with params, MACs and the paper's top-1. Writes latency.{json,csv,md,png} to "
                                   "--out. MODEL is [SOURCE:]NAME[@FORM]: SOURCE repghost (default) | timm | "
                                   "torchvision, FORM train (default) | deploy; e.g. repghostnet_100@deploy "
                                   "timm:ghostnet_100 timm:repghostnet_100@deploy torchvision:mobilenet_v3_large. "
                                   "--concat-vs-add runs the paper's Fig. 1/2 study instead (= `repghost study "
                                   "concat-add`).")
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
                        "(e.g. --batch 1 2 4 8 16 32); an alias of `repghost study concat-add`, same files")
    s.add_argument("--ort-opt-level", default="basic", choices=("disable", "basic", "extended", "all"),
                   help="onnxruntime graph optimization for the study (default basic: keeps Concat/Add nodes)")
    p.set_defaults(func=_cmd_bench)

