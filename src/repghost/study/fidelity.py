"""Proxy fidelity: how well a cheap score ranks architectures by their stand-alone quality.

**The statistics.** Kendall τ with a bootstrap 95 % interval, for the super-network's score beside the
zero-cost baselines (MACs, params). TuNAS and Once-for-All judge a weight-sharing proxy by whether it
*ranks* architectures as stand-alone training does; a proxy that ranks no better than counting MACs is
not worth searching with. The rule this project applies before a search is trusted (issue: "go on to the
search only if τ ≥ 0.4 and above MACs'"): the proxy's τ must reach :data:`MIN_TAU` and exceed the τ of
every zero-cost baseline. The interval resamples *architectures* (the unit the claim is about) with
replacement; resamples in which every architecture ties are skipped, because τ is undefined there.

**The study** (:func:`run`, ``repghost study fidelity``): ``count`` random architectures of the
RepGhostNet-skeleton space *at the reference's latency* — uniform draws of the space (TuNAS's prior, the
same draws a random search makes) kept when the cost model predicts them within ``±tolerance`` of the
reference's predicted latency — plus the reference (``repghostnet_050``) itself, each trained stand-alone
with the detection benchmark's recipe over the seeds (:mod:`.detection`: resumable run directories,
test AP mean ± SE, bodies timed in one interleaved run), and, given a trained super-network, each scored by
it (:mod:`repghost.search.proxy`: box AP on the benchmark's search split after BN recalibration). The
architectures are drawn once and written to ``OUT/architectures.json`` and ``OUT/archs/<label>.json``;
the scores are appended to ``OUT/scores.jsonl`` as they come, so every stage resumes.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from ..io import append_jsonl, atomic_write_json, read_format_json, read_jsonl, repair_jsonl
from ..search.proxy import score_noise
from .report import Column, StudyResult, save_figure

#: The proxy's Kendall τ with stand-alone test AP that a search may build on.
MIN_TAU = 0.4
#: Zero-cost scores every proxy is compared with: bigger networks are often better ones.
BASELINES = ("macs", "params")


@dataclass(frozen=True)
class Tau:
    score: str
    tau: float
    low: float   # 2.5 % bootstrap quantile
    high: float  # 97.5 %
    n: int       # architectures

    def describe(self) -> str:
        return f"{self.score}: τ {self.tau:+.3f} (95 % CI {self.low:+.3f} … {self.high:+.3f}, n={self.n})"


def kendall_with_interval(score: Sequence[float], quality: Sequence[float], resamples: int = 2000,
                          seed: int = 0) -> tuple[float, float, float]:
    """Kendall τ-b of ``score`` against ``quality`` and its bootstrap 95 % interval over the pairs."""
    x, y = np.asarray(score, dtype=float), np.asarray(quality, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"score and quality must be two lists of one length, got {x.shape} and {y.shape}")
    if len(x) < 3 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"need at least 3 architectures with finite values, got {len(x)}")
    tau = float(kendalltau(x, y).statistic)
    if math.isnan(tau):
        raise ValueError("every architecture ties on the score or on the quality: τ is undefined")
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(resamples):
        pick = rng.integers(0, len(x), len(x))
        value = kendalltau(x[pick], y[pick]).statistic
        if not math.isnan(value):
            taus.append(value)
    low, high = np.quantile(taus, [0.025, 0.975])
    return tau, float(low), float(high)


def fidelity(rows: Sequence[Mapping], proxy: str = "proxy", quality: str = "ap_mean",
             baselines: Sequence[str] = BASELINES, resamples: int = 2000, seed: int = 0) -> dict[str, Tau]:
    """τ of the ``proxy`` column and of each baseline column against the ``quality`` column of ``rows``
    (one row per architecture)."""
    truth = [float(r[quality]) for r in rows]
    out = {}
    for name in (proxy, *baselines):
        tau, low, high = kendall_with_interval([float(r[name]) for r in rows], truth, resamples, seed)
        out[name] = Tau(name, tau, low, high, len(rows))
    return out


def verdict(taus: Mapping[str, Tau], proxy: str = "proxy", min_tau: float = MIN_TAU) -> tuple[bool, str]:
    """Whether a search may build on the proxy, and one sentence with the measured figures and the rule."""
    ours = taus[proxy]
    best_baseline = max((t for name, t in taus.items() if name != proxy), key=lambda t: t.tau)
    passed = ours.tau >= min_tau and ours.tau > best_baseline.tau
    rule = f"rule: τ ≥ {min_tau:g} and above every zero-cost baseline's τ"
    return passed, (f"{'fit' if passed else 'not fit'} for the search: {ours.describe()}; best baseline "
                    f"{best_baseline.describe()}; {rule}")


# -- the study ---------------------------------------------------------------------------------
#: The issue's protocol: ≥ 16 random architectures at the reference's latency, plus the reference, ≥ 2 seeds.
REFERENCE = "repghostnet_050"
DEFAULT_COUNT = 16
#: How far (relative) a random architecture's predicted latency may be from the reference's.
DEFAULT_TOLERANCE = 0.03
#: Draws of the space scanned for architectures in the latency band before giving up.
MAX_DRAWS = 20_000
ARCHS_FILE = "architectures.json"
ARCHS_FORMAT = "repghost-fidelity-architectures/1"
#: Disjoint subsets of the search split each score is also computed on, to measure the score's own noise.
SCORE_SUBSETS = 4

COLUMNS = [Column("arch", "architecture"), Column("predicted_ms", "predicted ms", ".2f"),
           Column("median_ms", "body median ms", ".2f"), Column("seeds", "seeds"),
           Column("ap_mean", "test AP mean", ".2f"), Column("ap_se", "± SE", ".2f"), Column("ap_runs", "AP per seed"),
           Column("proxy", "super-network AP (search split)", ".2f"), Column("macs_g", "body MACs G", ".3f"),
           Column("params_m", "body params M", ".3f")]


def pick_architectures(space, cost_model, reference: str = REFERENCE, count: int = DEFAULT_COUNT,
                       tolerance: float = DEFAULT_TOLERANCE, seed: int = 0,
                       target_ms: float | None = None) -> tuple[float, list[dict]]:
    """The target latency and the first ``count`` distinct uniform draws of ``space`` (seeded ``(seed,
    index)``) whose predicted latency is within ±``tolerance`` of it, the reference excluded. The target is
    ``target_ms`` (the reference's *measured* latency under the cost model's timing settings: a model's
    error at the reference would otherwise shift the whole band) or, without it, the reference's
    predicted latency."""
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance is a fraction in (0, 1), got {tolerance}")
    if count < 2:
        raise ValueError(f"Kendall τ ranks at least 3 architectures: draw at least 2 beside the reference, got {count}")
    if target_ms is not None and not (math.isfinite(target_ms) and target_ms > 0):
        raise ValueError(f"the target latency is a positive number of ms, got {target_ms}")
    reference_arch = space.load_arch(reference)
    target = float(target_ms if target_ms is not None else cost_model.predict(space, [reference_arch])[0])
    picked, seen, chunk = [], {reference_arch}, 100
    for start in range(0, MAX_DRAWS, chunk):
        draws = [space.sample(seed, i) for i in range(start, start + chunk)]
        for index, arch, ms in zip(range(start, start + chunk), draws, cost_model.predict(space, draws), strict=True):
            if abs(ms / target - 1) <= tolerance and arch not in seen:
                seen.add(arch)
                picked.append(dict(label=f"random_{len(picked):02d}", draw=index, name=space.arch_name(arch),
                                   predicted_ms=float(ms)))
                if len(picked) == count:
                    return target, picked
    raise ValueError(f"only {len(picked)} of {MAX_DRAWS} draws of {space.id} are within ±{tolerance:.0%} of "
                     f"the target {target:.2f} ms; widen the tolerance or ask for fewer")


def prepare(out: Path, cost_model_path: str | os.PathLike, reference: str = REFERENCE, count: int = DEFAULT_COUNT,
            tolerance: float = DEFAULT_TOLERANCE, seed: int = 0, target_ms: float | None = None) -> dict:
    """The study's architectures: read from ``out``'s :data:`ARCHS_FILE` when it holds this draw, else drawn
    and written there (and one architecture file per draw under ``out/archs``). Another draw is refused."""
    from ..costmodel.fit import CostModel, model_space

    cost_model_path = Path(cost_model_path)
    space = model_space(cost_model_path)
    if space.id != "repghostnet_skeleton/v1":
        raise ValueError(f"{cost_model_path} is a cost model of {space.id}; the fidelity study draws from the "
                         "RepGhostNet-skeleton space (time one with `repghost costmodel sample --space "
                         "repghostnet_skeleton/v1`, fit it with `repghost costmodel fit`)")
    settings = dict(space=space.id, fingerprint=space.fingerprint, reference=reference, count=count,
                    tolerance=tolerance, seed=seed, target_ms=target_ms,
                    cost_model=hashlib.sha256(cost_model_path.read_bytes()).hexdigest()[:16])
    path = out / ARCHS_FILE
    if path.is_file():
        saved = read_format_json(path, ARCHS_FORMAT, ValueError, "fidelity study's architectures")
        if saved["settings"] != settings:
            differ = sorted(k for k in settings if saved["settings"].get(k) != settings[k])
            raise ValueError(f"{path} holds another draw ({', '.join(differ)} differ); use another --out")
        return saved
    model = CostModel.load(cost_model_path, space)
    target, picked = pick_architectures(space, model, reference, count, tolerance, seed, target_ms)
    for row in picked:
        atomic_write_json(out / "archs" / f"{row['label']}.json", space.arch_to_json(space.from_arch_name(row["name"])))
    saved = dict(format=ARCHS_FORMAT, settings=settings, target_ms=target,
                 reference_predicted_ms=float(model.predict(space, [space.load_arch(reference)])[0]),
                 architectures=picked)
    atomic_write_json(path, saved, indent=1)
    return saved


def supernet_scores(out: Path, supernet_path: str | os.PathLike, archs: Mapping[str, str], benchmark: Path,
                    progress: bool = True) -> dict[str, dict]:
    """Each architecture's super-network score (box AP of its path on the benchmark's search split, BN
    recalibrated; ``proxy``) and the same AP on :data:`SCORE_SUBSETS` disjoint subsets of that split
    (``subset_ap``, for the score's noise), appended to ``out/scores-<checkpoint digest>.jsonl`` as it comes;
    scores already there are read, not computed again. Returns ``{label: record}``."""
    from tqdm import tqdm

    from ..search.proxy import HeldOutScorer
    from ..search.supertrain import load_supernet

    supernet_path = Path(supernet_path)
    path = out / f"scores-{hashlib.sha256(supernet_path.read_bytes()).hexdigest()[:16]}.jsonl"
    repair_jsonl(path)  # a torn last record (a stop mid-write) is scored again, not glued to the next one
    done = {r["label"]: r for r in read_jsonl(path)}
    todo = [label for label in archs if label not in done]
    if done and not todo:  # every score is on disk (the checkpoint was checked when they were written)
        return done
    training = load_supernet(supernet_path)
    data = training.config.data
    if data.root is None or Path(data.root).resolve() != benchmark.resolve() or data.train_split != "train":
        raise ValueError(f"{supernet_path} was trained on {data.resolve_root()} ({data.train_split}), not on the "
                         f"benchmark's train split ({benchmark}/train): its scores would rank another task")
    scorer = HeldOutScorer(training, "search", SCORE_SUBSETS)
    for label in tqdm(todo, desc="super-network scores", disable=not progress):
        proxy, subset_ap = scorer.score(training.space.load_arch(archs[label]))
        record = dict(label=label, arch=archs[label], proxy=proxy, subset_ap=subset_ap)
        append_jsonl(path, record)
        done[label] = record
    return done


def run(out: str | Path, cost_model: str | os.PathLike, supernet: str | os.PathLike | None = None,
        reference: str = REFERENCE, count: int = DEFAULT_COUNT, tolerance: float = DEFAULT_TOLERANCE,
        draw_seed: int = 0, target_ms: float | None = None, seeds: Sequence[int] = (0, 1),
        benchmark: str | Path | None = None, progress: bool = True, **detection_options) -> StudyResult:
    """The fidelity study (module docstring): draw (or read) the architectures, score them with ``supernet``
    if given, train them stand-alone over ``seeds`` (resuming), time them, and judge the proxy's τ."""
    from . import detection

    out = Path(out)
    for path, what in ((cost_model, "cost model"), (supernet, "super-network checkpoint")):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
    drawn = prepare(out, cost_model, reference, count, tolerance, draw_seed, target_ms)
    files = {row["label"]: str(out / "archs" / f"{row['label']}.json") for row in drawn["architectures"]}
    bench = Path(benchmark) if benchmark is not None else out / "benchmark"
    timing = ("benchmark_sizes", "runtime", "latency_size", "threads", "warmup", "runs")
    overrides = {k: v for k, v in detection_options.items() if k not in timing}
    todo = detection.plan(out, [reference, *files.values()], seeds, bench, detection_options.get("benchmark_sizes"),
                          threads=detection_options.get("threads", 1), **overrides)  # bad input: before any work
    names = {r.arch.label: r.arch.backbone for r in todo.runs}
    records = {}
    if supernet is not None:  # scored first: minutes, where the stand-alone runs take hours
        detection.generate_benchmark(todo)
        records = supernet_scores(out, supernet, names, bench, progress)
    result = detection.run(out, [reference, *files.values()], seeds, bench, progress=progress, **detection_options)
    predicted = {row["label"]: row["predicted_ms"] for row in drawn["architectures"]}
    predicted[reference] = drawn["reference_predicted_ms"]
    rows = [dict(arch=row["arch"], name=names[row["arch"]], predicted_ms=predicted[row["arch"]],
                 median_ms=row["median_ms"], seeds=row["seeds"], ap_mean=row["ap_mean"], ap_se=row["ap_se"],
                 ap_runs=row["ap_runs"], proxy=records[row["arch"]]["proxy"] if records else None,
                 macs_g=row["macs_g"], params_m=row["params_m"]) for row in result.rows]
    notes, judged = _judge(rows, records)
    meta = {**result.meta, "fidelity": judged, "supernet": str(supernet) if supernet else None,
            "draw": drawn["settings"], "reference": reference}
    # The draw's target, not the reference's name: --target-ms may be another model's latency.
    at = f"{reference}'s predicted latency" if target_ms is None else "--target-ms"
    return StudyResult(name="fidelity", title="Proxy fidelity: super-network score vs stand-alone test AP at "
                       f"{drawn['target_ms']:.2f} ms ± {tolerance:.0%} ({at}; reference {reference})",
                       columns=COLUMNS, rows=rows,
                       notes=[*notes, *result.notes], meta=meta, plot=_plot)


def _judge(rows: list[dict], records: Mapping[str, dict]) -> tuple[list[str], dict]:
    """The τ lines, the verdict and the score's own noise (when a super-network scored the architectures),
    as notes and data."""
    baselines = ("macs_g", "params_m")
    if not records:
        taus = fidelity(rows, baselines[0], "ap_mean", baselines[1:])
        notes = ["No super-network scored these architectures (give --supernet): no verdict. Zero-cost baselines, "
                 "Kendall τ with stand-alone test AP: " + "; ".join(t.describe() for t in taus.values())]
        return notes, dict(passed=None, verdict=None, taus={k: vars(t) for k, t in taus.items()})
    taus = fidelity(rows, "proxy", "ap_mean", baselines)
    passed, sentence = verdict(taus)
    noise = score_noise([records[r["arch"]]["subset_ap"] for r in rows])
    notes = ["Kendall τ with stand-alone test AP (mean over seeds), bootstrap over architectures: "
             + "; ".join(t.describe() for t in taus.values()), f"Verdict: {sentence}.",
             f"The score's own noise ({noise['subsets']} disjoint subsets of the search split × {noise['archs']} "
             f"architectures, two-way ANOVA): architecture effect F = {noise['F']:.2f} (p = {noise['p']:.3g}), SD "
             f"between architectures {noise['sd_arch']:.2f} AP vs {noise['sd_noise']:.2f} of one subset's noise; "
             f"split-half Spearman {noise['split_half_spearman']:+.2f}."]
    return notes, dict(passed=passed, verdict=sentence, taus={k: vars(t) for k, t in taus.items()},
                       score_noise=noise)


def claims(rows: list[dict]) -> list:
    """The study answers no paper claim; its verdict is in its notes (kept for :func:`repghost.study.rerender`)."""
    return []


def _plot(result: StudyResult, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("proxy", "super-network AP (search split)"), ("macs_g", "body MACs G"), ("median_ms", "body ms")]
    panels = [(k, label) for k, label in panels if all(r[k] is not None for r in result.rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        for row in result.rows:
            ax.errorbar(row[key], row["ap_mean"], yerr=row["ap_se"] or 0, fmt="o", capsize=3,
                        color="C3" if row["arch"] == result.meta["reference"] else "C0")
        ax.set_xlabel(label)
        ax.set_ylabel("stand-alone test AP, mean ± SE")
        ax.grid(alpha=0.3)
    fig.suptitle(result.title, fontsize=9)
    fig.tight_layout()
    return {"png": save_figure(fig, Path(out_dir) / f"{result.name}.png")}
