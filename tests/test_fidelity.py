"""The proxy-fidelity statistics: Kendall τ with a bootstrap interval, and the verdict's rule."""

import numpy as np
import pytest

from repghost.study.fidelity import MIN_TAU, Tau, fidelity, kendall_with_interval, verdict


def test_tau_of_a_perfect_and_a_reversed_ranking():
    quality = [10.0, 20.0, 30.0, 40.0, 50.0]
    tau, low, high = kendall_with_interval([1, 2, 3, 4, 5], quality, resamples=200)
    assert tau == pytest.approx(1.0) and low == pytest.approx(1.0) and high == pytest.approx(1.0)
    tau, _, _ = kendall_with_interval([5, 4, 3, 2, 1], quality, resamples=200)
    assert tau == pytest.approx(-1.0)


def test_interval_holds_tau_and_narrows_with_more_architectures():
    rng = np.random.default_rng(0)
    widths = []
    for n in (12, 120):
        quality = rng.normal(size=n)
        score = quality + rng.normal(scale=1.0, size=n)  # a noisy but real signal
        tau, low, high = kendall_with_interval(score, quality, resamples=500)
        assert low <= tau <= high and tau > 0
        widths.append(high - low)
    assert widths[1] < widths[0] / 2


def test_refuses_what_it_cannot_rank():
    with pytest.raises(ValueError, match="at least 3"):
        kendall_with_interval([1, 2], [1, 2])
    with pytest.raises(ValueError, match="one length"):
        kendall_with_interval([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="ties"):
        kendall_with_interval([1, 1, 1, 1], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="finite"):
        kendall_with_interval([1, 2, float("nan")], [1, 2, 3])


def _taus(proxy: float, macs: float) -> dict:
    return {"proxy": Tau("proxy", proxy, proxy - 0.2, proxy + 0.2, 17),
            "macs": Tau("macs", macs, macs - 0.2, macs + 0.2, 17),
            "params": Tau("params", 0.1, -0.1, 0.3, 17)}


def test_verdict_needs_the_bar_and_to_beat_every_baseline():
    ok, text = verdict(_taus(0.55, 0.30))
    assert ok and text.startswith("fit for the search") and "+0.550" in text and f"τ ≥ {MIN_TAU:g}" in text
    ok, text = verdict(_taus(0.35, 0.10))  # below the bar
    assert not ok and text.startswith("not fit")
    ok, text = verdict(_taus(0.50, 0.60))  # MACs rank better: the proxy adds nothing
    assert not ok and "macs: τ +0.600" in text


def test_fidelity_reads_the_columns_of_each_architecture():
    rows = [dict(proxy=p, macs=m, params=m * 2, ap_mean=a) for p, m, a in
            [(0.1, 5, 10.0), (0.2, 4, 20.0), (0.3, 3, 30.0), (0.4, 2, 40.0)]]
    taus = fidelity(rows, resamples=100)
    assert taus["proxy"].tau == pytest.approx(1.0) and taus["macs"].tau == pytest.approx(-1.0)
    assert taus["params"].n == 4
