"""int8 recipes for repghostnet_100 on this CPU: latency against fp32, and the top-1 they cost.

Latency: deploy repghostnet_100 (1000 classes) at 224², batch 1, 1 thread, onnxruntime with full
graph optimization; fp32 and every recipe timed interleaved round by round, calibrated on digits
images. Accuracy: the same architecture with 10 classes, trained here briefly on the digits set at
64² (there is no ImageNet on this machine), converted, exported and quantized with each recipe,
calibrated on 128 training images; top-1 of fp32 and int8 on the held-out images.

    PYTHONPATH=src python benchmarks/int8.py [--epochs 8] [--runs 100] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import repghost
from repghost.bench import environment
from repghost.data.datasets import digits
from repghost.deploy import RECIPES, compare_int8, export_onnx, load_split, quantize, session
from repghost.io import scratch_dir
from repghost.preprocess import Preprocess


def train_on_digits(size: int, epochs: int, seed: int = 0):
    """repghostnet_100 with 10 classes trained on the 1,437 digits of the train split, evaluated on
    the 360 of the val split, all through one preprocessing (mean / std 0.5)."""
    torch.manual_seed(seed)
    pre = Preprocess(size, (0.5,) * 3, (0.5,) * 3, crop_pct=1.0)
    raw = digits("train")
    x_train = torch.stack([pre.transform()(img) for img in raw.items])
    y_train = torch.tensor(raw.targets)
    model = repghost.create_model("repghostnet_100", num_classes=10, drop_rate=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(x_train) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x_train))
        for i in range(0, len(perm) - 63, 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return repghost.reparameterize(model.eval()), load_split("digits", pre, num_calib=128, seed=seed)


def time_interleaved(paths: dict, runs: int, warmup: int) -> dict:
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    sessions = {k: session(p, threads=1) for k, p in paths.items()}
    for s in sessions.values():
        for _ in range(warmup):
            s.run(None, {"input": x})
    times = {k: [] for k in sessions}
    keys = list(sessions)
    for r in range(runs):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            start = time.perf_counter()
            sessions[k].run(None, {"input": x})
            times[k].append((time.perf_counter() - start) * 1e3)
    return {k: dict(median_ms=float(np.median(v)), p90_ms=float(np.percentile(v, 90))) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    with scratch_dir("int8") as tmp:  # the ONNX files live while they are timed and evaluated
        latency, accuracy = measure(args, tmp)
    write(args, latency, accuracy)


def measure(args, tmp: Path) -> tuple[dict, dict]:
    # Latency at 224², 1000 classes.
    model = repghost.reparameterize(repghost.create_model("repghostnet_100").eval())
    fp32 = export_onnx(model, tmp / "fp32_224.onnx")
    calib224 = load_split("digits", Preprocess.model_default(model), num_calib=32, num_held_out=1).calib
    paths = {"fp32": fp32}
    for recipe in args.recipes:
        paths[recipe] = quantize(fp32, tmp / f"{recipe}_224.onnx", calib224, recipe)
    latency = time_interleaved(paths, args.runs, args.warmup)

    # Accuracy: trained on digits.
    t0 = time.time()
    trained, split = train_on_digits(args.train_size, args.epochs)
    print(f"trained repghostnet_100 on digits at {args.train_size}² for {args.epochs} epochs "
          f"in {time.time() - t0:.0f} s")
    fp32_small = export_onnx(trained, tmp / "fp32_small.onnx", (1, 3, args.train_size, args.train_size))
    accuracy = {}
    for recipe in args.recipes:
        int8 = quantize(fp32_small, tmp / f"{recipe}_small.onnx", split.calib, recipe)
        accuracy[recipe] = compare_int8(fp32_small, int8, split, recipe)
    return latency, accuracy


def write(args, latency: dict, accuracy: dict) -> None:
    base = latency["fp32"]["median_ms"]
    lines = ["| model | median ms (224², 1 thread) | p90 ms | × fp32 | top-1 fp32 | top-1 int8 | change (points) "
             "| agreement |", "|" + "---|" * 8]
    first = next(iter(accuracy.values()))
    lines.append(f"| fp32 | {base:.2f} | {latency['fp32']['p90_ms']:.2f} | 1.00 | {first.fp32_top1:.2%} | – | – | – |")
    for recipe, rep in accuracy.items():
        lat = latency[recipe]
        lines.append(f"| int8 {recipe} | {lat['median_ms']:.2f} | {lat['p90_ms']:.2f} "
                     f"| {lat['median_ms'] / base:.2f} | {rep.fp32_top1:.2%} | {rep.int8_top1:.2%} "
                     f"| {100 * rep.top1_change:+.2f} | {rep.agreement:.1%} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8.md").write_text(table + "\n")
    (out / "int8.json").write_text(json.dumps(dict(
        environment=environment(), epochs=args.epochs, train_size=args.train_size, latency=latency,
        accuracy={k: dict(fp32_top1=v.fp32_top1, int8_top1=v.int8_top1, agreement=v.agreement,
                          held_out=v.num_images) for k, v in accuracy.items()}), indent=1))
    print(f"wrote {out / 'int8.md'}, {out / 'int8.json'}")


if __name__ == "__main__":
    main()
