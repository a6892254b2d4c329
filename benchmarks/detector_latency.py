"""Detectors across runtimes: SSDLite-RepGhostNet-0.5× and SSDLite-MobileDet-CPU at 320², batch 1, 1 thread.

For each installed runtime (PyTorch eager, onnxruntime, MNN, ncnn, OpenVINO, LiteRT) it times the
backbone alone, backbone + heads (the graph ``repghost export`` writes, box decoding included), and a
user's end-to-end call on the bundled photos (resize + normalize, the graph, then score threshold,
top-k, class-wise NMS and the boxes scaled back), the time each such call spent in the post-processing
and its share, and how many boxes reached NMS (:func:`repghost.bench.detectors.bench_detector`).

The detectors are trained, not random: post-processing time depends on how many boxes pass the score
threshold, which an untrained head (every anchor of every class) would blow up. They are trained here on
the built-in synthetic set (``repghost det-train --model ssdlite``: 12 epochs at 128², 3 classes) unless
``WORK/<name>/last.pt`` exists, then run at 320² (their anchors follow the input size). Each repeat
appends its rows to ``OUT/detector_latency_runs.json`` as it finishes (a stopped run loses only the
repeat in progress); ``OUT/detector_latency.md`` holds every repeat's table.

    python benchmarks/detector_latency.py [--work runs/det-bench] [--repeats 2] [--runs 30] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from repghost.bench.detectors import DETECTOR_RUNTIMES, DetectorResult, bench_detector, format_detector_table
from repghost.bench.latency import environment
from repghost.deploy.edge import EDGE_RUNTIMES
from repghost.detection.engine import load_detector, make_train_config, train_detector
from repghost.io import atomic_write_json, atomic_write_text

DETECTORS = {"ssdlite_repghostnet_050": "repghostnet_050", "ssdlite_mobiledet_cpu": "mobiledet_cpu"}


def installed_runtimes() -> list[str]:
    found = []
    for runtime in DETECTOR_RUNTIMES:
        if runtime in EDGE_RUNTIMES:
            try:
                EDGE_RUNTIMES[runtime].require(export=True)
            except Exception:
                continue
        found.append(runtime)
    return found


def trained_checkpoint(work: Path, name: str, backbone: str) -> Path:
    out = work / name
    if not (out / "last.pt").exists():
        train_detector(make_train_config(output=str(out), model="ssdlite", backbone=backbone,
                                         synthetic_dir=str(work / "synthetic"), epochs=12, lr_steps=[10], workers=0,
                                         threads=1, eval_every=0))
    return out / "last.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/det-bench", help="where the trained detectors are (or go)")
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = {name: trained_checkpoint(work, name, backbone) for name, backbone in DETECTORS.items()}
    runtimes = installed_runtimes()
    log_path = out / "detector_latency_runs.json"
    done = json.loads(log_path.read_text()) if log_path.exists() else {"environment": environment(), "runs": []}
    for repeat in range(len(done["runs"]), args.repeats):
        rows = []
        for name, path in checkpoints.items():
            model, state = load_detector(path)
            results = bench_detector(model, state["categories"], name, runtimes, args.img_size, threads=1,
                                     warmup=args.warmup, runs=args.runs, progress=True, log=lambda m: None)
            rows += [vars(r) for r in results]
            print(format_detector_table(results), flush=True)
        done["runs"].append({"repeat": repeat + 1, "load_average": os.getloadavg(), "results": rows})
        atomic_write_json(log_path, done, indent=1)
    tables = []
    for run in done["runs"]:
        results = [DetectorResult(**row) for row in run["results"]]
        tables.append(f"Run {run['repeat']} (load average {', '.join(f'{x:.1f}' for x in run['load_average'])}):\n\n"
                      + format_detector_table(results))
    atomic_write_text(out / "detector_latency.md", "\n\n".join(tables) + "\n")
    print(f"wrote {log_path}, {out / 'detector_latency.md'}")


if __name__ == "__main__":
    main()
