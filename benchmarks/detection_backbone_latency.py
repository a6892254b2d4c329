"""Latency of detector backbones (body + FPN / SSDLite extras), train form vs re-parameterized deploy form.

Both forms run in eval mode on the same input. Every round times each (backbone, form) pair once,
in an order that alternates round by round, so slow drifts of the machine hit all pairs alike; the
reported number is the median over rounds of each round's median per-call time. Writes a table to
stdout and JSON + CSV + PNG next to ``--out``.

    python benchmarks/detection_backbone_latency.py                     # defaults below, CPU
    python benchmarks/detection_backbone_latency.py --device cuda --img-size 800 --rounds 30
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torchvision

import repghost
from repghost.detection import DetectorConfig, build_detector, reparameterize_detector


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--detectors", nargs="+", default=["retinanet", "maskrcnn", "ssdlite"])
    p.add_argument("--backbones", nargs="+", default=["repghostnet_050", "repghostnet_100", "repghostnet_130",
                                                       "ghostnet_050", "ghostnet_100"])
    p.add_argument("--img-size", type=int, default=512, help="square input (SSDLite always uses 320)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--iters", type=int, default=5, help="calls per pair per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per pair before the rounds")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "detection_backbone_latency"),
                   help="output path without suffix")
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_calls(module, x, iters: int, device: torch.device) -> float:
    """Median seconds per call over ``iters`` calls."""
    times = []
    for _ in range(iters):
        sync(device)
        start = time.perf_counter()
        module(x)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_pairs(args, device):
    """(detector, backbone) → {"train": module, "deploy": module, input} with equivalence checked."""
    pairs = {}
    for det in args.detectors:
        size = 320 if det == "ssdlite" else args.img_size
        x = torch.rand(args.batch, 3, size, size, device=device)
        for name in args.backbones:
            detector = build_detector(DetectorConfig(model=det, backbone=name, num_classes=91)).eval()
            deployed = reparameterize_detector(detector)
            train_bb, deploy_bb = detector.backbone.to(device), deployed.backbone.to(device)
            with torch.no_grad():
                a, b = train_bb(x), deploy_bb(x)
            err = max(((a[k] - b[k]).abs().max() / a[k].abs().max()).item() for k in a)
            pairs[(det, name)] = dict(train=train_bb, deploy=deploy_bb, x=x, size=size, max_rel_err=err)
    return pairs


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pairs = build_pairs(args, device)
    keys = [(pair, form) for pair in pairs for form in ("train", "deploy")]
    for (pair, form) in keys:
        for _ in range(args.warmup):
            time_calls(pairs[pair][form], pairs[pair]["x"], 1, device)
    samples = {key: [] for key in keys}
    for r in range(args.rounds):
        order = keys if r % 2 == 0 else keys[::-1]
        for key in order:
            pair, form = key
            samples[key].append(time_calls(pairs[pair][form], pairs[pair]["x"], args.iters, device))

    rows = []
    for pair, p in pairs.items():
        train_ms = statistics.median(samples[(pair, "train")]) * 1e3
        deploy_ms = statistics.median(samples[(pair, "deploy")]) * 1e3
        rows.append(dict(detector=pair[0], backbone=pair[1], input=f"{args.batch}x3x{p['size']}x{p['size']}",
                         train_ms=round(train_ms, 3), deploy_ms=round(deploy_ms, 3),
                         speedup=round(train_ms / deploy_ms, 3), max_rel_err=float(f"{p['max_rel_err']:.2e}")))
    print(f"{'detector':<10} {'backbone':<16} {'input':<16} {'train ms':>9} {'deploy ms':>10} {'speedup':>8} "
          f"{'max rel err':>12}")
    for row in rows:
        print(f"{row['detector']:<10} {row['backbone']:<16} {row['input']:<16} {row['train_ms']:>9.2f} "
              f"{row['deploy_ms']:>10.2f} {row['speedup']:>7.2f}x {row['max_rel_err']:>12.1e}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(device=str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
               cpu=platform.processor() or platform.machine(), threads=args.threads, torch=torch.__version__,
               torchvision=torchvision.__version__, repghost=repghost.__version__, rounds=args.rounds,
               iters=args.iters, warmup=args.warmup)
    out.with_suffix(".json").write_text(json.dumps(dict(env=env, results=rows), indent=2))
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out.with_suffix(".png"), env)
    print(f"wrote {out}.json / .csv / .png")


def plot(rows, path: Path, env: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['detector']}\n{r['backbone']}" for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.7), 4))
    ax.bar([x - 0.2 for x in xs], [r["train_ms"] for r in rows], 0.4, label="train form")
    ax.bar([x + 0.2 for x in xs], [r["deploy_ms"] for r in rows], 0.4, label="deploy form")
    ax.set_xticks(list(xs), labels, rotation=60, fontsize=7)
    ax.set_ylabel("ms per call (median)")
    ax.set_title(f"Detector backbone latency, {env['device']}, {env['threads']} thread(s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
