"""`repghost study res50 | ablation | detection | fidelity | figure1 | concat-add`: the experiments, here."""

from __future__ import annotations

import sys
from collections.abc import Callable

from .args import COUNT, COUNT0, POSITIVE, Number, checkpoint_file, data_root, input_file, output_dir
from .errors import usage_errors


def report(run: Callable, out_dir: str, **kwargs) -> int:
    """Run a study, print its table and write its files; bad input → exit 2 before any work."""
    from ..study import format_report, write_report

    with usage_errors(ValueError, FileNotFoundError):  # bad settings, a missing input
        result = run(**kwargs)
    print(format_report(result))
    paths = write_report(result, out_dir)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _progress() -> bool:
    return sys.stderr.isatty()


def _cmd_res50(args) -> int:
    from ..study import res50

    return report(res50.run, args.out, ratios=args.ratios, batch_sizes=args.batch, runtimes=args.runtimes,
                  threads=args.threads, img_size=args.img_size, warmup=args.warmup, runs=args.runs,
                  progress=_progress())


def _cmd_ablation(args) -> int:
    from ..study import ablation

    overrides = {k: v for k, v in dict(epochs=args.epochs, batch_size=args.batch_size).items() if v is not None}
    return report(ablation.run, args.out, out=args.out, data=args.data, width=args.width, seeds=args.seeds,
                  variants=args.variants, recipe=args.recipe, runtime=args.runtime, latency_size=args.latency_size,
                  threads=args.threads, warmup=args.warmup, runs=args.runs, progress=_progress(), **overrides)


def _cmd_detection(args) -> int:
    from ..study import detection

    overrides = {k: v for k, v in dict(epochs=args.epochs, batch_size=args.batch_size,
                                       workers=args.workers).items() if v is not None}
    if args.stop_after_epoch is not None:
        return _detection_rung(args, overrides)
    return report(detection.run, args.out, out=args.out, architectures=args.archs, seeds=args.seeds,
                  benchmark=args.benchmark, benchmark_sizes=_benchmark_sizes(args), runtime=args.runtime,
                  latency_size=args.latency_size,
                  threads=args.threads, warmup=args.warmup, runs=args.runs, progress=_progress(), **overrides)


def _detection_rung(args, overrides: dict) -> int:
    """``study detection --stop-after-epoch K``: every run to epoch K only; each run's training loss there."""
    from pathlib import Path

    from ..io import atomic_write_json
    from ..study import detection

    with usage_errors(ValueError, FileNotFoundError):
        rows = detection.rung(args.out, args.archs, args.seeds, args.stop_after_epoch, benchmark=args.benchmark,
                              benchmark_sizes=_benchmark_sizes(args), threads=args.threads, progress=_progress(),
                              **overrides)
    for row in rows:
        print(f"{row['arch']:<32} seed {row['seed']}  epoch {row['epoch']}  training loss {row['loss']:.4f}")
    path = Path(args.out) / f"rung_epoch{args.stop_after_epoch}.json"
    atomic_write_json(path, rows, indent=1)
    print(f"wrote {path}; the same command without --stop-after-epoch finishes these runs")
    return 0


def _benchmark_sizes(args) -> dict:
    return dict(num_train=args.train_images, num_search=args.search_images, num_test=args.test_images,
                image_size=args.image_size)


def _cmd_fidelity(args) -> int:
    from ..study import fidelity

    overrides = {k: v for k, v in dict(epochs=args.epochs, batch_size=args.batch_size,
                                       workers=args.workers).items() if v is not None}
    return report(fidelity.run, args.out, out=args.out, cost_model=args.cost_model, supernet=args.supernet,
                  benchmark_sizes=_benchmark_sizes(args),
                  reference=args.reference, count=args.count, tolerance=args.tolerance, draw_seed=args.draw_seed,
                  target_ms=args.target_ms,
                  seeds=args.seeds, benchmark=args.benchmark, runtime=args.runtime, latency_size=args.latency_size,
                  threads=args.threads, warmup=args.warmup, runs=args.runs, progress=_progress(), **overrides)


def _cmd_figure1(args) -> int:
    from ..study import figure1

    return report(figure1.run, args.out, runtime=args.runtime, threads=args.threads, img_size=args.img_size,
                  warmup=args.warmup, runs=args.runs, models=args.models, progress=_progress())


def _cmd_concat_add(args) -> int:
    from ..study import concat_add

    return report(concat_add.run, args.out, batch_sizes=args.batch, img_size=args.img_size, runs=args.runs,
                  warmup=args.warmup, threads=args.threads, opt_level=args.ort_opt_level, progress=_progress())


def _timing_args(p, warmup: int, runs: int, threads: bool = True) -> None:
    if threads:
        p.add_argument("--threads", type=COUNT, default=1, help="compute threads (default 1)")
    p.add_argument("--warmup", type=COUNT0, default=warmup, help=f"warm-up runs per model (default {warmup})")
    p.add_argument("--runs", type=COUNT, default=runs, help=f"timed rounds, models interleaved (default {runs})")
    p.add_argument("--out", default="study-results", type=output_dir, help="output directory (default study-results)")


def _benchmark_run_args(p) -> None:
    """What a study that trains on the detection benchmark and times the bodies takes besides its own."""
    from ..detection.config import BENCHMARK_RECIPE, BENCHMARK_SIZES
    from ..names import RUNTIMES

    p.add_argument("--train-images", type=COUNT, default=BENCHMARK_SIZES["num_train"],
                   help=f"benchmark train split size (default {BENCHMARK_SIZES['num_train']})")
    p.add_argument("--search-images", type=COUNT, default=BENCHMARK_SIZES["num_search"],
                   help=f"benchmark search-validation split size (default {BENCHMARK_SIZES['num_search']})")
    p.add_argument("--test-images", type=COUNT, default=BENCHMARK_SIZES["num_test"],
                   help=f"benchmark test split size (default {BENCHMARK_SIZES['num_test']})")
    p.add_argument("--image-size", type=Number(int, 32), default=BENCHMARK_SIZES["image_size"],
                   help=f"benchmark image size, square; the detector's input too (default "
                        f"{BENCHMARK_SIZES['image_size']})")
    p.add_argument("--batch-size", type=COUNT, default=None,
                   help=f"override the recipe's batch size (default {BENCHMARK_RECIPE['batch_size']})")
    p.add_argument("--epochs", type=COUNT, default=None,
                   help=f"override the recipe's epochs (default {BENCHMARK_RECIPE['epochs']})")
    p.add_argument("--workers", type=COUNT0, default=None,
                   help=f"data loader workers (default {BENCHMARK_RECIPE['workers']})")
    p.add_argument("--runtime", default="onnxruntime", choices=RUNTIMES, help="latency runtime (default onnxruntime)")
    p.add_argument("--latency-size", type=COUNT, default=320, help="input size for latency (default 320)")
    _timing_args(p, warmup=10, runs=50)


def add_study(sub) -> None:
    from ..detection.config import BENCHMARK_RECIPE
    from ..names import ORT_OPT_LEVELS, RESNET_RATIOS, RUNTIMES
    from ..study import figure1
    from ..study.ablation import VARIANTS

    p = sub.add_parser("study", help="the paper's experiments on this machine (res50, ablation, detection, fidelity, "
                                     "figure1, concat-add)",
                       description="Each study prints a Markdown table with the paper's claims answered, and "
                                   "writes <study>.md, .json, .csv and a PNG to --out.")
    studies = p.add_subparsers(dest="study", metavar="STUDY", required=True)

    s = studies.add_parser("res50", help="Ghost-Res50 vs RepGhost-Res50: params, MACs, latency",
                           description="Ghost-Res50 and RepGhost-Res50 at each ratio s, deploy form: params, MACs "
                                       "and latency per runtime and batch size, and the paper's claim (RepGhost-"
                                       "Res50 s=2 faster than Ghost-Res50 s=4: 22 %% MNN, 44 %% TensorRT b32).")
    s.add_argument("--ratios", nargs="+", type=COUNT, default=list(RESNET_RATIOS), help="ratios s (default 2 4)")
    s.add_argument("--batch", nargs="+", type=COUNT, default=[1, 32], help="batch sizes (default 1 32)")
    s.add_argument("--runtimes", nargs="+", default=["eager", "onnxruntime"], choices=RUNTIMES,
                   help="default: eager onnxruntime")
    s.add_argument("--img-size", type=COUNT, default=224, help="input size (default 224)")
    _timing_args(s, warmup=3, runs=20)
    s.set_defaults(func=_cmd_res50)

    s = studies.add_parser("ablation", help="identity-branch and shortcut ablations, trained over seeds",
                           description="Train RepGhostNet at --width once per variant and seed with the same "
                                       "recipe (default: the built-in digits and its recipe), report mean ± std "
                                       "top-1 and the deploy latency of each variant. Runs live in OUT/runs/; "
                                       "running the same command again resumes and skips finished runs. "
                                       f"Variants: {', '.join(VARIANTS)}.")
    s.add_argument("--data", default=None, type=data_root,
                   help="ImageFolder root with train/ and val/ (default: built-in digits)")
    s.add_argument("--width", type=POSITIVE, default=0.5, help="RepGhostNet width (default 0.5)")
    s.add_argument("--seeds", nargs="+", type=COUNT0, default=[0, 1, 2], help="seeds (default 0 1 2)")
    s.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="VARIANT",
                   help=f"subset of: {', '.join(VARIANTS)} (default all)")
    s.add_argument("--recipe", default=None, help="training recipe name or YAML (default: digits without --data, "
                                                  "the folder recipe, fitted to the data, with it)")
    s.add_argument("--epochs", type=COUNT, default=None, help="override the recipe's epochs")
    s.add_argument("--batch-size", type=COUNT, default=None, help="override the recipe's batch size")
    s.add_argument("--runtime", default="onnxruntime", choices=RUNTIMES, help="latency runtime (default onnxruntime)")
    s.add_argument("--latency-size", type=COUNT, default=224, help="input size for latency (default 224)")
    _timing_args(s, warmup=5, runs=30)
    s.set_defaults(func=_cmd_ablation)

    s = studies.add_parser("detection", help="SSDLite architectures × seeds on the detection benchmark: test AP "
                                             "mean ± SE and latency",
                           description="Train each architecture (a registered backbone or a searched architecture's "
                                       "file) once per seed with the detection benchmark's recipe ("
                                       + ", ".join(f"{k} {v}" for k, v in BENCHMARK_RECIPE.items()
                                                   if k not in ("workers", "eval_every"))
                                       + "), evaluate each run once on the benchmark's test split, and time every "
                                       "architecture's SSDLite body in one interleaved run. Prints test AP mean ± "
                                       "SE per architecture. Runs live in OUT/runs/; running the same command "
                                       "again resumes the interrupted run and skips finished ones. Exit codes: "
                                       "0 done, 2 bad arguments, 1 failed, 130 interrupted.")
    s.add_argument("--archs", nargs="+", required=True, metavar="ARCH",
                   help="backbones: registered names (repghostnet_050, mobiledet_cpu, ...) or searched "
                        "architectures' JSON files")
    s.add_argument("--seeds", nargs="+", type=COUNT0, default=[0, 1, 2], help="training seeds (default 0 1 2)")
    s.add_argument("--benchmark", default=None, type=output_dir,
                   help="where the detection benchmark is (generated there if missing; default OUT/benchmark)")
    s.add_argument("--stop-after-epoch", type=COUNT, default=None, metavar="K",
                   help="train every run only up to epoch K of the recipe's schedule now and print each run's "
                        "training loss there, lowest first (a rung of successive halving; no test evaluation, no "
                        "timing). The same command without it finishes the runs exactly as if never stopped")
    _benchmark_run_args(s)
    s.set_defaults(func=_cmd_detection)

    s = studies.add_parser("fidelity", help="does the super-network rank architectures as stand-alone training "
                                            "does? Kendall τ with a bootstrap interval",
                           description="Draw --count random architectures of the RepGhostNet-skeleton space whose "
                                       "latency the cost model predicts within ±--tolerance of --reference's, score "
                                       "each (and the reference) with the trained super-network (box AP on the "
                                       "detection benchmark's search split, BN recalibrated), train each stand-alone "
                                       "per seed as `study detection` does, and report Kendall τ between the "
                                       "super-network's score and stand-alone test AP beside the τ of MACs and "
                                       "params, with the verdict: a search may build on the super-network only if "
                                       "its τ ≥ 0.4 and above both. Everything resumes: the draw is kept in OUT, "
                                       "scores and runs are written as they finish. Exit codes: 0 done, 2 bad "
                                       "arguments, 1 failed, 130 interrupted.")
    s.add_argument("--cost-model", required=True, metavar="JSON", type=input_file,
                   help="a cost model of the RepGhostNet-skeleton space: `repghost costmodel fit --clock cpu DIR` of a "
                        "`repghost costmodel sample --space repghostnet_skeleton/v1 --out DIR` directory")
    s.add_argument("--supernet", default=None, metavar="SUPERNET_PT", type=checkpoint_file,
                   help="a finished super-network training's supernet.pt, trained on the benchmark's train split "
                        "(without it: stand-alone runs and the zero-cost baselines only)")
    s.add_argument("--reference", default="repghostnet_050", help="the latency target's model (default "
                                                                  "repghostnet_050)")
    s.add_argument("--target-ms", type=POSITIVE, default=None,
                   help="the latency the architectures are drawn at, in the cost model's unit: usually the "
                        "reference's measured latency under the cost model's timing settings, or another model's "
                        "(one outside the space) scaled to that unit (default: the cost model's prediction for "
                        "the reference)")
    s.add_argument("--count", type=COUNT, default=16, help="random architectures (default 16)")
    s.add_argument("--tolerance", type=Number(float, 0.0, 1.0), default=0.03,
                   help="relative band around the target latency (default 0.03)")
    s.add_argument("--draw-seed", type=COUNT0, default=0, help="seed of the architectures' draw (default 0)")
    s.add_argument("--seeds", nargs="+", type=COUNT0, default=[0, 1], help="training seeds (default 0 1)")
    s.add_argument("--benchmark", default=None, type=output_dir,
                   help="where the detection benchmark is (generated there if missing; default OUT/benchmark)")
    _benchmark_run_args(s)
    s.set_defaults(func=_cmd_fidelity)

    s = studies.add_parser("figure1", help="accuracy–latency figure: RepGhostNet, GhostNet, MobileNetV3",
                           description="The paper's Fig. 1 with latency measured here (batch 1, deploy form) "
                                       "against the paper's ImageNet top-1, beside the paper's phone latency; "
                                       "answers the headline claims with the ratios measured here.")
    s.add_argument("--runtime", default="onnxruntime", choices=RUNTIMES, help="default onnxruntime")
    s.add_argument("--img-size", type=COUNT, default=224, help="input size (default 224)")
    s.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                   help="a subset of the figure's models (default all): "
                        + ", ".join(figure1.PAPER_POINTS) + "; a timm model also by its bare name, e.g. "
                        "mobilenetv3_large_075")
    _timing_args(s, warmup=5, runs=100)
    s.set_defaults(func=_cmd_figure1)

    s = studies.add_parser("concat-add", help="Concat vs Add operator time in GhostNet 1.0× (paper Fig. 1, 2)",
                           description="Profile ghostnet_100 (Concat) and ghostnet_add_100 (Add) per operator with "
                                       "onnxruntime at each batch size.")
    s.add_argument("--batch", nargs="+", type=COUNT, default=[1, 2, 4, 8, 16, 32], help="default 1 2 4 8 16 32")
    s.add_argument("--img-size", type=COUNT, default=224, help="input size (default 224)")
    s.add_argument("--ort-opt-level", default="basic", choices=ORT_OPT_LEVELS,
                   help="onnxruntime graph optimization (default basic: keeps Concat/Add nodes)")
    _timing_args(s, warmup=3, runs=10)
    s.set_defaults(func=_cmd_concat_add)
