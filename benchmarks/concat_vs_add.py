"""The paper's Concat-vs-Add study (Fig. 1 and 2) on this CPU: GhostNet 1.0× with its 32 Concat
merges vs the same network with 32 Adds, per-operator times from onnxruntime's profiler at batch
sizes 1…32, 224², 1 thread. The same study as ``repghost study concat-add``; writes
results/concat_add.{md,json,csv} and the two figures (concat_add.png: Fig. 1, concat_add_share.png: Fig. 2).

    PYTHONPATH=src python benchmarks/concat_vs_add.py [--runs 10] [--opt-level basic]
"""

from __future__ import annotations

import argparse

from repghost.study import concat_add, format_report, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--opt-level", default="basic", choices=("disable", "basic", "extended", "all"))
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    result = concat_add.run(args.batch, args.img_size, runs=args.runs, threads=args.threads,
                            opt_level=args.opt_level)
    print(format_report(result))
    print("wrote", ", ".join(map(str, write_report(result, args.out).values())))


if __name__ == "__main__":
    main()
