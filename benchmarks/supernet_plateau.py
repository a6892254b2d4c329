"""Why does the super-network's loss stall near 5.7 when one of its paths, trained alone, does not?
A diagnostic: the same sandwich training (:mod:`repghost.search.supertrain`, 600-step schedule, the
synthetic set's 512 training images) with one thing changed per variant, stopped at ``--stop`` steps,
its mean losses every 25 steps beside the unchanged training's (``benchmarks/results/supernet_noise/
steps600/history.json``, the same steps, minibatches and flips).

Variants:

- ``lr_quarter``: learning rate 0.0125. A sandwich step sums the gradients of 4 paths (largest,
  smallest, 2 random), so every tensor they share (stem, SSD extra layers, heads) moves ~4× as far per
  step as in a stand-alone training at the same rate.
- ``one_op``: every block's op forced to the RepGhost bottleneck (skip kept where drawn): widths,
  middle widths, kernels and SE still vary. Tells op mixing (4 unshared op types per block, so the
  next block and the head see 4 kinds of features) from everything else.
- ``no_distill``: distillation weight 0 (the students learn from the labels alone).
- ``largest_first``: Once-for-All's order — the largest network (RepGhost ops) trained alone for the first
  150 steps, then the ``one_op`` sandwich.
- ``fixed_path``: the control — no sharing at all: ``repghostnet_050``'s path every step (as teacher and,
  again, as student), the same schedule, so its loss is what one path reaches in these steps.

Each variant appends its records to ``OUT/<variant>.json`` when it ends (a variant stopped early is
run again from its start).

    nice -n 5 python benchmarks/supernet_plateau.py --variants lr_quarter one_op --stop 300
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from pathlib import Path
from unittest import mock

import torch

from repghost.detection.config import DataConfig
from repghost.io import atomic_write_json
from repghost.search import sandwich
from repghost.search.superspace import extreme_arch, with_reference_op
from repghost.search.supertrain import SupernetConfig, train_supernet

BASELINE = Path(__file__).parent / "results" / "supernet_noise" / "steps600" / "history.json"


def one_op_archs(original):
    """``sandwich_archs`` with every real op replaced by ``repghost``."""

    def archs(supernet, seed, step, num_random, *_):
        space = supernet.space
        out = []
        for arch in original(supernet, seed, step, num_random):
            fixed = [("repghost" if name.endswith("_op") and choice != "skip" else choice)
                     for name, choice in zip(space.decision_names, arch, strict=True)]
            out.append(space.canonical(fixed))
        return out

    return archs


def largest_first_archs(original, steps: int = 150):
    """The first ``steps`` steps train the largest path alone (twice: a sandwich step needs a student), every op
    the RepGhost bottleneck; then the ``one_op`` sandwich."""
    one_op = one_op_archs(original)

    def archs(supernet, seed, step, num_random, *_):
        if step < steps:
            largest = with_reference_op(supernet.space, extreme_arch(supernet.space, True, (seed, step, 0)))
            return [largest, largest]
        return one_op(supernet, seed, step, num_random)

    return archs


def fixed_path_archs(original, name: str = "repghostnet_050"):
    """The control: one fixed path every step (``repghostnet_050``, as teacher and as student)."""

    def archs(supernet, seed, step, num_random, *_):
        arch = supernet.space.named_archs()[name]
        return [arch, arch]

    return archs


VARIANTS = {
    "lr_quarter": dict(settings=dict(lr=0.0125)),
    "one_op": dict(settings={}, patch=one_op_archs),
    "no_distill": dict(settings=dict(distill_weight=0.0)),
    "largest_first": dict(settings={}, patch=largest_first_archs),
    "fixed_path": dict(settings={}, patch=fixed_path_archs),
}


class Stop(Exception):
    pass


def run_variant(name: str, work: Path, data: DataConfig, stop: int, steps: int) -> list[dict]:
    spec = VARIANTS[name]
    out = work / name
    if out.exists():
        shutil.rmtree(out)
    config = SupernetConfig(output=str(out), data=data, steps=steps, threads=1, checkpoint_every=10 ** 6,
                            **spec["settings"])

    def stop_at(training):
        if training.step >= stop:
            raise Stop

    records = []
    patcher = (mock.patch.object(sandwich, "sandwich_archs", spec["patch"](sandwich.sandwich_archs))
               if "patch" in spec else contextlib.nullcontext())
    started = time.time()
    with patcher:
        try:
            train_supernet(config, callback=lambda t: (records.__setitem__(slice(None), t.history), stop_at(t)))
        except Stop:
            pass
    print(f"{name}: {stop} steps in {time.time() - started:.0f} s", flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--stop", type=int, default=300)
    parser.add_argument("--work", default="runs/supernet-plateau")
    parser.add_argument("--synthetic", default="runs/supernet-noise/synthetic",
                        help="the synthetic set of supernet_noise.py (generated there if missing)")
    parser.add_argument("--out", default="benchmarks/results/supernet_plateau")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = DataConfig(synthetic_dir=args.synthetic, synthetic_train=512, synthetic_val=192)
    baseline = {r["step"]: r for r in json.loads(BASELINE.read_text())}
    out = Path(args.out)
    for name in args.variants:
        records = run_variant(name, Path(args.work), data, args.stop, 600)
        atomic_write_json(out / f"{name}.json", dict(variant=name, stop=args.stop, schedule_steps=600,
                                                     records=records))
        for r in records:
            base = baseline.get(r["step"], {})
            print(f"{name} step {r['step']}: "
                  + ", ".join(f"{k} {r[k]:.3f} (unchanged {base.get(k, float('nan')):.3f})"
                              for k in ("teacher_loss", "student_loss")), flush=True)

if __name__ == "__main__":
    main()
