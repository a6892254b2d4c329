"""How much of a detection run's test AP is evaluation noise: split-half estimates on the test split.

For each trained run (``det-train`` / ``study detection`` run directories), the detector's detections on
its evaluation split are computed once; the split's images are then cut into two random halves ``--splits``
times, and AP is computed on each half. For one fixed model the two halves differ only by which images
they hold, so ``SD(AP_A − AP_B) / 2`` estimates the standard error of the full split's AP that comes from
the choice of test images alone (var(AP_half) ≈ 2·var(AP_full), var(A − B) ≈ 2·var(AP_half)). Comparing
it with the seed-to-seed SD says how much of that SD is training and how much is the test set.

    python benchmarks/detection_eval_noise.py OUT/runs/*-seed* --out benchmarks/results/detection_study/eval_noise.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from repghost.detection.data import DataConfig, collate
from repghost.detection.engine import load_detector
from repghost.detection.evaluate import coco_metrics, predict
from repghost.io import atomic_write_json


def split_half_se(run_dir: Path, splits: int, seed: int) -> dict:
    model, state = load_detector(run_dir / "last.pt")  # the EMA weights when the run kept an EMA
    data = DataConfig(**state["train"]["data"])
    dataset = data.dataset(data.val_split, train=False, masks=False)
    loader = DataLoader(dataset, batch_size=8, collate_fn=collate)
    results, _ = predict(model, loader, torch.device("cpu"), progress=False)

    def ap(subset: dict) -> float:
        return coco_metrics(dataset, subset, ("bbox",))["bbox"]["AP"]

    full = ap(results)
    ids, rng, diffs = sorted(results), random.Random(seed), []
    for _ in range(splits):
        shuffled = rng.sample(ids, len(ids))
        half = len(ids) // 2
        a, b = ({i: results[i] for i in part} for part in (shuffled[:half], shuffled[half:2 * half]))
        diffs.append(ap(a) - ap(b))
    return dict(run=run_dir.name, split=data.val_split, images=len(ids), AP=full, splits=splits,
                se_from_test_images=statistics.stdev(diffs) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories holding last.pt")
    parser.add_argument("--splits", type=int, default=40, help="random half splits per run (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for run_dir in args.runs:
        rows.append(split_half_se(run_dir, args.splits, args.seed))
        print(json.dumps(rows[-1]), flush=True)
        atomic_write_json(args.out, dict(method=__doc__.split("\n\n")[1].replace("\n", " "), rows=rows))


if __name__ == "__main__":
    main()
