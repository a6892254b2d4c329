"""The RepGhostNet-skeleton space's CPU-time cost model judged on architectures timed *after* the model's
form was chosen: a fresh held-out set.

The fit of ``costmodel_repghostnet.py`` holds out a seeded 20 % of its 400 sampled architectures, and its
feature set was chosen looking at that split; that held-out r² is therefore a little optimistic, and it
cannot judge a change of fitting method fairly. Here the model is fitted on **all 400** (CPU time, mean of
passes 3 and 4) and scored on **fresh** architectures: a new seed's draws of the same cost-model sample
(half uniform, half toward the cheap end), none of them among the 400, timed in two passes with the same
settings (``--fresh-a`` / ``--fresh-b``; ``repghost costmodel sample --space repghostnet_skeleton/v1
--seed 7 --n 100 --img-size 320``), their mean CPU time the target. Both fitting methods are scored:
ordinary least squares and non-negative least squares (every feature is an amount of work, whose cost per
unit cannot be negative), the space's method since (``repghost.costmodel.features.fit_method``).

Writes costmodel_repghostnet_fresh.{json,md} and the space's model (the space's method, fitted on the 400,
held-out metrics = the fresh set's) to costmodel_repghostnet_cpu_model.json.

    python benchmarks/costmodel_fresh.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from repghost.costmodel.features import fit_method
from repghost.costmodel.fit import fit, plot_fit
from repghost.costmodel.sampling import latencies, read_records
from repghost.models.repghostnet_space import RepGhostNetSpace

RESULTS = Path(__file__).parent / "results"


def cpu_ms(space, directory: Path) -> dict[tuple, float]:
    records = read_records(directory, space)
    y, _ = latencies(records, "cpu")
    return {space.canonical(r["arch"]): float(v) for r, v in zip(records, y, strict=True)}


def mean_pass(space, a: Path, b: Path) -> dict[tuple, float]:
    first, second = cpu_ms(space, a), cpu_ms(space, b)
    return {k: (v + second[k]) / 2 for k, v in first.items() if k in second}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-a", default=str(RESULTS / "costmodel_repghostnet_samples_cpu"))
    p.add_argument("--train-b", default=str(RESULTS / "costmodel_repghostnet_samples_cpu2"))
    p.add_argument("--fresh-a", default=str(RESULTS / "costmodel_repghostnet_fresh" / "pass_a"))
    p.add_argument("--fresh-b", default=str(RESULTS / "costmodel_repghostnet_fresh" / "pass_b"))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    space, out = RepGhostNetSpace(), Path(args.out)
    named = set(space.named_archs().values())
    train = {k: v for k, v in mean_pass(space, Path(args.train_a), Path(args.train_b)).items() if k not in named}
    fresh = {k: v for k, v in mean_pass(space, Path(args.fresh_a), Path(args.fresh_b)).items()
             if k not in named and k not in train}
    fresh_a, fresh_b = cpu_ms(space, Path(args.fresh_a)), cpu_ms(space, Path(args.fresh_b))
    pass_r2 = float(np.corrcoef([fresh_a[k] for k in fresh], [fresh_b[k] for k in fresh])[0, 1] ** 2)
    archs = [*train, *fresh]
    y = np.array([*train.values(), *fresh.values()])
    split = (range(len(train)), range(len(train), len(archs)))
    timing = dict(runtime="onnxruntime", threads=1, batch=1, img_size=320, target="cpu_median_ms",
                  series="mean of passes 3 and 4 (fit), fresh passes a and b (held out)", architectures=len(archs))
    fits = {m: fit(space, archs, y, split=split, method=m, timing=timing) for m in ("ols", "nnls")}
    chosen = fit_method(space)
    fits[chosen].model.save(out / "costmodel_repghostnet_cpu_model.json")
    plot_fit(fits[chosen], out / "costmodel_repghostnet_cpu.png",
             title=f"RepGhostNet space, CPU time, 1 thread, 320², fit on {len(train)}, fresh {len(fresh)}, {chosen}")
    landmarks = {}
    for name, arch in space.named_archs().items():
        measured = [d[arch] for d in (fresh_a, fresh_b) if arch in d]
        landmarks[name] = dict(measured_ms=float(np.mean(measured)) if measured else None,
                               **{m: float(r.model.predict(space, [arch])[0]) for m, r in fits.items()})
    report = dict(fit_on=len(train), fresh=len(fresh), fresh_pass_a_vs_b_r2=pass_r2, chosen=chosen,
                  fits={m: r.model.metrics for m, r in fits.items()}, landmarks=landmarks)
    (out / "costmodel_repghostnet_fresh.json").write_text(json.dumps(report, indent=1))
    lines = [f"Fitted on {len(train)} architectures (CPU time, mean of passes 3 and 4); scored on {len(fresh)} fresh "
             f"ones (mean of two passes; pass a vs b r² {pass_r2:.4f}).", "",
             "| method | train r² | fresh r² | fresh MAPE % | fresh Kendall τ |", "|---|---|---|---|---|"]
    for m, r in fits.items():
        t, h = r.model.metrics["train"], r.model.metrics["test"]
        lines.append(f"| {m}{' (the space’s)' if m == chosen else ''} | {t['r2']:.4f} | {h['r2']:.4f} | "
                     f"{h['mape']:.2f} | {h['kendall_tau']:.4f} |")
    lines += ["", "| model | measured ms | " + " | ".join(f"{m} predicted" for m in fits) + " |",
              "|---|---|" + "---|" * len(fits)]
    lines += [f"| {n} | {v['measured_ms']:.2f} | " + " | ".join(f"{v[m]:.2f}" for m in fits) + " |"
              for n, v in landmarks.items()]
    (out / "costmodel_repghostnet_fresh.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
