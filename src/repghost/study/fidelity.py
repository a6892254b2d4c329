"""How well a cheap score ranks architectures by their stand-alone quality: Kendall τ with a bootstrap
95 % interval, for the super-network's score beside the zero-cost baselines (MACs, params).

TuNAS and Once-for-All judge a weight-sharing proxy by whether it *ranks* architectures as stand-alone
training does; a proxy that ranks no better than counting MACs is not worth searching with. The rule
this project applies before a search is trusted (issue: "go on to the search only if τ ≥ 0.4 and above
MACs'"): the proxy's τ must reach :data:`MIN_TAU` and exceed the τ of every zero-cost baseline.

The interval resamples *architectures* (the unit the claim is about) with replacement; resamples in
which every architecture ties are skipped, because τ is undefined there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau

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
