"""The latency cost model of the RepGhostNet-skeleton space on this machine: two timing passes, two fits,
the spread between them, the hand-designed RepGhostNets held out, and the cheap end's coverage.

1. Times architectures 0…N-1 of the space's cost-model sample (half uniform, half drawn toward small
   widths and skips) plus repghostnet_050 / _080 / _100, with ``repghost.costmodel.sample``, into
   ``--samples`` (pass 1) and again, independently, into ``--samples2`` (pass 2). Both are resumable:
   an interrupted run continues, nothing on disk is re-timed (``repghost costmodel sample --space
   repghostnet_skeleton/v1 --n N`` writes the same directories).
2. Fits the linear model on a seeded 80 % of the sampled architectures (the three RepGhostNets held out)
   and reports r², MAPE and Kendall's τ on the other 20 %, for each pass's timings (same split), plus a
   learning curve; the pass-vs-pass spread of the same architectures bounds any fit's fidelity.
3. Predicted vs measured for the three RepGhostNets, and how many sampled architectures are at most as
   slow as RepGhostNet 0.5× (the cheap end a search at its latency needs).

    python benchmarks/costmodel_repghostnet.py                 # 400 archs, onnxruntime, 1 thread, batch 1, 320²

Writes costmodel_repghostnet.{json,md,png} and costmodel_repghostnet_model.json (pass 1's fit) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from costmodel import as_ms, noise, sampling_span

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
    p.add_argument("--reference", default=space.reference, help="reference architecture ('none': raw medians)")
    p.add_argument("--out", default=str(RESULTS), help="where costmodel_repghostnet.{json,md,png} go")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--img-size", type=int, default=320)
    p.add_argument("--test-fraction", type=float, default=0.2)
    return p.parse_args()


def by_arch(space, records: list[dict], how: dict) -> dict[tuple, float]:
    """Each architecture's fitted latency (ms, the pass's scale), by its canonical name."""
    return {space.canonical(r["arch"]): float(v) for r, v in zip(records, as_ms(records, how), strict=True)}


def one_pass(space, directory: str, args, settings) -> dict:
    summary = sample(space, directory, args.n, seed=0, settings=settings)
    print(f"{directory}: {summary['timed']} new architectures in {summary['seconds']:.0f} s "
          f"({summary['on_disk']} on disk)")
    records = read_records(directory, space)
    _, how = latencies(records)
    return dict(records=records, how=how, ms=by_arch(space, records, how), span=sampling_span(records))


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    space = RepGhostNetSpace()
    settings = TimingSettings(threads=args.threads, img_size=args.img_size, warmup=args.warmup, runs=args.runs,
                              chunk=args.chunk, reference=None if args.reference == "none" else args.reference)
    started, load_start = time.perf_counter(), os.getloadavg()
    passes = [one_pass(space, args.samples, args, settings)]
    if args.samples2 != "none":
        passes.append(one_pass(space, args.samples2, args, settings))
    landmarks = {name: space.load_arch(name) for name in space.always_time}
    sampled = list(dict.fromkeys(space.canonical(r["arch"]) for r in passes[0]["records"]
                                 if "index" in r and r["index"] < args.n))
    draws = {space.canonical(r["arch"]): r["draw"] for r in passes[0]["records"] if "draw" in r}
    train_idx, test_idx = split_indices(len(sampled), args.test_fraction, 0)

    if len(passes) == 2:
        # Each pass is on its own scale (its reference's median): the mean is taken on pass 1's scale, each pass's
        # time relative to the reference being what it measured.
        scale = passes[1]["how"].get("reference_ms", 1.0) / passes[0]["how"].get("reference_ms", 1.0)
        both = {a: (v + passes[1]["ms"][a] / scale) / 2 for a, v in passes[0]["ms"].items() if a in passes[1]["ms"]}
        passes.append(dict(records=passes[0]["records"], how=passes[0]["how"], ms=both, span=passes[0]["span"],
                           label="mean of 1 and 2"))
    fits, landmark_rows = [], {}
    for k, p in enumerate(passes, 1):
        y = np.array([p["ms"][a] for a in sampled])
        result = fit(space, sampled, y, split=(train_idx, test_idx),
                     timing=dict(settings.identity(), architectures=len(sampled), **p["how"]))
        fits.append(result)
        if k == 1:
            result.model.save(out / "costmodel_repghostnet_model.json")
            plot_fit(result, out / "costmodel_repghostnet.png",
                     title=f"RepGhostNet space, ORT {args.threads} thread, {args.img_size}², n={len(sampled)}, pass 1")
        predicted = result.model.predict(space, list(landmarks.values()))
        for (name, arch), pred in zip(landmarks.items(), predicted, strict=True):
            landmark_rows.setdefault(name, {})[f"pass {k}"] = dict(measured_ms=p["ms"][arch], predicted_ms=float(pred))

    curve = {n: fit(space, sampled, [passes[0]["ms"][a] for a in sampled], split=(train_idx[:n], test_idx),
                    underdetermined=True).test
             for n in sorted({100, 150, 200, 250, len(train_idx)}) if n <= len(train_idx)}
    spread = {}
    if len(passes) == 3:  # on the time relative to the reference: each pass's ms are on its own scale
        rel = [{space.canonical(r["arch"]): r["rel_to_ref"] for r in p["records"]} for p in passes[:2]]
        common = [a for a in rel[0] if a in rel[1]]
        spread = noise(np.array([rel[0][a] for a in common]), np.array([rel[1][a] for a in common]))
        spread["n"] = len(common)
    cheap_end = {}
    for k, p in enumerate(passes[:2], 1):
        limit = p["ms"][landmarks["repghostnet_050"]]
        below = [a for a in sampled if p["ms"][a] <= limit]
        cheap_end[f"pass {k}"] = dict(repghostnet_050_ms=limit, at_most_that=len(below),
                                      by_draw={d: sum(draws.get(a) == d for a in below) for d in ("uniform", "cheap")},
                                      min_ms=min(p["ms"][a] for a in sampled), max_ms=max(p["ms"][a] for a in sampled))

    report = dict(environment=environment(), settings=settings.identity() | dict(warmup=args.warmup, runs=args.runs,
                                                                                chunk=args.chunk),
                  space=dict(id=space.id, fingerprint=space.fingerprint), architectures=len(sampled),
                  sampling=[p["span"] for p in passes[:2]], targets=[p["how"] for p in passes[:2]],
                  fits=[r.model.metrics for r in fits], learning_curve_pass1=curve, pass_spread=spread,
                  landmarks_held_out=landmark_rows, cheap_end=cheap_end,
                  loadavg=dict(start=load_start, end=os.getloadavg()),
                  wall_seconds_this_run=time.perf_counter() - started,
                  shared_machine="2 cores shared with other engineers' test suites, a detection study and a "
                                 "super-network noise benchmark during both passes")
    (out / "costmodel_repghostnet.json").write_text(json.dumps(report, indent=1))
    lines = [f"architectures: {len(sampled)} sampled (+ repghostnet_050 / _080 / _100 held out); "
             f"space {space.id} ({space.fingerprint})", ""]
    lines += ["| pass | timed (UTC) | min | s/arch | split | n | r² | MAPE % | Kendall τ |",
              "|---|---|---|---|---|---|---|---|---|"]
    for k, (p, r) in enumerate(zip(passes, fits, strict=True), 1):
        for split in ("train", "test"):
            m = r.model.metrics[split]
            span = p["span"]
            timed = (f"{span['first'][11:16]}–{span['last'][11:16]} | {span['minutes']:.1f} | "
                     f"{span['seconds_per_arch']:.2f}") if "label" not in p else f"{p['label']} | – | –"
            lines.append(f"| {k} | {timed} | {split} | {m['n']} | {m['r2']:.4f} | {m['mape']:.2f} | "
                         f"{m['kendall_tau']:.4f} |")
    if spread:
        lines += ["", f"pass 1 vs pass 2, time relative to the reference ({spread['n']} architectures): "
                      f"median Δ {spread['median_rel_diff_pct']:.1f} %, "
                      f"p90 {spread['p90_rel_diff_pct']:.1f} %, r² {spread['r2_pass_vs_pass']:.4f}, "
                      f"τ {spread['kendall_tau_pass_vs_pass']:.4f}"]
    lines += ["", "| training archs | held-out r² | MAPE % | τ |", "|---|---|---|---|"]
    lines += [f"| {n} | {m['r2']:.4f} | {m['mape']:.2f} | {m['kendall_tau']:.4f} |" for n, m in curve.items()]
    lines += ["", "| held out | " + " | ".join(f"pass {k} measured / predicted ms" for k in range(1, len(passes) + 1))
              + " |", "|---|" + "---|" * len(passes)]
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
