"""How repeatable is the measured band's ratio (an SSDLite body's median time over the reference's, one interleaved
run: :func:`repghost.search.finalists.time_bodies`)? Two questions, each a stage:

- ``retime``: a measured-band search's scored architectures (every one admitted by its gate) timed again, twice,
  on this machine now: how far is each gate ratio from an idle run's, and one idle run's from another's?
- ``context``: does a body's ratio depend on the other bodies in its interleaved run? The same bodies, built
  once in one process, timed with the reference alone, among ``--archs`` and among ``--archs`` plus 10 more.

Run on an idle machine (nothing else running): that is what the numbers are of. Results as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from repghost.io import atomic_write_json, read_jsonl


def stage_retime(args) -> dict:
    from repghost.search.finalists import MeasureSettings, time_ratios

    gate = {r["arch"]: r for r in read_jsonl(Path(args.search) / "timings.jsonl")}
    scored = [r["arch"] for r in read_jsonl(Path(args.search) / "scores.jsonl")]
    settings = MeasureSettings(reference=args.reference)
    passes = []
    for _ in range(2):
        ratios = {}
        for i in range(0, len(scored), 16):
            ratios.update({r["arch"]: r["ratio"] for r in time_ratios(scored[i:i + 16], settings, progress=False)})
        passes.append(np.array([ratios[n] for n in scored]))
    was = np.array([gate[n]["ratio"] for n in scored])
    loads = [gate[n]["load_1min"] for n in scored]

    def compare(a, b) -> dict:
        d = b - a
        return dict(mean=float(d.mean()), sd=float(d.std(ddof=1)), min=float(d.min()), max=float(d.max()),
                    correlation=float(np.corrcoef(a, b)[0, 1]))

    return dict(search=args.search, reference=args.reference, architectures=len(scored),
                gate_load_1min=[min(loads), max(loads)], load_1min_now=os.getloadavg()[0],
                idle_minus_gate=[compare(was, p) for p in passes], idle2_minus_idle1=compare(*passes),
                out_of_band_idle=[int(np.sum(np.abs(p - 1) > 0.03)) for p in passes],
                rows=[dict(arch=n, gate=float(g), idle=[float(p[i]) for p in passes])
                      for i, (n, g) in enumerate(zip(scored, was, strict=True))])


def stage_context(args) -> dict:
    import tempfile

    import torch

    from repghost.bench.latency import time_interleaved
    from repghost.bench.runtimes import make_runner
    from repghost.detection.backbone import ssdlite_body
    from repghost.models.repghostnet_space import RepGhostNetSpace

    space = RepGhostNetSpace()
    # labelled by study and file (two studies' picks share file names)
    names = {f"{Path(a).parent.parent.name}/{Path(a).stem}": space.arch_name(space.load_arch(a)) for a in args.archs}
    others = [r["arch"] for r in read_jsonl(Path(args.search) / "timings.jsonl")][:10]
    bodies = {"reference": args.reference, **names, **{f"other{i}": n for i, n in enumerate(others)}}
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="repghost-context-") as tmp:
        runners = {k: make_runner(ssdlite_body(v), "onnxruntime", (1, 3, 320, 320), 1, torch.device("cpu"),
                                  Path(tmp) / f"{i}.onnx") for i, (k, v) in enumerate(bodies.items())}
        contexts = {f"pair:{k}": ["reference", k] for k in names}
        contexts.update({"archs": ["reference", *names], "archs+10": list(bodies)})
        rows = []
        for rep in range(2):
            for label, keys in contexts.items():
                times = time_interleaved({k: runners[k] for k in keys}, 10, 50)
                ref = np.median(times["reference"])
                rows.append(dict(repeat=rep, context=label, reference_ms=float(ref),
                                 ratios={k: float(np.median(times[k]) / ref) for k in keys if k in names}))
                print(rows[-1], flush=True)
    return dict(reference=args.reference, archs=names, rows=rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["retime", "context"])
    p.add_argument("--search", required=True, help="a measured-band search's directory (timings.jsonl, scores.jsonl)")
    p.add_argument("--reference", default="repghostnet_050")
    p.add_argument("--archs", nargs="*", default=[], help="context: architecture files (e.g. a study's picks)")
    p.add_argument("--out", required=True, help="result JSON")
    args = p.parse_args()
    result = {"retime": stage_retime, "context": stage_context}[args.stage](args)
    atomic_write_json(args.out, result, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
