"""`repghost search`: TuNAS latency-aware architecture search for an SSDLite detector; `repghost evolve`: the
evolutionary search over a trained super-network, held at the target by the cost model."""

from __future__ import annotations

import dataclasses
import sys

from .args import COUNT, input_dir, input_file, model_name, output_dir

#: Flags that map one-to-one onto :class:`repghost.search.SearchConfig` fields (type: the field's limit).
TUNABLE = {
    "steps": "search steps in all (warm-up included)",
    "warmup_fraction": "share of the steps that only train the super-network (controller frozen, uniform sampling)",
    "batch_size": "images per process per step (the held-out minibatch has the same size)",
    "lr": "super-network SGD learning rate (linear warm-up, then cosine to 0)",
    "lr_warmup_steps": "steps of the learning-rate warm-up",
    "momentum": "super-network SGD momentum",
    "weight_decay": "super-network weight decay",
    "clip_grad": "clip the super-network's gradient norm to this",
    "tau": "τ < 0, the weight of the latency penalty |c/T - 1| in the reward",
    "controller_lr": "controller (Adam) learning rate",
    "baseline_momentum": "decay of the reward's moving-average baseline",
    "reward_fraction": "share of the training split held out to score architectures for the controller",
    "seed": "seed of everything random (init, minibatches, flips, sampling)",
    "log_every": "log a line (and a history record) every N steps",
    "checkpoint_every": "save the resumable OUTPUT/search.pt every N steps",
    "workers": "data loader workers per process",
}


def _add_tunables(group, fields: dict, table: dict[str, str]) -> None:
    """One ``--flag`` per config field in ``table``: the field's range as its type, its default, ``table``'s help."""
    for name, text in table.items():
        default = fields[name].default
        group.add_argument(f"--{name.replace('_', '-')}", type=fields[name].metadata["limit"], default=default,
                           help=f"{text} (default {default:g})")


def _cmd_search(args) -> int:
    from ..detection.data import DataConfig
    from ..search import SearchConfig, run_search

    data = DataConfig(root=args.data, train_split=args.train_split, skip_missing_images=args.skip_missing_images)
    options = {name: getattr(args, name) for name in TUNABLE}
    config = SearchConfig(output=args.output, costmodel=args.costmodel, target_ms=args.target_ms, data=data,
                          img_size=args.img_size or (320 if args.data else 128), threads=args.threads,
                          device=args.device, measure=args.measure, resume=args.resume,
                          allow_unfit_costmodel=args.allow_unfit, **options)
    result = run_search(config)
    return 130 if result.interrupted else 0


def add_search(sub) -> None:
    from ..costmodel.fitness import MIN_HELD_OUT_R2
    from ..search import SearchConfig

    fields = {f.name: f for f in dataclasses.fields(SearchConfig)}
    p = sub.add_parser(
        "search", help="latency-aware architecture search (TuNAS) for an SSDLite detector",
        description="Search the cost model's space (MobileDet-CPU's skeleton; IBN / Fused / Tucker / RepGhost "
                    "per layer) for the SSDLite backbone that best trades detection quality against the cost "
                    "model's latency, as MobileDets did: a one-shot super-network trained on one sampled "
                    "architecture per step, and a REINFORCE controller rewarded with Q + τ·|c/T - 1| "
                    "(Q = soft recall at IoU 0.5 on a held-out minibatch, c the predicted latency, T "
                    "--target-ms) after a warm-up. "
                    "Writes OUTPUT/search.pt (resumable with --resume; Ctrl-C saves at the end of the step), "
                    "history.json, and at the end arch.json (for det-train --backbone / create_model) and "
                    "report.md. Without --data it runs on the built-in synthetic set at 128². Under torchrun "
                    "every process trains its share of each minibatch. Exit codes: 0 done, 2 bad arguments "
                    "(a cost model of another space or marked unfit, an unreachable target, a missing data root: "
                    "nothing trained or written), 1 failed, 130 interrupted.")
    p.add_argument("--target-ms", required=True, type=fields["target_ms"].metadata["limit"],
                   help="latency target T, in the cost model's unit (ms under its runtime, threads and input size)")
    p.add_argument("--costmodel", required=True, type=input_file, metavar="MODEL.json",
                   help="latency cost model from `repghost costmodel fit`")
    p.add_argument("--allow-unfit", action="store_true",
                   help=f"search even with a cost model marked unfit (held-out r² < {MIN_HELD_OUT_R2:g}; refused "
                        "otherwise, as its errors would steer the search), with a warning")
    p.add_argument("--output", required=True, type=output_dir, help="search directory")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, metavar="ROOT", type=input_dir,
                   help="COCO-layout dataset root (default: the built-in synthetic set in OUTPUT/synthetic)")
    g.add_argument("--train-split", default="train", help="split to search on, e.g. train2017 (default train)")
    g.add_argument("--skip-missing-images", action="store_true",
                   help="skip (and count) images whose files are missing instead of stopping")
    g.add_argument("--img-size", type=fields["img_size"].metadata["limit"], default=None,
                   help="square detector input (default: 320 with --data, 128 on the synthetic set)")
    g = p.add_argument_group("search")
    _add_tunables(g, fields, TUNABLE)
    g = p.add_argument_group("run")
    g.add_argument("--resume", action="store_true",
                   help="continue from OUTPUT/search.pt (same settings; threads, workers, device, logging and "
                        "checkpointing may change)")
    g.add_argument("--no-measure", dest="measure", action="store_false",
                   help="do not time the result on this machine (e.g. when the cost model is another device's)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    g.add_argument("--threads", type=COUNT, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_cmd_search)


#: ``repghost evolve`` flags that map one-to-one onto :class:`repghost.search.evolution.EvolutionConfig` fields.
EVOLVE_TUNABLE = {
    "tolerance": "keep every candidate's predicted latency within ±this fraction of --target-ms (with "
                 "--measured-band: its measured latency within ±this fraction of MODEL's)",
    "prefilter": "with --measured-band: the cost model's pre-filter, ±this fraction of --target-ms",
    "timing_repeats": "with --measured-band or --measure-against: time each candidate in this many independent "
                      "interleaved runs and keep its mean ratio (one idle run's ratio varies by SD ~0.014; the best "
                      "score among hundreds timed favours one measured low)",
    "population": "architectures per generation",
    "parents": "best architectures kept as parents of the next generation",
    "generations": "generations after the first population",
    "mutation_prob": "probability that a mutation draws one decision again",
    "seed": "seed of the first population, the mutations and the crossovers",
}


def _cmd_evolve(args) -> int:
    from ..search.config import ARCH_FILE
    from ..search.evolution import EvolutionConfig, run_evolution

    options = {name: getattr(args, name) for name in EVOLVE_TUNABLE}
    config = EvolutionConfig(output=args.output, costmodel=args.costmodel, target_ms=args.target_ms,
                             supernet=args.supernet, split=args.split, strategy=args.strategy,
                             quality=args.quality, threads=args.threads, measure_against=args.measure_against,
                             finalists=args.finalists, measured_band=args.measured_band,
                             start_from=tuple(args.start_from), **options)
    result = run_evolution(config)
    for name, ratio in result.history[0].get("start_refused", {}).items():
        print(f"note: start architecture {name} measured {ratio:.3f}× {args.measured_band}'s latency, outside "
              f"±{config.tolerance:.0%}: left out of the first population", file=sys.stderr)
    measured = ""
    if result.measured is not None:
        row = next(r for r in result.measured["rows"] if r["arch"] == result.measured["pick"])
        measured = (f", measured {row['measured_ms']:.2f} ms = {row['ratio']:.3f}× {args.measure_against}'s "
                    f"{row['reference_ms']:.2f} ms ({len(result.measured['rows'])} timed)")
    elif args.measured_band is not None:
        last = result.history[-1]
        measured = (f", measured {last['best_ratio']:.3f}× {args.measured_band}'s latency ({last['timed']} "
                    "architectures timed)")
    print(f"{'best' if result.measured is None else 'measured pick'} of {result.evaluated} architectures: score "
          f"{result.score:.3f}, predicted {result.predicted_ms:.2f} ms{measured} → {result.output / ARCH_FILE}")
    return 0


def add_evolve(sub) -> None:
    from ..search.config import QUALITIES, STRATEGIES, EvolutionConfig

    fields = {f.name: f for f in dataclasses.fields(EvolutionConfig)}
    p = sub.add_parser(
        "evolve", help="evolutionary search over a trained super-network at a latency target (Once-for-All)",
        description="Search the RepGhostNet-skeleton space for the SSDLite backbone a trained weight-sharing "
                    "super-network scores best (box AP of the architecture's path on a held-out split, BN "
                    "recalibrated), every candidate held within ±--tolerance of --target-ms by the cost model, or with "
                    "--measured-band of a model's measured latency (each candidate timed before it is scored). "
                    "Each generation keeps the best --parents and fills the population with mutations and "
                    "crossovers of them. Controls at the same number of scored architectures: --strategy random "
                    "(random search), --quality shuffled (no quality signal), --quality latency (latency only). "
                    "Writes OUTPUT/scores.jsonl as it scores, OUTPUT/evolution.json (settings; per generation "
                    "the best, the population and each decision's choice shares) and at the end "
                    "OUTPUT/arch.json (for det-train --backbone, study detection, create_model): the best score, or "
                    "with --measure-against the best score whose measured latency is within ±--tolerance of that "
                    "model's (the cost model's error per architecture exceeds the band). Ctrl-C keeps "
                    "every score: the same command resumes, scoring only what is missing. Exit codes: 0 done, "
                    "2 bad arguments (nothing scored), 1 failed, 130 interrupted.")
    p.add_argument("--costmodel", required=True, type=input_file, metavar="MODEL.json",
                   help="cost model of the RepGhostNet-skeleton space (`repghost costmodel fit`)")
    p.add_argument("--target-ms", required=True, type=fields["target_ms"].metadata["limit"],
                   help="latency target, in the cost model's unit (ms under its runtime, threads and input size)")
    p.add_argument("--supernet", type=input_file, default=None, metavar="SUPERNET.pt",
                   help="finished super-network checkpoint (needed with --quality supernet, the default)")
    p.add_argument("--output", required=True, type=output_dir, help="search directory")
    p.add_argument("--split", default="search",
                   help="held-out split of the super-network's data the score is computed on (default search)")
    p.add_argument("--strategy", choices=STRATEGIES, default="evolution",
                   help="evolution (default) or random: fresh uniform draws in the band each generation")
    p.add_argument("--quality", choices=QUALITIES, default="supernet",
                   help="supernet (default): the super-network's score; shuffled: a seeded random number per "
                        "architecture (control); latency: -|c/T - 1| (latency-only control)")
    _add_tunables(p, fields, EVOLVE_TUNABLE)
    p.add_argument("--measure-against", type=model_name, default=None, metavar="MODEL",
                   help="end with the measured pick: time the scored architectures' SSDLite bodies (onnxruntime, "
                        "320², 1 thread) best score first, in batches with MODEL in one interleaved run, and write "
                        "the best one within ±--tolerance of MODEL's measured latency to arch.json (every timing in "
                        "OUTPUT/finalists.json); exit 1 if none is. Run it on an idle machine: other work shifts "
                        "the ratios")
    p.add_argument("--finalists", type=fields["finalists"].metadata["limit"], default=fields["finalists"].default,
                   help="architectures timed per interleaved run with --measure-against (default %(default)s)")
    p.add_argument("--measured-band", type=model_name, default=None, metavar="MODEL",
                   help="hold the search to MODEL's *measured* latency: time every candidate's SSDLite body "
                        "(onnxruntime, 320², 1 thread; up to 16 per interleaved run with MODEL) before scoring it, "
                        "and score only those within ±--tolerance of MODEL; the cost model only pre-filters, at "
                        "±--prefilter of --target-ms (every timing in OUTPUT/timings.jsonl: a resume times nothing "
                        "again). Run it on an idle machine: beside other work a ratio varies 2-3x more")
    p.add_argument("--start-from", nargs="+", default=[], metavar="ARCH",
                   help="start the first population with these architectures (registered models the space holds, "
                        "e.g. repghostnet_050, architecture names or arch.json files), the rest uniform draws: the "
                        "search begins at the hand design and mutates around it. Each must be in the cost model's "
                        "band, or with --measured-band is timed first and left out if outside it")
    p.add_argument("--threads", type=COUNT, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_cmd_evolve)
