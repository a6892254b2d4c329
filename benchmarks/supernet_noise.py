"""How noisy is the super-network's score? Between-subset vs between-architecture variance.

1. train the weight-sharing super-network over the RepGhostNet-skeleton space (sandwich rule with
   in-place distillation, :mod:`repghost.search.supertrain`) on the synthetic set's train split;
2. score ``--random`` random architectures of the space, ``repghostnet_050`` / ``_080`` / ``_100`` and
   the smallest architecture: each path's BN statistics recalibrated on the same ``--calib-batches``
   training minibatches, then its detections on the held-out (val) split, box AP by pycocotools on
   each of ``--subsets`` disjoint image subsets and on the whole split;
3. a two-way ANOVA (architecture × subset) and the split-half rank correlation
   (:func:`repghost.search.proxy.score_noise`), beside the numbers of the old proxy (F = 0.64,
   p = 0.81, split-half Spearman −0.38 on 14 architectures × 6 minibatches).

Every stage resumes: the training from ``supernet.pt``, the scores from ``scores.jsonl`` (one line per
architecture, written as it is scored).

    nice -n 10 python benchmarks/supernet_noise.py --output runs/supernet-noise --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from repghost.detection.config import DataConfig
from repghost.detection.data import CocoDetection, collate
from repghost.detection.synthetic import annotation_path, image_dir
from repghost.io import atomic_write_json
from repghost.search.proxy import box_ap, calibration_batches, image_subsets, predict_architecture, score_noise
from repghost.search.superspace import extreme_arch
from repghost.search.supertrain import CHECKPOINT_FILE, SupernetConfig, train_dataset, train_supernet

OLD_PROXY = dict(F=0.64, p=0.81, split_half_spearman=-0.38, archs=14, subsets=6,
                 source="../shared/SEARCH.md, 'Measured here': Q on 6 held-out minibatches")


def architectures(space, count: int) -> dict[str, tuple[str, ...]]:
    archs = {name: arch for name, arch in space.named_archs().items()}
    archs["smallest"] = extreme_arch(space, False, (0,))
    archs.update({f"random_{i}": space.sample(100, i) for i in range(count)})
    return archs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/supernet-noise")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--val-images", type=int, default=192)
    parser.add_argument("--random", type=int, default=10, help="random architectures (plus 3 RepGhostNets, smallest)")
    parser.add_argument("--reference-op-steps", type=int, default=0,
                        help="first steps with every op the RepGhost bottleneck (SupernetConfig.reference_op_steps)")
    parser.add_argument("--subsets", type=int, default=6)
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    data = DataConfig(synthetic_dir=str(out / "synthetic"), synthetic_train=args.train_images,
                      synthetic_val=args.val_images)
    config = SupernetConfig(output=str(out), data=data, steps=args.steps, threads=args.threads,
                            reference_op_steps=args.reference_op_steps)
    started = time.time()
    training = train_supernet(config, resume=(out / CHECKPOINT_FILE).is_file())
    print(f"super-network trained to step {training.step} ({time.time() - started:.0f} s this run)")
    if training.step < config.steps:
        return  # interrupted: run again to resume
    supernet, space = training.supernet, training.space
    root = data.resolve_root()
    held_out = CocoDetection(annotation_path(root, data.val_split), image_dir(root, data.val_split))
    loader = torch.utils.data.DataLoader(held_out, batch_size=16, collate_fn=collate)
    calibration = calibration_batches(train_dataset(data), args.calib_batches, config.batch_size, seed=1)
    subsets = image_subsets(held_out.coco.getImgIds(), args.subsets)
    scores_file = out / "scores.jsonl"
    done = {}
    if scores_file.is_file():
        done = {r["name"]: r for r in map(json.loads, scores_file.read_text().splitlines()) if r}
    for name, arch in architectures(space, args.random).items():
        if name in done:
            continue
        tick = time.time()
        results = predict_architecture(supernet, arch, calibration, loader, torch.device("cpu"))
        record = dict(name=name, arch=space.arch_name(arch), ap=box_ap(held_out, results),
                      subset_ap=[box_ap(held_out, results, ids) for ids in subsets], seconds=time.time() - tick)
        with scores_file.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        done[name] = record
        print(f"{name}: AP {record['ap']:.2f}, subsets {[round(a, 1) for a in record['subset_ap']]} "
              f"({record['seconds']:.0f} s)")
    names = list(done)
    noise = score_noise([done[n]["subset_ap"] for n in names])
    summary = dict(noise=noise, old_proxy=OLD_PROXY, space=space.fingerprint, steps=config.steps,
                   reference_op_steps=config.reference_op_steps,
                   held_out_images=len(held_out), subsets=args.subsets, calib_batches=args.calib_batches,
                   ap={n: done[n]["ap"] for n in names}, history=training.history[-3:])
    atomic_write_json(out / "noise.json", summary)
    print(json.dumps(noise, indent=1))


if __name__ == "__main__":
    main()
