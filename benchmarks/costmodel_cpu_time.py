"""How repeatable is a latency on a shared machine: wall-clock vs CPU time of the same runs.

The cost model's timings are wall-clock medians (relative to a reference run in the same rounds). On a
2-core machine shared with other jobs a run is preempted, and the longer it runs the more often, so
wall time measures the machine's load as much as the architecture. This script times the same
architectures of a sampling directory (deploy form, ONNX, onnxruntime with 1 thread, the cost model's
settings), interleaved round by round, in two passes, and records for every run both the wall time and
the process's CPU time (``time.process_time``: onnxruntime with one intra-op thread computes on the
calling thread, so CPU time is the work done, whoever else holds the cores). It reports how well each
measure repeats from pass to pass (r², Kendall τ, median relative difference): a cost model can be
verified only as far as its measurements repeat.

    python benchmarks/costmodel_cpu_time.py --samples benchmarks/results/costmodel_repghostnet_samples --k 40

Writes costmodel_cpu_time.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from costmodel import noise

from repghost.bench import environment
from repghost.costmodel.sampling import directory_space, read_records
from repghost.deploy.onnx_export import export_for_runtime
from repghost.io import scratch_dir
from repghost.reparam import reparameterize

RESULTS = Path(__file__).parent / "results"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--samples", default=str(RESULTS / "costmodel_repghostnet_samples"), help="sampling directory")
    p.add_argument("--k", type=int, default=40, help="architectures (the directory's first K)")
    p.add_argument("--img-size", type=int, default=320)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out", default=str(RESULTS))
    return p.parse_args()


def session(space, arch, size: int, path: Path) -> ort.InferenceSession:
    model = reparameterize(space.build(arch).eval())
    export_for_runtime(model, path, (1, 3, size, size))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def one_pass(sessions, feed, warmup: int, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """(wall, cpu) medians in ms per session, the sessions run interleaved round by round."""
    for s in sessions:
        for _ in range(warmup):
            s.run(None, feed)
    wall = np.zeros((runs, len(sessions)))
    cpu = np.zeros((runs, len(sessions)))
    for r in range(runs):
        for i, s in enumerate(sessions):
            w0, c0 = time.perf_counter(), time.process_time()
            s.run(None, feed)
            cpu[r, i] = (time.process_time() - c0) * 1e3
            wall[r, i] = (time.perf_counter() - w0) * 1e3
    return np.median(wall, axis=0), np.median(cpu, axis=0)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    space = directory_space(args.samples)
    records = read_records(args.samples, space)[: args.k]
    feed = {"input": np.random.default_rng(0).standard_normal((1, 3, args.img_size, args.img_size), np.float32)}
    load = [os.getloadavg()]
    with scratch_dir("cpu_time") as tmp:
        sessions = [session(space, r["arch"], args.img_size, tmp / f"a{i}.onnx") for i, r in enumerate(records)]
        name = sessions[0].get_inputs()[0].name
        feed = {name: feed["input"]}
        passes = []
        for _ in range(2):
            passes.append(one_pass(sessions, feed, args.warmup, args.runs))
            load.append(os.getloadavg())
    (w1, c1), (w2, c2) = passes
    report = dict(environment=environment(), samples=args.samples, architectures=len(records),
                  settings=dict(img_size=args.img_size, warmup=args.warmup, runs=args.runs, threads=1),
                  loadavg=load, wall_pass_vs_pass=noise(w1, w2), cpu_pass_vs_pass=noise(c1, c2),
                  wall_ms=[w1.tolist(), w2.tolist()], cpu_ms=[c1.tolist(), c2.tolist()],
                  sampled_rel_ms=[r.get("rel_to_ref", 0) * r.get("ref_median_ms", 0) for r in records])
    Path(args.out, "costmodel_cpu_time.json").write_text(json.dumps(report, indent=1))
    for key in ("wall_pass_vs_pass", "cpu_pass_vs_pass"):
        v = report[key]
        print(f"{key}: r² {v['r2_pass_vs_pass']:.4f}  τ {v['kendall_tau_pass_vs_pass']:.4f}  "
              f"median Δ {v['median_rel_diff_pct']:.1f} %  p90 Δ {v['p90_rel_diff_pct']:.1f} %")
    print(f"load average during the run: {load}")


if __name__ == "__main__":
    main()
