"""The super-network the fidelity study scores with, trained on the detection benchmark's train split, and
an interim fidelity reading while the study's stand-alone runs are still coming in.

1. trains (or resumes) the super-network: the progressive schedule of ``SupernetConfig`` — the largest
   architecture alone for ``--largest-only-steps``, then the sandwich with every op the RepGhost bottleneck
   until ``--reference-op-steps``, then the sandwich over every op (benchmarks/README.md, "What stalls the
   super-network");
2. scores the study's architectures with it (``repghost.study.fidelity.supernet_scores``: appended to
   ``STUDY/scores-<digest>.jsonl``, resumable; it touches no run directory, so it may run beside the
   study);
3. with ``--interim``, Kendall τ of the score, of body MACs and of params against the stand-alone test AP
   of the architectures that have finished runs so far (mean over their finished seeds), written to
   ``--out``. Not the study's verdict: that needs every architecture and seed (``repghost study fidelity``).

    nice -n 2 python benchmarks/fidelity_supernet.py --benchmark runs/det-benchmark --study runs/fidelity \\
        --output runs/fidelity-supernet [--interim]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from repghost.detection.backbone import ssdlite_body
from repghost.detection.config import DataConfig
from repghost.io import atomic_write_json
from repghost.profile import profile
from repghost.search.proxy import score_noise
from repghost.search.supertrain import CHECKPOINT_FILE, SupernetConfig, train_supernet
from repghost.study import fidelity


def study_architectures(study: Path) -> dict[str, str]:
    drawn = json.loads((study / fidelity.ARCHS_FILE).read_text())
    names = {drawn["settings"]["reference"]: drawn["settings"]["reference"]}
    names.update({row["label"]: row["name"] for row in drawn["architectures"]})
    return names


def finished_ap(study: Path, label: str, seeds) -> list[float]:
    """Test AP of ``label``'s finished runs among ``seeds`` (a study sharing the directory may hold others)."""
    out = []
    for seed in seeds:
        run = study / "runs" / f"{label}-seed{seed}"
        metrics, settings = run / "metrics.json", run / "run.json"
        if metrics.is_file() and settings.is_file():
            data = json.loads(metrics.read_text())
            if data.get("epoch") == json.loads(settings.read_text())["epochs"]:
                out.append(data["bbox"]["AP"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", default="runs/det-benchmark")
    p.add_argument("--study", default="runs/fidelity")
    p.add_argument("--output", default="runs/fidelity-supernet")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--largest-only-steps", type=int, default=150)
    p.add_argument("--reference-op-steps", type=int, default=750)
    p.add_argument("--op-ramp-steps", type=int, default=0)
    p.add_argument("--interim", action="store_true")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="the study's training seeds")
    p.add_argument("--out", default="benchmarks/results/fidelity_study/interim.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    bench, study, output = Path(args.benchmark), Path(args.study), Path(args.output)
    config = SupernetConfig(output=str(output), data=DataConfig(root=str(bench), train_split="train"),
                            steps=args.steps, largest_only_steps=args.largest_only_steps,
                            reference_op_steps=args.reference_op_steps, op_ramp_steps=args.op_ramp_steps, threads=1)
    started = time.time()
    training = train_supernet(config, resume=(output / CHECKPOINT_FILE).is_file())
    print(f"super-network at step {training.step}/{config.steps} ({time.time() - started:.0f} s this run)", flush=True)
    if training.step < config.steps:
        return
    names = study_architectures(study)
    records = fidelity.supernet_scores(study, output / CHECKPOINT_FILE, names, bench)
    scores = {label: r["proxy"] for label, r in records.items()}
    print(json.dumps(scores, indent=1))
    if not args.interim:
        return
    rows = []
    for label, name in names.items():
        ap = finished_ap(study, label, args.seeds)
        if ap:
            cost = profile(ssdlite_body(name), (1, 3, 320, 320))
            rows.append(dict(arch=label, seeds=len(ap), ap_mean=statistics.fmean(ap), proxy=scores[label],
                             macs_g=cost.macs / 1e9, params_m=cost.params / 1e6))
    taus = fidelity.fidelity(rows, "proxy", "ap_mean", ("macs_g", "params_m")) if len(rows) >= 3 else {}
    noise = score_noise([records[label]["subset_ap"] for label in names])
    passed, sentence = fidelity.verdict(taus) if taus else (None, "fewer than 3 architectures have finished runs")
    result = dict(interim=True, note="architectures with finished stand-alone runs so far; not the study's verdict",
                  supernet=config.to_dict(), rows=rows,
                  taus={k: vars(t) for k, t in taus.items()}, rule_reading=sentence, would_pass=passed,
                  score_noise=noise, scores=scores)
    atomic_write_json(Path(args.out), result, indent=1)
    print(sentence)


if __name__ == "__main__":
    main()
