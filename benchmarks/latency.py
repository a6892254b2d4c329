"""The issue's latency targets, measured: batch 1, 224², 1 thread.

Models: our repghostnet_100 (train and deploy form), timm's repghostnet_100 re-parameterized with
its own ``reparameterize_model``, GhostNet 1.0× (ours and timm's), timm's MobileNetV3-Large 1.0×
and MobileOne-S0 (deploy form). Runtimes: PyTorch eager, channels-last, TorchScript (freeze +
optimize_for_inference), torch.compile, onnxruntime. Prints the table and the target ratios,
writes results/latency.{json,csv,md,png}.

    PYTHONPATH=src python benchmarks/latency.py [--runs 100] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from repghost.bench import BenchConfig, format_table, run_benchmark, write_results

MODELS = ["repghostnet_100@deploy", "repghostnet_100", "timm:repghostnet_100@deploy", "ghostnet_100",
          "timm:ghostnet_100", "timm:mobilenetv3_large_100", "timm:mobileone_s0@deploy"]
RUNTIMES = ["eager", "channels_last", "torchscript", "compile", "onnxruntime"]


def median(results, model, form, runtime):
    return next((r.median_ms for r in results if (r.model, r.form, r.runtime) == (model, form, runtime)), None)


def targets(results) -> dict:
    ours = median(results, "repghostnet_100", "deploy", "onnxruntime")
    out = {
        "ort: deploy repghostnet_100 / ghostnet_100 (ours) [target <= 0.60]":
            ours / median(results, "ghostnet_100", "train", "onnxruntime"),
        "ort: deploy repghostnet_100 / timm:ghostnet_100 [target <= 0.60]":
            ours / median(results, "timm:ghostnet_100", "train", "onnxruntime"),
        "ort: deploy repghostnet_100 / timm reparameterized repghostnet_100 [target <= 1.00]":
            ours / median(results, "timm:repghostnet_100", "deploy", "onnxruntime"),
    }
    for runtime in RUNTIMES:
        deploy, train = median(results, "repghostnet_100", "deploy", runtime), median(
            results, "repghostnet_100", "train", runtime)
        if deploy and train:
            out[f"{runtime}: deploy / train form [target < 1]"] = deploy / train
    native = {rt: median(results, "repghostnet_100", "deploy", rt) for rt in RUNTIMES if rt != "onnxruntime"}
    best = min((v, k) for k, v in native.items() if v)
    out[f"best PyTorch-native ({best[1]}) / onnxruntime, deploy [target <= 1.30]"] = best[0] / ours
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    config = BenchConfig(models=MODELS, runtimes=RUNTIMES, threads=[args.threads], batch_sizes=[1],
                         img_sizes=[224], warmup=args.warmup, runs=args.runs)
    results = run_benchmark(config)
    print(format_table(results))
    ratios = targets(results)
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    paths = write_results(results, args.out, config)
    Path(args.out, "latency_targets.json").write_text(json.dumps(ratios, indent=1))
    print("wrote", ", ".join(map(str, paths.values())))


if __name__ == "__main__":
    main()
