"""TuNAS's linear latency model: least squares on a space's features, held-out fidelity.

The features are :mod:`.features`' (per layer one-hots in the MobileDet-CPU space, as TuNAS's; one-hots
weighted by the work they select in the RepGhostNet space). Features constant over the training set
carry nothing and are dropped; latency = w·f + b by ordinary least squares in the MobileDet-CPU space
(numpy's ``lstsq``: the minimum-norm solution where the one-hots make the system rank-deficient) and by
non-negative least squares in the RepGhostNet space (:func:`~.features.fit_method`; on 100 freshly timed
architectures r² 0.968 vs OLS's 0.958, benchmarks/README.md).

Two guards keep a useless model from being used. :func:`fit` refuses a training set smaller than
the model's free parameters (:func:`free_parameters`): least squares would then interpolate the
training architectures and predict the others arbitrarily. And a fitted model is *fit for use* only
when its held-out r² reaches :data:`MIN_HELD_OUT_R2`; :meth:`CostModel.unfit_reason` says why not,
and ``repghost search`` / ``costmodel predict`` refuse an unfit model unless told otherwise.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from ..io import atomic_savefig, atomic_write_json, read_format_json
from ..models.searched import SPACE_ID
from ..models.space import ArchSpace, SpaceError, get_space
from .features import feature_names, features, fit_method, free_parameters, parameters_text
from .fitness import MIN_HELD_OUT_R2

__all__ = ["MIN_HELD_OUT_R2", "MODEL_FORMAT", "CostModel", "CostModelError", "FitResult", "check_determined",
           "feature_names", "features", "fidelity", "fit", "fit_directory", "free_parameters", "model_space",
           "plot_fit", "r2_score", "samples_needed", "split_indices"]

MODEL_FORMAT = "repghost-costmodel/1"


class CostModelError(ValueError):
    """A cost model file that is malformed or belongs to another search space."""


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / total if total > 0 else float("nan")


def fidelity(y: np.ndarray, pred: np.ndarray) -> dict:
    """r², mean absolute percentage error (%) and Kendall's τ of ``pred`` against ``y``."""
    from scipy.stats import kendalltau

    tau = kendalltau(y, pred).statistic if len(y) > 1 else float("nan")
    return dict(r2=r2_score(y, pred), mape=float(np.mean(np.abs(pred - y) / y) * 100), kendall_tau=float(tau),
                n=int(len(y)))


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class CostModel:
    """``latency_ms = bias + Σ weights[f]`` over the features ``f`` an architecture has."""

    fingerprint: str
    features: list[str]
    weights: list[float]
    bias: float
    metrics: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    space_id: str = SPACE_ID  # written as the file's "space"

    def predict(self, space: ArchSpace, archs: Sequence[Sequence[str]]) -> np.ndarray:
        self._check_space(space)
        names = feature_names(space)
        column = {name: i for i, name in enumerate(names)}
        x = features(space, archs)[:, [column[f] for f in self.features]]
        return x @ np.asarray(self.weights) + self.bias

    def unseen(self, space: ArchSpace, arch: Sequence[str]) -> list[str]:
        """Features of ``arch`` the model never saw vary in fitting (their weight is folded into the bias)."""
        names = feature_names(space)
        known = set(self.features)
        return [names[i] for i in np.flatnonzero(features(space, [arch])[0]) if names[i] not in known]

    def unfit_reason(self) -> str | None:
        """Why this model is not fit for use (``None`` if it is): its recorded held-out r² is below
        :data:`MIN_HELD_OUT_R2`, or it records none. Judged from ``metrics`` alone, so a file written
        before the verdict was stored is judged the same way."""
        test = self.metrics.get("test") if isinstance(self.metrics, dict) else None
        r2 = test.get("r2") if isinstance(test, dict) else None
        if not _finite_number(r2):
            return (f"it records no held-out r² (metrics.test.r2), so its fidelity is unknown; a cost model is "
                    f"used when its held-out r² ≥ {MIN_HELD_OUT_R2:g}")
        if r2 < MIN_HELD_OUT_R2:
            shown = (("mape", "MAPE {:.1f} %"), ("kendall_tau", "Kendall τ {:.2f}"), ("n", "{:g} held out"))
            details = [text.format(test[key]) for key, text in shown if _finite_number(test.get(key))]
            extra = f" ({', '.join(details)})" if details else ""
            return (f"its held-out r² is {r2:.3f}{extra}, below {MIN_HELD_OUT_R2:g}, the least a cost model "
                    "needs to be used (time more architectures, on a quiet machine, and fit again)")
        return None

    def verdict(self) -> dict:
        """What the model file states about its fitness (informative: loading judges from ``metrics``)."""
        reason = self.unfit_reason()
        return dict(usable=reason is None, rule=f"held-out r² ≥ {MIN_HELD_OUT_R2:g}",
                    **({"reason": reason} if reason else {}))

    def _check_space(self, space: ArchSpace) -> None:
        if self.fingerprint != space.fingerprint:
            raise CostModelError(f"cost model is for space fingerprint {self.fingerprint}, not {space.fingerprint}")

    def to_json(self) -> dict:
        fields = asdict(self)
        return dict(format=MODEL_FORMAT, space=fields.pop("space_id"), **fields, fitness=self.verdict())

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_json(path, self.to_json(), indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike, space: ArchSpace) -> CostModel:
        """Read a cost model, refusing a malformed file or one fitted on another space."""
        path = Path(path)
        data = read_format_json(path, MODEL_FORMAT, CostModelError, "repghost cost model")
        try:
            space.check_fingerprint(data, str(path))
        except SpaceError as err:
            raise CostModelError(str(err)) from err
        feats, weights, bias = data.get("features"), data.get("weights"), data.get("bias")
        valid = set(feature_names(space))
        if (not isinstance(feats, list) or not isinstance(weights, list) or len(feats) != len(weights)
                or not all(isinstance(f, str) and f in valid for f in feats) or len(set(feats)) != len(feats)):
            raise CostModelError(f"{path}: 'features' and 'weights' must be equal-length lists of this space's "
                                 "distinct features and their weights")
        if not all(_finite_number(v) for v in [*weights, bias]):
            raise CostModelError(f"{path}: weights and bias must be finite numbers")
        return cls(data["fingerprint"], feats, [float(w) for w in weights], float(bias),
                   data.get("metrics") or {}, data.get("timing") or {}, space.id)


def model_space(path: str | os.PathLike) -> ArchSpace:
    """The search space a cost model file was fitted on (its ``space``), to load it with."""
    path = Path(path)
    data = read_format_json(path, MODEL_FORMAT, CostModelError, "repghost cost model")
    try:
        return get_space(str(data.get("space")))
    except SpaceError as err:
        raise CostModelError(f"{path}: {err}") from err


@dataclass
class FitResult:
    model: CostModel
    train: dict
    test: dict
    measured: dict  # split → measured ms
    predicted: dict  # split → predicted ms


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random train / held-out split (at least one of each)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 timed architectures to fit and test, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = _held_out_count(n, test_fraction)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _held_out_count(n: int, test_fraction: float) -> int:
    return min(n - 1, max(1, round(n * test_fraction)))


def samples_needed(space: ArchSpace, test_fraction: float) -> int:
    """The fewest timed architectures whose training share (``1 - test_fraction``) covers
    :func:`free_parameters`."""
    n = free_parameters(space) + 1
    while n - _held_out_count(n, test_fraction) < free_parameters(space):
        n += 1
    return n


def check_determined(space: ArchSpace, n_train: int, n_total: int, test_fraction: float | None) -> None:
    """Refuse a training set smaller than the model's free parameters: least squares would fit it
    exactly and predict any other architecture arbitrarily (the held-out r² shows it)."""
    needed = free_parameters(space)
    if n_train >= needed:
        return
    how = (f"time at least {samples_needed(space, test_fraction)} (`repghost costmodel sample --n`) to fit with "
           f"--test-fraction {test_fraction:g}" if test_fraction is not None else
           f"train on at least {needed}")
    raise ValueError(f"{n_total} timed architecture(s), {n_train} to fit on: too few to determine the linear "
                     f"model's {needed} free parameters ({parameters_text(space)}), so it could not predict "
                     f"architectures it did not see; {how}")


def _solve(x: np.ndarray, y: np.ndarray, nonnegative: bool) -> np.ndarray:
    """Weights (one per column of ``x``) and a free bias, last, minimising the squared error; with
    ``nonnegative`` every weight is ≥ 0 (the bias stays free)."""
    if not nonnegative:
        solution, *_ = np.linalg.lstsq(np.column_stack([x, np.ones(len(y))]), y, rcond=None)
        return solution
    scale = np.abs(x).max(axis=0)  # columns of MACs and of counts differ by 10⁶: scaled, NNLS converges
    scale[scale == 0] = 1.0
    design = np.column_stack([x / scale, np.ones(len(y)), -np.ones(len(y))])  # bias = b⁺ − b⁻, free
    solution, _ = nnls(design, y, maxiter=50 * design.shape[1])
    return np.append(solution[:-2] / scale, solution[-2] - solution[-1])


def fit(space: ArchSpace, archs: Sequence[Sequence[str]], latency_ms: Sequence[float],
        test_fraction: float = 0.2, seed: int = 0, timing: dict | None = None,
        split: tuple[Sequence[int], Sequence[int]] | None = None, underdetermined: bool = False,
        method: str | None = None) -> FitResult:
    """Least-squares fit on a random ``1 - test_fraction`` of the architectures; fidelity on the rest. The
    space decides the method (:func:`~.features.fit_method`): non-negative least squares where every feature
    is an amount of work, whose cost per unit cannot be negative; ordinary least squares otherwise
    (``method``: ``"nnls"`` or ``"ols"`` to choose, e.g. to compare them).
    ``split`` gives the (train, held-out) indices explicitly instead.

    Fewer training architectures than :func:`free_parameters` are refused (``ValueError``, saying how
    many are needed) unless ``underdetermined`` (for studies of how fidelity grows with the data; such
    a model's held-out r² marks it unfit anyway)."""
    y = np.asarray(latency_ms, dtype=float)
    if len(y) != len(archs):
        raise ValueError(f"{len(archs)} architectures but {len(y)} latencies")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latencies must be finite and positive")
    x_all = features(space, archs)
    if split is None:
        train, test = split_indices(len(y), test_fraction, seed)
    else:
        train, test = (np.asarray(s, dtype=int) for s in split)
    if not underdetermined:
        check_determined(space, len(train), len(y), test_fraction if split is None else None)
    varying = np.flatnonzero(x_all[train].min(axis=0) != x_all[train].max(axis=0))
    method = method or fit_method(space)
    if method not in ("nnls", "ols"):
        raise ValueError(f"method is 'nnls' or 'ols', got {method!r}")
    solution = _solve(x_all[train][:, varying], y[train], nonnegative=method == "nnls")
    names = feature_names(space)
    # A dropped feature was constant on the training set: its value is absorbed by the bias.
    model = CostModel(space.fingerprint, [names[i] for i in varying], solution[:-1].tolist(), float(solution[-1]),
                      timing=dict(timing or {}), space_id=space.id)
    pred = {s: model.predict(space, [archs[i] for i in idx]) for s, idx in (("train", train), ("test", test))}
    measured = {"train": y[train], "test": y[test]}
    model.metrics = dict(train=fidelity(measured["train"], pred["train"]),
                         test=fidelity(measured["test"], pred["test"]), test_fraction=test_fraction, seed=seed,
                         features_kept=len(varying), features_total=len(names), method=method)
    return FitResult(model, model.metrics["train"], model.metrics["test"], measured, pred)


def fit_directory(out_dir: str | os.PathLike, space: ArchSpace, test_fraction: float = 0.2,
                  seed: int = 0, clock: str = "wall") -> FitResult:
    """:func:`fit` on the median latencies of a sampling directory (see :mod:`.sampling`; ``clock``: wall or
    CPU time, :func:`~.sampling.latencies`)."""
    from .sampling import META_FILE, latencies, read_records

    records = read_records(out_dir, space)
    if len(records) < 2:
        raise ValueError(f"{out_dir} holds {len(records)} timed architecture(s); sample more before fitting")
    timing = json.loads((Path(out_dir) / META_FILE).read_text()).get("timing", {})
    y, how = latencies(records, clock)
    return fit(space, [r["arch"] for r in records], y, test_fraction, seed,
               timing=dict(timing, architectures=len(records), **how))


def plot_fit(result: FitResult, path: str | os.PathLike, title: str = "") -> Path:
    """Predicted vs measured latency, train and held-out, with the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for split, marker in (("train", "."), ("test", "o")):
        m = result.train if split == "train" else result.test
        ax.scatter(result.measured[split], result.predicted[split], s=10 if split == "train" else 16, marker=marker,
                   alpha=0.5 if split == "train" else 0.8,
                   label=f"{split} (n={m['n']}, r²={m['r2']:.3f}, τ={m['kendall_tau']:.3f})")
    lo = min(min(v.min() for v in result.measured.values()), min(v.min() for v in result.predicted.values()))
    hi = max(max(v.max() for v in result.measured.values()), max(v.max() for v in result.predicted.values()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title or "latency cost model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return path
