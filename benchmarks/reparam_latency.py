"""Train vs deploy latency of our models, and timm's re-parameterized RepGhostNet, in PyTorch eager.

Batch 1, 224², one thread by default. Models are interleaved round by round (each round runs
every model once, in a shuffled order) so that drift in machine load hits them all alike; the
table reports the median and p90 per model. Writes ``results/reparam_latency.{json,csv}``.

    python benchmarks/reparam_latency.py --rounds 200
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import statistics
import time
from pathlib import Path

import timm
import torch
from timm.utils import reparameterize_model

import repghost

OURS = ["repghostnet_050", "repghostnet_100", "repghostnet_130", "ghostnet_050", "ghostnet_100", "ghostnet_130"]


def build_models() -> dict[str, torch.nn.Module]:
    models = {}
    for name in OURS:
        train = repghost.create_model(name).eval()
        models[f"{name} (train)"] = train
        models[f"{name} (deploy)"] = repghost.reparameterize(train)
    # timm's own conversion folds only the RepGhost branches and leaves the other BNs in place.
    models["timm repghostnet_100 (reparameterized)"] = reparameterize_model(
        timm.create_model("repghostnet_100", pretrained=False).eval())
    return models


def count_bn(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.inference_mode()
def measure(models: dict, size: int, batch: int, warmup: int, rounds: int, seed: int) -> dict[str, list[float]]:
    x = torch.randn(batch, 3, size, size)
    for model in models.values():
        for _ in range(warmup):
            model(x)
    times = {name: [] for name in models}
    order = list(models)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            models[name](x)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    models = build_models()
    times = measure(models, args.img_size, args.batch, args.warmup, args.rounds, seed=0)
    rows = []
    for name, model in models.items():
        prof = repghost.profile(model, (args.batch, 3, args.img_size, args.img_size))
        rows.append(dict(model=name, median_ms=statistics.median(times[name]), p90_ms=p90(times[name]),
                         params_m=prof.params / 1e6, macs_m=prof.macs / 1e6, batchnorms=count_bn(model)))

    print(f"{'model':<42} {'median ms':>9} {'p90 ms':>8} {'MACs (M)':>9} {'BNs':>4}")
    for r in rows:
        print(f"{r['model']:<42} {r['median_ms']:>9.2f} {r['p90_ms']:>8.2f} {r['macs_m']:>9.1f} {r['batchnorms']:>4}")
    median = {r["model"]: r["median_ms"] for r in rows}
    print("\nspeed-up of our deploy form:")
    for name in OURS:
        print(f"  {name}: {median[f'{name} (train)'] / median[f'{name} (deploy)']:.2f}x vs our train form")
    timm_ms = median["timm repghostnet_100 (reparameterized)"]
    print(f"  repghostnet_100: {timm_ms / median['repghostnet_100 (deploy)']:.2f}x vs timm's reparameterized model")

    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(torch=torch.__version__, timm=timm.__version__, cpu=platform.processor() or platform.machine(),
               threads=args.threads, batch=args.batch, img_size=args.img_size, rounds=args.rounds,
               date=time.strftime("%Y-%m-%d"))
    (args.out / "reparam_latency.json").write_text(json.dumps(dict(env=env, results=rows), indent=2))
    with open(args.out / "reparam_latency.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {args.out / 'reparam_latency.json'} and .csv")


if __name__ == "__main__":
    main()
