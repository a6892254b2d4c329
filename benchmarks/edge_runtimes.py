"""RepGhostNet vs GhostNet on the edge runtimes: batch 1, 224², 1 thread, fp32.

Models: our RepGhostNet 0.5× / 1.0× / 1.3× and GhostNet 0.5× / 1.0× / 1.3× (deploy form), timm's
MobileNetV3-Large 1.0×, and timm's ``repghostnet_100`` re-parameterized by its own
``reparameterize_model`` (the reference our deploy export must not lose to). Runtimes: PyTorch
eager, onnxruntime, MNN, ncnn, OpenVINO, LiteRT (each export checked against PyTorch first). The
whole benchmark runs ``--repeats`` times (fresh exports each time); per run it reports the
RepGhostNet / GhostNet latency ratio per runtime next to the paper's (MNN on an ARM phone, 1.0×:
62.2 / 74.5 ms = 0.83), the fastest runtime for RepGhostNet, and ours / timm's repghostnet_100.
Every ratio is given on wall time and on process CPU time (the work a call did, without the waits a
busy machine adds). Writes results/edge_runtimes.{json,csv,md,png} (last run's table) and
edge_runtimes_summary.{json,md} (every run).

    python benchmarks/edge_runtimes.py [--runs 100] [--repeats 2] [--out benchmarks/results]
    python benchmarks/edge_runtimes.py --report benchmarks/results/edge_runtimes_summary.json  # tables only
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict
from pathlib import Path

from repghost.bench import BenchConfig, format_table, run_benchmark, write_results

WIDTHS = ("050", "100", "130")
MODELS = ([f"repghostnet_{w}@deploy" for w in WIDTHS] + [f"ghostnet_{w}@deploy" for w in WIDTHS]
          + ["timm:mobilenetv3_large_100", "timm:repghostnet_100@deploy"])
RUNTIMES = ["eager", "onnxruntime", "mnn", "ncnn", "openvino", "litert"]
#: The paper's MNN latencies on an ARM phone at 1.0× (ms) and their ratio.
PAPER_MNN_MS = {"repghostnet_100": 62.2, "ghostnet_100": 74.5}


def medians(results, field: str = "median_ms") -> dict[tuple[str, str], float]:
    return {(r.model, r.runtime): getattr(r, field) for r in results if getattr(r, field) is not None}


def summarize(results, field: str = "median_ms") -> dict:
    """The ratios the issue asks for, from one interleaved run, on wall time (``median_ms``) or on
    process CPU time (``cpu_ms``)."""
    m = medians(results, field)
    ratios = {rt: {w: m[(f"repghostnet_{w}", rt)] / m[(f"ghostnet_{w}", rt)] for w in WIDTHS
                   if (f"repghostnet_{w}", rt) in m and (f"ghostnet_{w}", rt) in m} for rt in RUNTIMES}
    vs_timm = {rt: m[("repghostnet_100", rt)] / m[("timm:repghostnet_100", rt)] for rt in RUNTIMES
               if ("repghostnet_100", rt) in m and ("timm:repghostnet_100", rt) in m}
    fastest = {f"repghostnet_{w}": min((m[(f"repghostnet_{w}", rt)], rt) for rt in RUNTIMES
                                       if (f"repghostnet_{w}", rt) in m)[1] for w in WIDTHS}
    errors = {f"{r.model} / {r.runtime}": r.error for r in results if r.error}
    return dict(repghost_over_ghost=ratios, ours_over_timm_repghostnet_100=vs_timm, fastest_runtime=fastest,
                medians_ms={f"{k[0]} / {k[1]}": v for k, v in m.items()}, errors=errors)


def print_summary(runs: list[dict], what: str) -> None:
    paper = PAPER_MNN_MS["repghostnet_100"] / PAPER_MNN_MS["ghostnet_100"]
    print(f"\n[{what}] RepGhostNet / GhostNet (paper, MNN on an ARM phone, 1.0x: {paper:.2f}); one value per run")
    for rt in RUNTIMES:
        cells = [", ".join(f"{run['repghost_over_ghost'][rt].get(w, float('nan')):.2f}" for run in runs)
                 for w in WIDTHS]
        print(f"  {rt:12s} " + "  ".join(f"{w[0]}.{w[1:]}x: {c}" for w, c in zip(WIDTHS, cells, strict=True)))
    print("ours (deploy export) / timm reparameterized repghostnet_100, per run:")
    for rt in RUNTIMES:
        print(f"  {rt:12s} " + ", ".join(f"{run['ours_over_timm_repghostnet_100'].get(rt, float('nan')):.3f}"
                                         for run in runs))
    print("fastest runtime for RepGhostNet, per run:", [run["fastest_runtime"] for run in runs])


def _cell(values, fmt="{:.2f}") -> str:
    return " / ".join(fmt.format(v) if v is not None else "–" for v in values)


def summary_markdown(summary: dict) -> str:
    """Tables from the summary JSON: medians per model and runtime (one value per run, wall and CPU
    time), the RepGhostNet / GhostNet ratios next to the paper's, ours / timm's repghostnet_100."""
    runs, cpu_runs = summary["runs"], summary.get("cpu_runs") or []
    paper = PAPER_MNN_MS["repghostnet_100"] / PAPER_MNN_MS["ghostnet_100"]
    models = [m.split("@")[0] for m in MODELS]
    lines = []
    for title, group in (("wall time", runs), ("process CPU time", cpu_runs)):
        if not group:
            continue
        lines += [f"Median {title} (ms), one value per run:", "", "| model | " + " | ".join(RUNTIMES) + " |",
                  "|---|" + "---|" * len(RUNTIMES)]
        for m in models:
            lines.append(f"| {m} | " + " | ".join(_cell([r["medians_ms"].get(f"{m} / {rt}") for r in group], "{:.1f}")
                                                   for rt in RUNTIMES) + " |")
        lines += ["", f"RepGhostNet / GhostNet ({title}; paper, MNN on an ARM phone, 1.0×: {paper:.2f}):", "",
                  "| runtime | 0.5× | 1.0× | 1.3× |", "|---|---|---|---|"]
        for rt in RUNTIMES:
            lines.append(f"| {rt} | " + " | ".join(_cell([r["repghost_over_ghost"][rt].get(w) for r in group])
                                                   for w in WIDTHS) + " |")
        lines += ["", f"Ours (deploy export) / timm's re-parameterized repghostnet_100 ({title}): " + ", ".join(
            f"{rt} {_cell([r['ours_over_timm_repghostnet_100'].get(rt) for r in group])}" for rt in RUNTIMES),
            "", f"Fastest runtime for RepGhostNet ({title}), per run: " + "; ".join(
                ", ".join(f"{k.split('_')[1]} {v}" for k, v in r["fastest_runtime"].items()) for r in group), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60, help="timed rounds per run")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="independent runs (fresh exports each)")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--report", metavar="SUMMARY_JSON", help="only rewrite the Markdown of a summary JSON")
    args = parser.parse_args()
    if args.report:
        path = Path(args.report)
        path.with_suffix(".md").write_text(summary_markdown(json.loads(path.read_text())))
        print("wrote", path.with_suffix(".md"))
        return
    config = BenchConfig(models=MODELS, runtimes=RUNTIMES, threads=[1], batch_sizes=[1], img_sizes=[224],
                         warmup=args.warmup, runs=args.runs, progress=False)
    runs, cpu_runs, all_results = [], [], []
    for repeat in range(args.repeats):
        results = run_benchmark(config)
        print(f"\nrun {repeat + 1} of {args.repeats}\n" + format_table(results), flush=True)
        runs.append(summarize(results))
        cpu_runs.append(summarize(results, "cpu_ms"))
        all_results.append(results)
    print_summary(runs, "wall time")
    print_summary(cpu_runs, "process CPU time")
    spread = {key: dict(min=min(r["medians_ms"][key] for r in runs), max=max(r["medians_ms"][key] for r in runs),
                        median=statistics.median(r["medians_ms"][key] for r in runs))
              for key in runs[0]["medians_ms"] if all(key in r["medians_ms"] for r in runs)}
    paths = write_results(all_results[-1], args.out, config, name="edge_runtimes")
    summary = Path(args.out) / "edge_runtimes_summary.json"
    data = dict(paper_mnn_ms=PAPER_MNN_MS, runs=runs, cpu_runs=cpu_runs, spread_ms=spread,
                results=[[asdict(r) for r in rs] for rs in all_results])
    summary.write_text(json.dumps(data, indent=1))
    summary.with_suffix(".md").write_text(summary_markdown(data))
    print("wrote", ", ".join(map(str, [*paths.values(), summary, summary.with_suffix(".md")])))


if __name__ == "__main__":
    main()
