"""`repghost predict` throughput on a folder of 200 images vs the same work in a plain Python loop.

The folder holds 200 random crops of the photos scikit-learn and matplotlib ship (224² JPEGs); the
model is repghostnet_100 in deploy form saved with a 224² ImageNet contract, exported to ONNX. The
loop does what a user would write by hand: open each image, apply the file's transform, call the
runner on a batch of one, take the top-5. ``predict`` does that plus finding the files, the
records, printing nothing (``log=None``) and writing predictions.csv / .jsonl. Both run the same
runner at the same batch size; the two are interleaved round by round, and the command's
overhead is ``predict time / loop time - 1`` (target: under 10 %).

    PYTHONPATH=src:tests python benchmarks/predict_throughput.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import repghost  # noqa: E402
from repghost.deploy.pipeline import export  # noqa: E402
from repghost.preprocess import Preprocess  # noqa: E402
from train_helpers import sample_photos  # noqa: E402


def make_folder(root: Path, n: int = 200, size: int = 224, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    photos = list(sample_photos().values())
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        side = int(min(w, h) * rng.uniform(0.4, 0.9))
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        photo.crop((x, y, x + side, y + side)).resize((size, size)).save(root / f"{i:03d}.jpg", quality=90)
    return root


def loop(runner, folder: Path) -> float:
    start = time.perf_counter()
    transform = runner.preprocess.transform()
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(path) as image:
            x = transform(image.convert("RGB"))[None]
        runner(x).softmax(-1).topk(5)
    return time.perf_counter() - start


def command(runner, folder: Path, out: Path) -> float:
    start = time.perf_counter()
    report = repghost.predict(runner, [str(folder)], out=out, log=None, progress=False)
    assert report.images == 200 and not report.skipped
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/predict_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = make_folder(tmp / "images")
        model = repghost.reparameterize(repghost.create_model("repghostnet_100").eval())
        contract = Preprocess(input_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        ckpt = repghost.save_checkpoint(model, tmp / "m.safetensors", preprocess=contract)
        export(str(ckpt), tmp / "m.onnx", exporter="legacy", log=lambda _: None)
        runner = repghost.open_model(tmp / "m.onnx", threads=args.threads)
        loop(runner, folder)   # warm-up: file cache, onnxruntime's first runs
        times = {"loop": [], "predict": []}
        for r in range(args.rounds):
            order = ["loop", "predict"] if r % 2 == 0 else ["predict", "loop"]
            for name in order:
                times[name].append(loop(runner, folder) if name == "loop" else command(runner, folder, tmp / "out"))
    result = {name: dict(seconds=t, images_per_s=[200 / s for s in t], median_s=statistics.median(t))
              for name, t in times.items()}
    result["overhead"] = result["predict"]["median_s"] / result["loop"]["median_s"] - 1
    result["settings"] = dict(images=200, size=224, model="repghostnet_100 deploy, ONNX (onnxruntime)",
                              threads=args.threads, batch=1, rounds=args.rounds)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    for name in ("loop", "predict"):
        print(f"{name:8s} median {result[name]['median_s']:.2f} s  "
              f"({200 / result[name]['median_s']:.1f} images/s; rounds {', '.join(f'{s:.2f}' for s in times[name])})")
    print(f"predict overhead vs the loop: {100 * result['overhead']:+.1f} % (target < 10 %)")


if __name__ == "__main__":
    main()
