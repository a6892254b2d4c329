"""The default architecture search against MobileDet-CPU, and what the found architecture is worth.

1. time ``mobiledet_cpu`` (deploy form, the cost model's settings: onnxruntime, 1 thread, batch 1,
   320²) on this machine: that is the target ``T``;
2. run ``repghost search`` with its defaults on the built-in synthetic set at that target;
3. train SSDLite from scratch with the same recipe (``det-train``'s synthetic defaults) on the
   found architecture, MobileDet-CPU and RepGhostNet 0.5×, for each ``--seeds``;
4. time the three backbones (deploy form, the SSDLite body up to C5) interleaved, ``--passes`` times;
5. write a table (Markdown, JSON, CSV) and a plot of AP against latency.

Every stage resumes: a finished search or training run is reused, an interrupted one continued.

    python benchmarks/search.py --search-threads 1    # the recorded run; ~1 h 10 min on 2 CPU cores
    python benchmarks/search.py --seeds 0 --steps 300  # a quick look
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from repghost import create_model
from repghost.bench.latency import time_interleaved
from repghost.bench.runtimes import make_runner
from repghost.deploy.onnx_export import export_for_runtime
from repghost.detection.backbone import ssdlite_body
from repghost.models.searched import SearchSpace
from repghost.profile import profile
from repghost.search.engine import short_choice

HERE = Path(__file__).resolve().parent
COSTMODEL = HERE / "results" / "costmodel_model.json"


def time_bodies(backbones: dict[str, str], work: Path, runs: int, size: int = 320) -> dict[str, float]:
    """Median ms of each body, run interleaved round by round (onnxruntime, 1 thread, batch 1)."""
    torch.set_num_threads(1)
    runners = {}
    for label, backbone in backbones.items():
        onnx_path = work / f"{label}.onnx"
        model = ssdlite_body(backbone)
        export_for_runtime(model, onnx_path, (1, 3, size, size))
        runners[label] = make_runner(model, "onnxruntime", (1, 3, size, size), 1, torch.device("cpu"), onnx_path)
    times = time_interleaved(runners, 10, runs, False, "")
    return {label: float(np.median(t)) for label, t in times.items()}


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "search")
    parser.add_argument("--costmodel", type=Path, default=COSTMODEL)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="training seeds")
    parser.add_argument("--search-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--search-threads", type=int, default=None,
                        help="torch threads of each search (the recorded searches used 1; the result follows the "
                             "float rounding, so another count finds other architectures)")
    parser.add_argument("--steps", type=int, default=None, help="search steps (default: the search's default)")
    parser.add_argument("--passes", type=int, default=2, help="latency passes")
    parser.add_argument("--runs", type=int, default=50, help="timed rounds per latency pass")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "repghost"]
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}

    # 1. the target: MobileDet-CPU's body timed here under the cost model's settings.
    if "target_ms" not in summary:
        space = SearchSpace()
        from repghost.search.engine import measure

        timing = json.loads(args.costmodel.read_text())["timing"]
        passes = [measure(space, space.from_model_name("mobiledet_cpu"), {**timing, "reference": "mobiledet_cpu"})
                  for _ in range(3)]
        summary["target_passes_ms"] = [p["measured_ms"] for p in passes]
        summary["target_ms"] = round(float(np.median(summary["target_passes_ms"])), 3)
        summary_path.write_text(json.dumps(summary, indent=1))
    target = summary["target_ms"]
    print(f"target: mobiledet_cpu measured {summary['target_passes_ms']} ms → T = {target} ms", flush=True)

    # 2. the default search, once per --search-seeds.
    found = {}
    for search_seed in args.search_seeds:
        label = "searched" if search_seed == 0 else f"searched_s{search_seed}"
        search_dir = out / ("run" if search_seed == 0 else f"run_seed{search_seed}")
        if not (search_dir / "arch.json").exists():
            cmd = [*cli, "search", "--target-ms", str(target), "--costmodel", str(args.costmodel),
                   "--output", str(search_dir), "--seed", str(search_seed)]
            if args.steps:
                cmd += ["--steps", str(args.steps)]
            if args.search_threads:
                cmd += ["--threads", str(args.search_threads)]
            if (search_dir / "search.pt").exists():
                cmd.append("--resume")
            started = time.time()
            run(cmd)
            summary.setdefault("search_seconds", {})[label] = round(time.time() - started)
            summary_path.write_text(json.dumps(summary, indent=1))
        found[label] = search_dir / "arch.json"

    # 3. the three detectors, same recipe, each seed.
    backbones = {**{label: str(path) for label, path in found.items()}, "mobiledet_cpu": "mobiledet_cpu",
                 "repghostnet_050": "repghostnet_050"}
    results: dict[str, list[dict]] = {label: [] for label in backbones}
    for label, backbone in backbones.items():
        for seed in args.seeds:
            run_dir = out / "train" / f"{label}_seed{seed}"
            if not (run_dir / "metrics.json").exists():  # with --eval-every 0, written after the last epoch
                cmd = [*cli, "det-train", "--model", "ssdlite", "--backbone", backbone, "--seed", str(seed),
                       "--output", str(run_dir), "--synthetic-dir", str(out / "synthetic"), "--eval-every", "0"]
                if (run_dir / "last.pt").exists():
                    cmd.append("--resume")
                started = time.time()
                run(cmd)
                (run_dir / "seconds.txt").write_text(f"{time.time() - started:.0f}\n")
            metrics = json.loads((run_dir / "metrics.json").read_text())
            results[label].append(dict(seed=seed, AP=metrics["bbox"]["AP"], AP50=metrics["bbox"]["AP50"]))

    # 4. latency of the three bodies, interleaved, several passes.
    latency = {label: [] for label in backbones}
    for _ in range(args.passes):
        for label, ms in time_bodies(backbones, out, args.runs).items():
            latency[label].append(round(ms, 3))

    # 5. the table and the plot.
    rows = []
    for label, backbone in backbones.items():
        model = ssdlite_body(backbone)
        detector_params = sum(p.numel() for p in create_model(backbone, features_only=True,
                                                              out_indices=(3, 4)).parameters())
        aps = [r["AP"] for r in results[label]]
        rows.append(dict(backbone=label, AP=float(np.mean(aps)), AP_runs=aps,
                         AP50=float(np.mean([r["AP50"] for r in results[label]])),
                         latency_ms=float(np.median(latency[label])), latency_passes_ms=latency[label],
                         backbone_params=detector_params, macs_320=profile(model, (1, 3, 320, 320)).macs))
    searches = {label: json.loads(path.read_text()) for label, path in found.items()}
    report = dict(target_ms=target, target_passes_ms=summary["target_passes_ms"],
                  search_seconds=summary.get("search_seconds"),
                  found={label: dict(layers=a["layers"], choice_counts=a["choice_counts"],
                                     predicted_ms=a["predicted_ms"], measured=a.get("measured"),
                                     probabilities=[d["probability"] for d in a["layer_details"]])
                         for label, a in searches.items()},
                  rows=rows, seeds=args.seeds)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["backbone", "AP", "AP_runs", "AP50", "latency_ms", "latency_passes_ms", "backbone_params",
                         "macs_320"])
        for r in rows:
            writer.writerow([r["backbone"], f"{r['AP']:.2f}", " / ".join(f"{a:.2f}" for a in r["AP_runs"]),
                             f"{r['AP50']:.2f}", f"{r['latency_ms']:.2f}",
                             " / ".join(f"{t:.2f}" for t in r["latency_passes_ms"]), r["backbone_params"],
                             r["macs_320"]])
    lines = [f"Target T = {target} ms (mobiledet_cpu measured {summary['target_passes_ms']} ms)."]
    for label, a in searches.items():
        lines.append(f"- {label}: {a['choice_counts']}, predicted {a['predicted_ms']:.2f} ms; "
                     + " ".join(short_choice(name) for name in a["layers"]))
    lines += ["",
             "| SSDLite backbone | AP (mean; per seed) | AP50 | body latency, ms (median; per pass) | params "
             "| MACs @320 |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        aps = " / ".join(f"{a:.2f}" for a in r["AP_runs"])
        passes = " / ".join(f"{t:.2f}" for t in r["latency_passes_ms"])
        lines.append(f"| {r['backbone']} | {r['AP']:.2f} ({aps}) | {r['AP50']:.2f} | {r['latency_ms']:.2f} ({passes})"
                     f" | {r['backbone_params'] / 1e6:.2f}M | {r['macs_320'] / 1e9:.3f}G |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows, target, out / "results.png")


def plot(rows: list[dict], target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r, color in zip(rows, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False):
        ax.scatter([r["latency_ms"]] * len(r["AP_runs"]), r["AP_runs"], s=14, alpha=0.45, color=color)
        ax.errorbar(r["latency_ms"], r["AP"], xerr=[[r["latency_ms"] - min(r["latency_passes_ms"])],
                                                     [max(r["latency_passes_ms"]) - r["latency_ms"]]],
                    fmt="o", ms=8, capsize=3, color=color, label=f"{r['backbone']} (mean; dots: seeds)")
    ax.axvline(target, color="gray", ls="--", lw=1, label=f"target {target:.2f} ms")
    ax.set_xlabel("backbone latency, deploy form (ms; onnxruntime, 1 thread, 320²)")
    ax.set_ylabel("AP on the synthetic val split")
    ax.set_title("SSDLite from scratch on the synthetic set", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
