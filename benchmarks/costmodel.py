"""MobileDets' latency cost model on this machine: sample, re-time, fit, and check it on MobileDet-CPU.

1. Times ``--n`` random architectures of the search space (MobileDet-CPU skeleton × IBN / Fused /
   Tucker / RepGhost choices) with ``repghost.costmodel.sample`` into ``--samples`` (resumable: an
   interrupted run continues, nothing on disk is re-timed), plus ``mobiledet_cpu`` itself.
2. Re-times ``--retime`` of those architectures (and mobiledet_cpu) in two more passes, to measure
   how much one architecture's latency moves run to run — that noise bounds any fit's r². Both the raw
   medians and the reference-relative latencies (``--reference``, see ``repghost.costmodel.sampling``)
   are compared.
3. Fits the linear model on a seeded 80 % of the random architectures and reports r², MAPE and
   Kendall's τ on the other 20 %, plus held-out r² for smaller training sets (a learning curve).
4. Predicted vs measured for the MobileDets: mobiledet_cpu is expressible in the space (held out of
   the fit); GPU / DSP / EdgeTPU have other skeletons, so only their measured latency is reported.

    python benchmarks/costmodel.py                     # 1000 archs, onnxruntime, 1 thread, batch 1, 320²
    python benchmarks/costmodel.py --n 300 --runs 5

Writes costmodel.{json,md,png} and costmodel_model.json to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from repghost import create_model, reparameterize
from repghost.bench import environment
from repghost.bench.latency import time_interleaved
from repghost.bench.runtimes import make_runner
from repghost.costmodel.fit import fidelity, fit, plot_fit, samples_needed, split_indices
from repghost.costmodel.sampling import TimingSettings, latencies, read_records, sample, time_archs
from repghost.deploy.onnx_export import export_for_runtime
from repghost.io import scratch_dir
from repghost.models.mobiledet import MOBILEDETS
from repghost.models.searched import SearchSpace

RESULTS = Path(__file__).parent / "results"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=1000,
                   help=f"random architectures to time (≥ {samples_needed(SearchSpace(), 0.2)}: the fit's 80 %% must "
                        "cover the model's free parameters)")
    p.add_argument("--samples", default=str(RESULTS / "costmodel_samples"), help="sampling directory")
    p.add_argument("--reference", default="mobiledet_cpu", help="reference architecture ('none': raw medians)")
    p.add_argument("--out", default=str(RESULTS), help="where costmodel.{json,md,png} go")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--img-size", type=int, default=320)
    p.add_argument("--retime", type=int, default=40, help="architectures re-timed twice for run-to-run noise")
    p.add_argument("--test-fraction", type=float, default=0.2)
    return p.parse_args()


def sampling_span(records: list[dict]) -> dict:
    """Wall-clock span of the chunks' start times (one continuous run, or several resumes)."""
    stamps = sorted(time.mktime(time.strptime(r["timed_at"], "%Y-%m-%dT%H:%M:%S")) for r in records)
    span = stamps[-1] - stamps[0]
    return dict(first=min(r["timed_at"] for r in records), last=max(r["timed_at"] for r in records),
                minutes=span / 60, seconds_per_arch=span / max(1, len(records) - 1))


def retime(space, archs, settings) -> list[list[dict]]:
    """Two more passes over ``archs``: their records per pass."""
    return [list(time_archs(space, archs, settings, progress=False)) for _ in range(2)]


def as_ms(records: list[dict], how: dict) -> np.ndarray:
    """The fitted latency of ``records`` on the sampling run's scale (raw medians without a reference)."""
    if how["target"] == "rel_to_ref":
        return np.array([r["rel_to_ref"] for r in records]) * how["reference_ms"]
    return np.array([r["median_ms"] for r in records])


def noise(first: np.ndarray, second: np.ndarray) -> dict:
    rel = np.abs(second - first) / ((first + second) / 2) * 100
    return dict(median_rel_diff_pct=float(np.median(rel)), p90_rel_diff_pct=float(np.percentile(rel, 90)),
                max_rel_diff_pct=float(rel.max()), r2_pass_vs_pass=float(fidelity(first, second)["r2"]),
                kendall_tau_pass_vs_pass=float(fidelity(first, second)["kendall_tau"]))


def time_mobiledets(settings: TimingSettings, workdir: Path) -> dict[str, float]:
    """Median latency of the four MobileDet backbones (deploy form, pooled C5, as the space's archs)."""
    size = (settings.batch, 3, settings.img_size, settings.img_size)
    runners = {}
    for name in MOBILEDETS:
        model = reparameterize(create_model(name, num_classes=0).eval())
        path = export_for_runtime(model, workdir / f"{name}.onnx", size)
        runners[name] = make_runner(model, "onnxruntime", size, settings.threads, torch.device("cpu"), path)
    times = time_interleaved(runners, settings.warmup, settings.runs * 2, False, "")
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    space = SearchSpace()
    settings = TimingSettings(threads=args.threads, img_size=args.img_size, warmup=args.warmup, runs=args.runs,
                              chunk=args.chunk, reference=None if args.reference == "none" else args.reference)
    cpu_arch = space.from_model_name("mobiledet_cpu")
    started = time.perf_counter()
    summary = sample(space, args.samples, args.n, seed=0, settings=settings, extra={"mobiledet_cpu": cpu_arch})
    print(f"sampling: {summary['timed']} new architectures in {summary['seconds']:.0f} s "
          f"({summary['on_disk']} on disk)")
    records = read_records(args.samples, space)
    random_records = [r for r in records if "index" in r and r["index"] < args.n]
    named = {r["name"]: r for r in records if "name" in r}
    archs = [r["arch"] for r in random_records]
    y, how = latencies(random_records)

    # Run-to-run noise: the first `retime` random architectures and mobiledet_cpu, two more passes.
    subset = [tuple(a) for a in archs[: args.retime]] + [cpu_arch]
    first = random_records[: args.retime] + [named["mobiledet_cpu"]]
    pass2, pass3 = retime(space, subset, settings)
    raw = {"median_ms": lambda recs: np.array([r["median_ms"] for r in recs])}
    measures = {**raw, how["target"]: lambda recs: as_ms(recs, how)}
    pairs = ((("sampling", first), ("pass 2", pass2)), (("pass 2", pass2), ("pass 3", pass3)))
    variation = {f"{name}: {a} vs {b}": noise(measure(x), measure(z))
                 for name, measure in measures.items() for (a, x), (b, z) in pairs}

    result = fit(space, archs, y, test_fraction=args.test_fraction, seed=0,
                 timing=dict(settings.identity(), architectures=len(archs), **how))
    result.model.save(out / "costmodel_model.json")
    plot_fit(result, out / "costmodel.png",
             title=f"cost model, onnxruntime {args.threads} thread, {args.img_size}², n={len(archs)}")

    # Learning curve: the same held-out set as the fit above, the first n of its training architectures.
    train_idx, test_idx = split_indices(len(archs), args.test_fraction, 0)
    curve = {n: fit(space, archs, y, split=(train_idx[:n], test_idx), underdetermined=True).test
             for n in sorted({100, 200, 400, 600, len(train_idx)}) if n <= len(train_idx)}

    with scratch_dir("mobiledets") as tmp:
        md_measured = time_mobiledets(settings, tmp)
    predicted_cpu = float(result.model.predict(space, [cpu_arch])[0])
    mobiledets = {name: dict(measured_ms=md_measured[name], predicted_ms=None,
                             note="not expressible: other skeleton / stem / activation") for name in MOBILEDETS}
    mobiledets["mobiledet_cpu"].update(predicted_ms=predicted_cpu, sampled_ms=float(as_ms([first[-1]], how)[0]),
                                       retimed_ms=as_ms([pass2[-1], pass3[-1]], how).tolist(),
                                       note="held out of the fit")

    report = dict(environment=environment(), settings=settings.identity() | dict(warmup=args.warmup, runs=args.runs,
                                                                                chunk=args.chunk),
                  architectures=len(archs), target=how, sampling=sampling_span(random_records),
                  wall_seconds_this_run=time.perf_counter() - started,
                  latency_ms=dict(min=float(y.min()), median=float(np.median(y)), max=float(y.max())),
                  variation=variation, fit=result.model.metrics, learning_curve=curve, mobiledets=mobiledets,
                  shared_machine="2 cores shared with other engineers' tests and benchmarks during the run")
    (out / "costmodel.json").write_text(json.dumps(report, indent=1))
    lines = [f"architectures: {len(archs)} random (+ mobiledet_cpu), latency {y.min():.1f}–{y.max():.1f} ms "
             f"(median {np.median(y):.1f})",
             f"sampling: {report['sampling']['minutes']:.1f} min ({report['sampling']['seconds_per_arch']:.2f} s/arch)",
             "", "| run-to-run | median Δ % | p90 Δ % | max Δ % | r² | τ |", "|---|---|---|---|---|---|"]
    for key, v in variation.items():
        lines.append(f"| {key} | {v['median_rel_diff_pct']:.2f} | {v['p90_rel_diff_pct']:.2f} | "
                     f"{v['max_rel_diff_pct']:.2f} | {v['r2_pass_vs_pass']:.4f} | "
                     f"{v['kendall_tau_pass_vs_pass']:.4f} |")
    lines += ["", "| split | n | r² | MAPE % | Kendall τ |", "|---|---|---|---|---|"]
    for split in ("train", "test"):
        m = result.model.metrics[split]
        lines.append(f"| {split} | {m['n']} | {m['r2']:.4f} | {m['mape']:.2f} | {m['kendall_tau']:.4f} |")
    lines += ["", "| training archs | held-out r² | MAPE % | τ |", "|---|---|---|---|"]
    lines += [f"| {n} | {m['r2']:.4f} | {m['mape']:.2f} | {m['kendall_tau']:.4f} |" for n, m in curve.items()]
    lines += ["", "| MobileDet | measured ms (4 interleaved) | sampled / re-timed ms (fit target) | predicted ms "
              "| note |", "|---|---|---|---|---|"]
    for name, v in mobiledets.items():
        pred = f"{v['predicted_ms']:.2f}" if v["predicted_ms"] is not None else "–"
        sampled = (f"{v['sampled_ms']:.2f} / " + " / ".join(f"{t:.2f}" for t in v["retimed_ms"])
                   if "sampled_ms" in v else "–")
        lines.append(f"| {name} | {v['measured_ms']:.2f} | {sampled} | {pred} | {v['note']} |")
    (out / "costmodel.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
