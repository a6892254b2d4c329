"""`repghost costmodel sample | fit | predict`."""

from __future__ import annotations

import sys
from pathlib import Path

from .args import COUNT, COUNT0, DefaultsFormatter, Number, fail, input_dir, input_file, output_dir, output_file


def _error(message: str) -> int:
    return fail("costmodel", message)


def _cmd_sample(args) -> int:
    from ..costmodel.sampling import TimingSettings, sample
    from ..models.space import get_space

    space = get_space(args.space)
    reference = space.reference if args.reference is None else None if args.reference == "none" else args.reference
    try:
        settings = TimingSettings(runtime=args.runtime, threads=args.threads, batch=args.batch, img_size=args.img_size,
                                  warmup=args.warmup, runs=args.runs, chunk=args.chunk, reference=reference)
        extra = {spec: space.load_arch(spec) for spec in args.arch}
        summary = sample(space, args.out, args.n, seed=args.seed, settings=settings, extra=extra,
                         progress=not args.quiet)
    except KeyboardInterrupt:  # the CLI prints it, with how to go on
        raise KeyboardInterrupt(_sample_resume_hint(args.out)) from None
    print(f"timed {summary['timed']} new architecture(s) in {summary['seconds']:.0f} s; "
          f"{summary['on_disk']} on disk in {args.out}")
    return 0


def _sample_resume_hint(out: str) -> str:
    from ..costmodel.sampling import read_records
    from ..costmodel.space import SpaceError

    try:
        done = len(read_records(out))
    except SpaceError:  # stopped before the directory was set up
        return ""
    return f"{done} architecture(s) on disk in {out}; the same command continues"


def _cmd_fit(args) -> int:
    from ..costmodel.fit import MIN_HELD_OUT_R2, fit_directory, plot_fit
    from ..costmodel.sampling import directory_space
    from ..models.space import get_space

    space = get_space(args.space) if args.space else directory_space(args.dir)
    result = fit_directory(args.dir, space, test_fraction=args.test_fraction, seed=args.seed, clock=args.clock)
    out = Path(args.out or Path(args.dir) / "costmodel.json")
    result.model.save(out)
    t = result.model.timing
    png = plot_fit(result, out.with_suffix(".png"),
                   title=f"{t.get('runtime')}, {t.get('threads')} thread(s), batch {t.get('batch')}, "
                         f"{t.get('img_size')}², n={t.get('architectures')}")
    m = result.model.metrics
    print(f"{m['features_kept']} of {m['features_total']} features vary; "
          f"fit on {result.train['n']}, held out {result.test['n']}")
    for split, metrics in (("train", result.train), ("held-out", result.test)):
        print(f"{split:>9}: r² {metrics['r2']:.4f}  MAPE {metrics['mape']:.2f} %  "
              f"Kendall τ {metrics['kendall_tau']:.4f}")
    print(f"wrote {out}, {png}")
    reason = result.model.unfit_reason()
    if reason:
        return _error(f"the cost model is unfit: {reason}. {out} is marked unfit; `repghost search` and "
                      "`repghost costmodel predict` refuse it unless given --allow-unfit")
    print(f"fit for use: held-out r² {result.test['r2']:.4f} ≥ {MIN_HELD_OUT_R2:g}")
    return 0


def _cmd_predict(args) -> int:
    from ..costmodel.fit import CostModel, model_space

    space = model_space(args.model)
    model = CostModel.load(args.model, space)
    arch = space.load_arch(args.arch)
    reason = model.unfit_reason()
    if reason and not args.allow_unfit:
        return _error(f"{args.model} is unfit: {reason}; pass --allow-unfit to predict with it anyway")
    if reason:
        print(f"warning: {args.model} is unfit ({reason}); the prediction may be far off", file=sys.stderr)
    unseen = model.unseen(space, arch)
    if unseen:
        print(f"warning: {len(unseen)} layer choice(s) of this architecture never varied in the fitting data "
              f"({', '.join(unseen[:3])}{', …' if len(unseen) > 3 else ''}); the prediction extrapolates",
              file=sys.stderr)
    latency = float(model.predict(space, [arch])[0])
    print(f"{args.arch}: predicted {latency:.3f} ms ({model.timing})")
    return 0


def add_costmodel(sub) -> None:
    from ..costmodel.fitness import MIN_HELD_OUT_R2
    from ..names import COSTMODEL_CLOCKS, MOBILEDET_SPACE_ID, REPGHOSTNET_SPACE_ID, RUNTIMES, SPACE_IDS

    p = sub.add_parser("costmodel", help="MobileDets' latency cost model: sample & time, fit, predict",
                       description="TuNAS / MobileDets linear latency model on a search space: "
                                   f"{MOBILEDET_SPACE_ID} (the default; MobileDet-CPU's skeleton, IBN / Fused / "
                                   "Tucker / RepGhost layers, kernel 3|5, expansion 4|8, Tucker ratios 0.25|0.75 per "
                                   f"layer after C1) or {REPGHOSTNET_SPACE_ID} (RepGhostNet's skeleton, per-stage "
                                   "widths and per-block op, kernel, middle width, SE and skip).")
    cmds = p.add_subparsers(dest="costmodel_command", metavar="STEP", required=True)

    s = cmds.add_parser("sample", formatter_class=DefaultsFormatter,
                        help="time random architectures of the space on this machine (resumable)",
                        description="Build N seeded random architectures (plus any --arch), fold them, export "
                                    "and time them (warm-up, chunks of --chunk models run interleaved, median). "
                                    "One JSON line per architecture is appended to OUT/records.jsonl as soon as "
                                    "its chunk is timed (with the time relative to --reference run in the same "
                                    "rounds); re-running continues where it stopped and never re-times "
                                    "an architecture already on disk. A directory of another space or other "
                                    "timing settings is refused.")
    s.add_argument("--out", required=True, type=output_dir, help="sampling directory")
    s.add_argument("--space", choices=SPACE_IDS, default=MOBILEDET_SPACE_ID,
                   help=f"search space whose architectures are timed ({REPGHOSTNET_SPACE_ID}: half the sample is "
                        "drawn toward small widths and skips, and repghostnet_050 / _080 / _100 are always timed)")
    s.add_argument("--n", type=COUNT, default=300, help="architectures 0…N-1 of the seeded random sequence")
    s.add_argument("--seed", type=COUNT0, default=0)
    s.add_argument("--arch", action="append", default=[], metavar="ARCH",
                   help="also time this architecture (JSON file or inline name of the space, or a registered model "
                        "it holds: mobiledet_cpu; repghostnet_050 / _080 / _100); repeatable")
    s.add_argument("--runtime", choices=RUNTIMES, default="onnxruntime")
    s.add_argument("--threads", type=COUNT, default=1)
    s.add_argument("--batch", type=COUNT, default=1)
    s.add_argument("--img-size", type=Number(int, 32), default=320)
    s.add_argument("--warmup", type=COUNT0, default=3, help="untimed runs per architecture")
    s.add_argument("--runs", type=COUNT, default=10, help="timed runs per architecture (median kept)")
    s.add_argument("--chunk", type=COUNT, default=8, help="architectures timed interleaved together")
    s.add_argument("--reference", default=None,
                   help="architecture run in every round of every chunk; records keep the time relative to it, "
                        "which cancels the machine's drift ('none': raw medians only; default: the space's, "
                        "mobiledet_cpu / repghostnet_100)")
    s.add_argument("--quiet", action="store_true",
                   help="no progress: no bar on a terminal, no line per chunk in a log")
    s.set_defaults(func=_cmd_sample)

    f = cmds.add_parser("fit", formatter_class=DefaultsFormatter,
                        help="fit the linear model on a sampling directory",
                        description="Least squares on TuNAS's features (per layer one-hot in-ch × out-ch × layer "
                                    "type; constant features dropped) on a seeded random split; reports r², MAPE "
                                    "and Kendall's τ on the held-out architectures; writes the model JSON and a "
                                    "predicted-vs-measured PNG beside it. Fewer training architectures than "
                                    "the model has free parameters are refused, saying how many to time. "
                                    "A model whose held-out r² is below "
                                    f"{MIN_HELD_OUT_R2:g} (its prediction error is then over a third of the "
                                    "latencies' spread) is written marked unfit and the command exits 1: "
                                    "`search` and `predict` refuse it unless given --allow-unfit.")
    f.add_argument("dir", type=input_dir, help="sampling directory (from `costmodel sample`)")
    f.add_argument("--space", choices=SPACE_IDS, default=None,
                   help="the space the directory must hold (default: the one its space.json names)")
    f.add_argument("--out", default=None, type=output_file, help="model JSON (default DIR/costmodel.json)")
    f.add_argument("--clock", choices=COSTMODEL_CLOCKS, default="wall",
                   help="fit the wall-clock times (relative to the reference) or the process's CPU time over the "
                        "same runs (1 thread: the work done, however often a shared machine preempted the run)")
    f.add_argument("--test-fraction", type=Number(float, 0.0, 0.9, exclusive=True), default=0.2)
    f.add_argument("--seed", type=COUNT0, default=0, help="split seed")
    f.set_defaults(func=_cmd_fit)

    r = cmds.add_parser("predict", help="predicted latency of an architecture",
                        description="Predict the latency of ARCH (an architecture JSON file, or mobiledet_cpu — "
                                    "the MobileDet expressible in this space) with a fitted cost model. A model "
                                    f"whose recorded held-out r² is below {MIN_HELD_OUT_R2:g} (or that records "
                                    "none) is refused unless given --allow-unfit.")
    r.add_argument("model", type=input_file, help="cost model JSON (from `costmodel fit`)")
    r.add_argument("arch", help="architecture JSON file or a MobileDet name")
    r.add_argument("--allow-unfit", action="store_true",
                   help=f"predict even with a model marked unfit (held-out r² < {MIN_HELD_OUT_R2:g}), with a warning")
    r.set_defaults(func=_cmd_predict)
