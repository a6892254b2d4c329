"""Training throughput: our repghostnet_100 vs timm's repghostnet_100, same run, interleaved.

One training step = forward, label-smoothed cross-entropy, backward, SGD (momentum) step, on a
fixed random batch (so data loading is not measured). Each round warms every model up, then times
``--steps`` steps of each in turn; the table reports the median images/s over rounds and ours / timm.

    python benchmarks/train_throughput.py                      # CPU, batch 64, 128², 20 steps, 5 rounds
    python benchmarks/train_throughput.py --device cuda --amp bf16 --channels-last
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import repghost

HERE = Path(__file__).resolve().parent


def build(which: str, name: str, device, channels_last: bool):
    model = repghost.create_model(name) if which == "repghost" else timm.create_model(name, pretrained=False)
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)
    return model, opt


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_steps(model, opt, x, y, steps: int, amp_dtype, device) -> float:
    """Seconds for ``steps`` training steps."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="repghostnet_100")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per model per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=str(HERE / "results" / "train_throughput"), help="output prefix (.json/.csv)")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    models = {w: build(w, args.model, device, args.channels_last) for w in ("repghost", "timm")}
    rates: dict[str, list[float]] = {w: [] for w in models}
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(models)[::-1]  # alternate who goes first
        for which in order:
            model, opt = models[which]
            run_steps(model, opt, x, y, args.warmup, amp_dtype, device)
            seconds = run_steps(model, opt, x, y, args.steps, amp_dtype, device)
            rates[which].append(args.steps * args.batch_size / seconds)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{w} {rates[w][-1]:.1f} img/s" for w in models), flush=True)

    med = {w: statistics.median(v) for w, v in rates.items()}
    ratio = med["repghost"] / med["timm"]
    env = dict(torch=torch.__version__, timm=timm.__version__, python=platform.python_version(),
               machine=platform.machine(), processor=platform.processor() or platform.machine(),
               threads=torch.get_num_threads(), device=str(device),
               cuda=torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    print(f"\n{'model':<28} {'median img/s':>12} {'min':>8} {'max':>8}")
    for w in models:
        print(f"{w + ' ' + args.model:<28} {med[w]:>12.1f} {min(rates[w]):>8.1f} {max(rates[w]):>8.1f}")
    print(f"ours / timm: {ratio:.3f}  (batch {args.batch_size}, {args.img_size}², {args.steps} steps × "
          f"{args.rounds} rounds, {device}, AMP {args.amp}, channels_last {args.channels_last}, "
          f"{env['threads']} threads)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = dict(settings=vars(args), env=env, images_per_s=rates, median_images_per_s=med, ratio_ours_over_timm=ratio)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    with out.with_suffix(".csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "round", "images_per_s"])
        for which, values in rates.items():
            for i, v in enumerate(values):
                w.writerow([which, i, f"{v:.2f}"])
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
