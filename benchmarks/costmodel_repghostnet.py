"""The latency cost model of the RepGhostNet-skeleton space on this machine: up to four timing passes,
wall-clock and CPU-time fits, the spread between passes, the hand-designed RepGhostNets held out, and the
cheap end's coverage.

1. Times architectures 0…N-1 of the space's cost-model sample (half uniform, half drawn toward small
   widths and skips) plus repghostnet_050 / _080 / _100, with ``repghost.costmodel.sample``, into
   ``--samples`` … ``--samples4`` (four independent passes; passes 3 and 4 were timed once records kept the
   CPU time of the same runs). Each is resumable: an interrupted run continues, nothing on disk is
   re-timed (``repghost costmodel sample --space repghostnet_skeleton/v1 --n N`` writes the same
   directories). ``--no-time`` only fits what is on disk.
2. Fits the linear model on a seeded 80 % of the sampled architectures (the three RepGhostNets held out)
   and reports r², MAPE and Kendall's τ on the other 20 % — per complete pass, on the wall clock (relative
   to the reference) and on CPU time, and on the mean of two passes — plus a learning curve; the
   pass-vs-pass spread of the same architectures bounds any fit's fidelity.
3. Predicted vs measured for the three RepGhostNets, and how many sampled architectures are at most as
   slow as RepGhostNet 0.5× (the cheap end a search at its latency needs).

    python benchmarks/costmodel_repghostnet.py                 # 400 archs, onnxruntime, 1 thread, batch 1, 320²

Writes costmodel_repghostnet.{json,md,png}, costmodel_repghostnet_model.json (pass 1, wall clock) and
costmodel_repghostnet_cpu_model.json / _cpu.png (CPU time: the mean of passes 3 and 4, or pass 3) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from costmodel import noise, sampling_span

from repghost.bench import environment
from repghost.costmodel.fit import fit, plot_fit, samples_needed, split_indices
from repghost.costmodel.sampling import TimingSettings, latencies, read_records, sample
from repghost.models.repghostnet_space import RepGhostNetSpace

RESULTS = Path(__file__).parent / "results"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    space = RepGhostNetSpace()
    p.add_argument("--n", type=int, default=400,
                   help=f"sampled architectures to time (≥ {samples_needed(space, 0.2)}: the fit's 80 %% must cover "
                        "the model's free parameters; the issue asks for ≥ 300 plus a held-out split)")
    p.add_argument("--samples", default=str(RESULTS / "costmodel_repghostnet_samples"), help="pass 1 directory")
    p.add_argument("--samples2", default=str(RESULTS / "costmodel_repghostnet_samples_pass2"),
                   help="pass 2 directory ('none': one pass)")
    p.add_argument("--samples3", default=str(RESULTS / "costmodel_repghostnet_samples_cpu"),
                   help="pass 3 directory (timed with the CPU time recorded too; 'none': skip)")
    p.add_argument("--samples4", default=str(RESULTS / "costmodel_repghostnet_samples_cpu2"),
                   help="pass 4 directory (as pass 3; 'none': skip)")
    p.add_argument("--no-time", action="store_true", help="time nothing: fit what the directories hold")
    p.add_argument("--reference", default=space.reference, help="reference architecture ('none': raw medians)")
    p.add_argument("--out", default=str(RESULTS), help="where costmodel_repghostnet.{json,md,png} go")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--img-size", type=int, default=320)
    p.add_argument("--test-fraction", type=float, default=0.2)
    return p.parse_args()


def by_arch(space, records: list[dict], values) -> dict[tuple, float]:
    """Each architecture's fitted latency (ms), by its canonical name."""
    return {space.canonical(r["arch"]): float(v) for r, v in zip(records, values, strict=True)}


def read_pass(space, directory: str, args, settings, timed: bool) -> dict | None:
    """A pass's records and its wall-clock and (where recorded) CPU latencies; timed first unless ``timed``
    is off (then ``None`` for a directory that is not there)."""
    if timed:
        summary = sample(space, directory, args.n, seed=0, settings=settings)
        print(f"{directory}: {summary['timed']} new architectures in {summary['seconds']:.0f} s "
              f"({summary['on_disk']} on disk)")
    elif not Path(directory, "space.json").is_file():
        return None
    records = read_records(directory, space)
    y, how = latencies(records)
    out = dict(dir=directory, records=records, how={"wall": how}, ms={"wall": by_arch(space, records, y)},
               rel={space.canonical(r["arch"]): r["rel_to_ref"] for r in records if "rel_to_ref" in r},
               span=sampling_span(records))
    if records and all("cpu_median_ms" in r for r in records):
        y, how = latencies(records, "cpu")
        out["how"]["cpu"], out["ms"]["cpu"] = how, by_arch(space, records, y)
    return out


def mean_of(a: dict, b: dict, clock: str) -> dict[tuple, float]:
    """Two passes' latencies averaged on ``a``'s scale (wall: each pass is on its own reference's scale)."""
    scale = b["how"][clock].get("reference_ms", 1.0) / a["how"][clock].get("reference_ms", 1.0)
    return {k: (v + b["ms"][clock][k] / scale) / 2 for k, v in a["ms"][clock].items() if k in b["ms"][clock]}


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    space = RepGhostNetSpace()
    settings = TimingSettings(threads=args.threads, img_size=args.img_size, warmup=args.warmup, runs=args.runs,
                              chunk=args.chunk, reference=None if args.reference == "none" else args.reference)
    started, load_start = time.perf_counter(), os.getloadavg()
    dirs = [args.samples, args.samples2, args.samples3, args.samples4]
    passes = {k: read_pass(space, d, args, settings, not args.no_time)
              for k, d in enumerate(dirs, 1) if d != "none"}
    passes = {k: p for k, p in passes.items() if p is not None}
    landmarks = {name: space.load_arch(name) for name in space.always_time}
    sampled = list(dict.fromkeys(space.canonical(r["arch"]) for r in passes[1]["records"]
                                 if "index" in r and r["index"] < args.n))
    draws = {space.canonical(r["arch"]): r["draw"] for r in passes[1]["records"] if "draw" in r}
    train_idx, test_idx = split_indices(len(sampled), args.test_fraction, 0)
    complete = {k for k, p in passes.items() if all(a in p["ms"]["wall"] for a in [*sampled, *landmarks.values()])}

    # What is fitted: every complete pass on the wall clock and, where recorded, on CPU time; and the mean of
    # two complete passes on the same clock (the noise of one pass /√2).
    series = {f"pass {k} {clock}": p["ms"][clock] for k, p in passes.items() if k in complete for clock in p["ms"]}
    for a, b in ((1, 2), (3, 4)):
        for clock in ("wall", "cpu"):
            if {a, b} <= complete and clock in passes[a]["ms"] and clock in passes[b]["ms"]:
                series[f"mean of {a} and {b} {clock}"] = mean_of(passes[a], passes[b], clock)
    fits, landmark_rows = {}, {}
    for label, ms in series.items():
        result = fit(space, sampled, np.array([ms[a] for a in sampled]), split=(train_idx, test_idx),
                     timing=dict(settings.identity(), architectures=len(sampled), series=label,
                                 target="cpu_median_ms" if label.endswith("cpu") else "rel_to_ref"))
        fits[label] = result
        predicted = result.model.predict(space, list(landmarks.values()))
        for (name, arch), pred in zip(landmarks.items(), predicted, strict=True):
            landmark_rows.setdefault(name, {})[label] = dict(measured_ms=ms[arch], predicted_ms=float(pred))
    fits["pass 1 wall"].model.save(out / "costmodel_repghostnet_model.json")
    plot_fit(fits["pass 1 wall"], out / "costmodel_repghostnet.png",
             title=f"RepGhostNet space, ORT {args.threads} thread, {args.img_size}², n={len(sampled)}, pass 1")
    best_cpu = next((label for label in ("mean of 3 and 4 cpu", "pass 3 cpu") if label in fits), None)
    if best_cpu:
        fits[best_cpu].model.save(out / "costmodel_repghostnet_cpu_model.json")
        plot_fit(fits[best_cpu], out / "costmodel_repghostnet_cpu.png",
                 title=f"RepGhostNet space, CPU time, 1 thread, {args.img_size}², n={len(sampled)}, {best_cpu}")

    curve = {n: fit(space, sampled, [series["pass 1 wall"][a] for a in sampled], split=(train_idx[:n], test_idx),
                    underdetermined=True).test
             for n in sorted({100, 150, 200, 250, len(train_idx)}) if n <= len(train_idx)}
    spread = {}
    for a, b in ((1, 2), (3, 4)):
        if a in passes and b in passes:
            measures = {"wall (relative to the reference)": (passes[a]["rel"], passes[b]["rel"])}
            if "cpu" in passes[a]["ms"] and "cpu" in passes[b]["ms"]:
                measures["cpu"] = (passes[a]["ms"]["cpu"], passes[b]["ms"]["cpu"])
            for name, (x, z) in measures.items():
                common = [k for k in x if k in z]
                spread[f"pass {a} vs {b}, {name}"] = dict(noise(np.array([x[k] for k in common]),
                                                               np.array([z[k] for k in common])), n=len(common))
    cheap_end = {}
    for label in ("pass 1 wall", "pass 2 wall", "pass 3 cpu", "pass 4 cpu"):
        if label in series:
            ms = series[label]
            limit = ms[landmarks["repghostnet_050"]]
            below = [a for a in sampled if ms[a] <= limit]
            cheap_end[label] = dict(repghostnet_050_ms=limit, at_most_that=len(below),
                                    by_draw={d: sum(draws.get(a) == d for a in below) for d in ("uniform", "cheap")},
                                    min_ms=min(ms[a] for a in sampled), max_ms=max(ms[a] for a in sampled))

    report = dict(environment=environment(), settings=settings.identity() | dict(warmup=args.warmup, runs=args.runs,
                                                                                chunk=args.chunk),
                  space=dict(id=space.id, fingerprint=space.fingerprint), architectures=len(sampled),
                  passes={k: dict(dir=p["dir"], sampling=p["span"], targets=p["how"], complete=k in complete)
                          for k, p in passes.items()},
                  fits={label: r.model.metrics for label, r in fits.items()}, learning_curve_pass1_wall=curve,
                  pass_spread=spread, landmarks_held_out=landmark_rows, cheap_end=cheap_end,
                  loadavg=dict(start=load_start, end=os.getloadavg()),
                  wall_seconds_this_run=time.perf_counter() - started,
                  shared_machine="2 cores shared with other engineers' test suites, a detection study, super-network "
                                 "noise benchmarks, a detector latency benchmark and exports during the passes "
                                 "(costmodel_repghostnet_load.log)")
    (out / "costmodel_repghostnet.json").write_text(json.dumps(report, indent=1))
    lines = [f"architectures: {len(sampled)} sampled (+ repghostnet_050 / _080 / _100 held out); "
             f"space {space.id} ({space.fingerprint})", "",
             "| pass | timed (UTC) | min | s/arch |", "|---|---|---|---|"]
    lines += [f"| {k} | {p['span']['first'][11:16]}–{p['span']['last'][11:16]} | {p['span']['minutes']:.1f} | "
              f"{p['span']['seconds_per_arch']:.2f} |" for k, p in passes.items()]
    lines += ["", "| fitted on | train r² | held-out r² | MAPE % | Kendall τ |", "|---|---|---|---|---|"]
    for label, r in fits.items():
        m, t = r.model.metrics["test"], r.model.metrics["train"]
        lines.append(f"| {label} | {t['r2']:.4f} | {m['r2']:.4f} | {m['mape']:.2f} | {m['kendall_tau']:.4f} |")
    lines += ["", "| same architectures timed twice | n | median Δ % | p90 Δ % | r² | τ |", "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['median_rel_diff_pct']:.1f} | {v['p90_rel_diff_pct']:.1f} | "
              f"{v['r2_pass_vs_pass']:.4f} | {v['kendall_tau_pass_vs_pass']:.4f} |" for k, v in spread.items()]
    lines += ["", "| training archs (pass 1 wall) | held-out r² | MAPE % | τ |", "|---|---|---|---|"]
    lines += [f"| {n} | {m['r2']:.4f} | {m['mape']:.2f} | {m['kendall_tau']:.4f} |" for n, m in curve.items()]
    lines += ["", "| held out: measured / predicted ms | " + " | ".join(series) + " |", "|---|" + "---|" * len(series)]
    for name, row in landmark_rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{v['measured_ms']:.2f} / {v['predicted_ms']:.2f}"
                                                 for v in row.values()) + " |")
    lines += [""] + [f"{k}: {v['at_most_that']} sampled architectures at most as slow as repghostnet_050 "
                     f"({v['repghostnet_050_ms']:.2f} ms; {v['by_draw']}); range {v['min_ms']:.2f}–{v['max_ms']:.2f} ms"
                     for k, v in cheap_end.items()]
    (out / "costmodel_repghostnet.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
