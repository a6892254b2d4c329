"""The paper's Concat-vs-Add study (Fig. 1 and 2) on this CPU: GhostNet 1.0× with its 32 Concat
merges vs the same network with 32 Adds, per-operator times from onnxruntime's profiler at batch
sizes 1…32, 224², 1 thread. Writes results/concat_vs_add.{json,md} and two PNGs.

    PYTHONPATH=src python benchmarks/concat_vs_add.py [--runs 10] [--opt-level basic]
"""

from __future__ import annotations

import argparse

from repghost.bench import environment, format_study, run_study, write_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--opt-level", default="basic", choices=("disable", "basic", "extended", "all"))
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    rows = run_study(args.batch, args.img_size, runs=args.runs, threads=args.threads, opt_level=args.opt_level)
    print(format_study(rows))
    meta = dict(environment=environment(), threads=args.threads, img_size=args.img_size, opt_level=args.opt_level)
    print("wrote", ", ".join(map(str, write_study(rows, args.out, meta).values())))


if __name__ == "__main__":
    main()
