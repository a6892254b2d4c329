"""The proxy fidelity: Kendall τ with a bootstrap interval and the verdict's rule; the study that draws
architectures at a latency, scores them with a super-network, trains them stand-alone and resumes."""

import json

import numpy as np
import pytest

from repghost.costmodel.features import feature_names
from repghost.costmodel.fit import CostModel
from repghost.detection import engine
from repghost.detection.config import DataConfig
from repghost.models.repghostnet_space import RepGhostNetSpace
from repghost.search.supertrain import CHECKPOINT_FILE, SupernetConfig, train_supernet
from repghost.study import fidelity as study
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


# -- the study: drawing architectures at a latency, scoring, resuming ------------------------------
SPACE = RepGhostNetSpace()
SIZES = dict(num_train=8, num_search=2, num_test=2, image_size=64)
TINY = dict(benchmark_sizes=SIZES, epochs=1, batch_size=2, workers=0, warmup_iters=1, runtime="eager",
            latency_size=32, warmup=0, runs=2, progress=False)


def linear_cost_model(tmp_path, weight: float = 1.0):
    """A cost model of the space (latency = the MACs of stride-16/32 1×1 convs), saved: what the study reads."""
    names = feature_names(SPACE)
    picked = [n for n in names if n.startswith(("s16:pw:macs", "s32:pw:macs"))]
    model = CostModel(SPACE.fingerprint, picked, [weight] * len(picked), 0.5,
                      metrics={"test": {"r2": 0.99, "n": 80}}, space_id=SPACE.id)
    return model, model.save(tmp_path / "costmodel.json")


def test_random_architectures_are_drawn_within_the_latency_band(tmp_path):
    model, _ = linear_cost_model(tmp_path)
    target, picked = study.pick_architectures(SPACE, model, "repghostnet_050", count=5, tolerance=0.05, seed=3)
    reference = SPACE.named_archs()["repghostnet_050"]
    assert target == pytest.approx(float(model.predict(SPACE, [reference])[0]))
    archs = [SPACE.from_arch_name(p["name"]) for p in picked]
    assert len(set(archs)) == 5 and reference not in archs
    predicted = model.predict(SPACE, archs)
    assert all(abs(ms / target - 1) <= 0.05 for ms in predicted)
    assert [p["predicted_ms"] for p in picked] == pytest.approx(list(predicted))
    # they are the first uniform draws of the seed in the band: the same call gives the same ones
    assert [SPACE.sample(3, p["draw"]) for p in picked] == archs
    assert study.pick_architectures(SPACE, model, "repghostnet_050", count=5, tolerance=0.05, seed=3)[1] == picked


def test_a_band_no_draw_reaches_is_refused(tmp_path, monkeypatch):
    model, _ = linear_cost_model(tmp_path)
    monkeypatch.setattr(study, "MAX_DRAWS", 500)
    with pytest.raises(ValueError, match=r"of 500 draws .* within ±0%"):
        study.pick_architectures(SPACE, model, count=5, tolerance=1e-9)
    with pytest.raises(ValueError, match="tolerance"):
        study.pick_architectures(SPACE, model, tolerance=1.0)


def test_the_draw_is_kept_and_another_draw_in_the_same_place_is_refused(tmp_path):
    _, path = linear_cost_model(tmp_path)
    out = tmp_path / "study"
    drawn = study.prepare(out, path, count=3, tolerance=0.05)
    for row in drawn["architectures"]:  # the architecture files are the drawn architectures
        assert SPACE.load_arch(out / "archs" / f"{row['label']}.json") == SPACE.from_arch_name(row["name"])
    assert study.prepare(out, path, count=3, tolerance=0.05) == drawn
    with pytest.raises(ValueError, match="another draw .*count"):
        study.prepare(out, path, count=4, tolerance=0.05)
    (tmp_path / "other").mkdir()
    _, other = linear_cost_model(tmp_path / "other", weight=2.0)
    with pytest.raises(ValueError, match="another draw .*cost_model"):
        study.prepare(out, other, count=3, tolerance=0.05)


@pytest.mark.slow
def test_fidelity_study_scores_trains_and_resumes(tmp_path, monkeypatch):
    _, cost_path = linear_cost_model(tmp_path)
    out, bench = tmp_path / "study", tmp_path / "bench"
    from repghost.detection.synthetic import make_detection_benchmark

    make_detection_benchmark(bench, **SIZES)
    supernet_dir = tmp_path / "supernet"
    train_supernet(SupernetConfig(output=str(supernet_dir), data=DataConfig(root=str(bench), train_split="train"),
                                  steps=2, batch_size=2, img_size=64, lr_warmup_steps=1, log_every=1))
    supernet = supernet_dir / CHECKPOINT_FILE
    trained = []
    real = engine.train_detector
    monkeypatch.setattr(engine, "train_detector",
                        lambda config, *a, **k: (trained.append(config.output.rsplit("/", 1)[-1]),
                                                 real(config, *a, **k))[1])
    cut = {"after": 2}
    from repghost.search import proxy

    real_predict = proxy.predict_architecture

    def score_then_stop(*args, **kwargs):  # a run stopped while scoring keeps the scores already written
        if cut["after"] == 0:
            raise KeyboardInterrupt
        cut["after"] -= 1
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(proxy, "predict_architecture", score_then_stop)
    with pytest.raises(KeyboardInterrupt):
        study.run(out, cost_path, supernet, count=2, tolerance=0.05, seeds=[0], benchmark=bench, **TINY)
    (scores_file,) = out.glob("scores-*.jsonl")
    written = [json.loads(line) for line in scores_file.read_text().splitlines()]
    assert [r["label"] for r in written] == ["repghostnet_050", "random_00"]
    assert all(len(r["subset_ap"]) == 2 for r in written)  # the search split's 2 images, one subset each
    assert trained == []  # scoring comes first

    cut["after"] = 10
    result = study.run(out, cost_path, supernet, count=2, tolerance=0.05, seeds=[0], benchmark=bench, **TINY)
    assert cut["after"] == 9  # only the architecture not yet scored was scored
    assert trained == ["repghostnet_050-seed0", "random_00-seed0", "random_01-seed0"]
    rows = {r["arch"]: r for r in result.rows}
    assert set(rows) == {"repghostnet_050", "random_00", "random_01"}
    target = json.loads((out / "architectures.json").read_text())["target_ms"]  # the band's centre, named
    assert f"at {target:.2f} ms ± 5% (repghostnet_050's predicted latency; " in result.title
    assert all(r["proxy"] is not None and r["seeds"] == 1 and r["median_ms"] > 0 for r in rows.values())
    taus = result.meta["fidelity"]["taus"]
    assert set(taus) == {"proxy", "macs_g", "params_m"}
    assert any(note.startswith("Verdict: ") and "rule: τ ≥ 0.4" in note for note in result.notes)
    assert result.meta["fidelity"]["score_noise"]["archs"] == 3

    trained.clear()  # finished: nothing trained or scored again, same table
    again = study.run(out, cost_path, supernet, count=2, tolerance=0.05, seeds=[0], benchmark=bench, **TINY)
    assert trained == [] and cut["after"] == 9
    assert [r["proxy"] for r in again.rows] == [r["proxy"] for r in result.rows]


def test_a_supernet_trained_on_other_data_or_unfinished_is_refused(tmp_path):
    from repghost.checkpoint import CheckpointError
    from repghost.detection.synthetic import make_detection_benchmark
    from repghost.search.supertrain import load_supernet

    bench = make_detection_benchmark(tmp_path / "bench", **SIZES)
    other = make_detection_benchmark(tmp_path / "other", **{**SIZES, "seed": 1})
    config = SupernetConfig(output=str(tmp_path / "sn"), data=DataConfig(root=str(other), train_split="train"),
                            steps=2, batch_size=2, img_size=64, lr_warmup_steps=1, checkpoint_every=1)

    def stop_after_one(training):  # raised after step 2, so the checkpoint on disk is step 1's
        if training.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_supernet(config, callback=stop_after_one)
    with pytest.raises(CheckpointError, match="stopped at step 1 of 2"):
        load_supernet(tmp_path / "sn" / CHECKPOINT_FILE)
    train_supernet(config, resume=True)
    with pytest.raises(ValueError, match="not on the benchmark's train split"):
        study.supernet_scores(tmp_path / "study", tmp_path / "sn" / CHECKPOINT_FILE, {}, bench)


def test_the_band_can_be_centred_on_a_measured_target(tmp_path):
    model, _ = linear_cost_model(tmp_path)
    predicted = float(model.predict(SPACE, [SPACE.named_archs()["repghostnet_050"]])[0])
    target, picked = study.pick_architectures(SPACE, model, count=3, tolerance=0.05, target_ms=0.9 * predicted)
    assert target == pytest.approx(0.9 * predicted)
    assert all(abs(p["predicted_ms"] / target - 1) <= 0.05 for p in picked)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="positive number of ms"):
            study.pick_architectures(SPACE, model, count=3, target_ms=bad)


def _mobiledet_cost_model(tmp_path):
    from repghost.costmodel.space import SearchSpace

    space = SearchSpace()
    names = feature_names(space)
    return CostModel(space.fingerprint, names[:1], [1.0], 1.0, metrics={"test": {"r2": 0.99}},
                     space_id=space.id).save(tmp_path / "mobiledet.json")


@pytest.mark.parametrize("case,message", [
    ("missing cost model", "--cost-model: file not found"),
    ("cost model of another space", "draws from the RepGhostNet-skeleton space"),
    ("missing super-network", "--supernet: checkpoint not found"),
    ("zero tolerance", "tolerance is a fraction in (0, 1)"),
    ("zero count", "--count"),
    ("too few to rank", "at least 3 architectures"),
    ("bad target", "--target-ms"),
])
def test_bad_input_is_refused_in_one_line_before_any_work(case, message, tmp_path, capsys):
    from repghost.cli import main

    _, good = linear_cost_model(tmp_path)
    args = {"missing cost model": ["--cost-model", str(tmp_path / "none.json")],
            "cost model of another space": ["--cost-model", str(_mobiledet_cost_model(tmp_path))],
            "missing super-network": ["--cost-model", str(good), "--supernet", str(tmp_path / "none.pt")],
            "zero tolerance": ["--cost-model", str(good), "--tolerance", "0"],
            "zero count": ["--cost-model", str(good), "--count", "0"],
            "too few to rank": ["--cost-model", str(good), "--count", "1"],
            "bad target": ["--cost-model", str(good), "--target-ms", "-3"]}[case]
    out = tmp_path / "study"
    assert main(["study", "fidelity", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_score_torn_by_a_stop_is_scored_again_not_glued_to_the_next(tmp_path, monkeypatch):
    from repghost.detection.synthetic import make_detection_benchmark
    from repghost.search import proxy

    bench = make_detection_benchmark(tmp_path / "bench", **SIZES)
    train_supernet(SupernetConfig(output=str(tmp_path / "sn"), data=DataConfig(root=str(bench), train_split="train"),
                                  steps=1, batch_size=2, img_size=64, lr_warmup_steps=0))
    supernet = tmp_path / "sn" / CHECKPOINT_FILE
    archs = {"repghostnet_050": "repghostnet_050", "repghostnet_080": "repghostnet_080"}
    out = tmp_path / "study"
    out.mkdir()
    first = study.supernet_scores(out, supernet, {"repghostnet_050": "repghostnet_050"}, bench, progress=False)
    (path,) = out.glob("scores-*.jsonl")
    with path.open("a") as f:
        f.write('{"label": "repghostnet_080", "pro')  # stopped mid-write
    scored = []
    real = proxy.predict_architecture
    monkeypatch.setattr(proxy, "predict_architecture", lambda s, arch, *a: (scored.append(arch), real(s, arch, *a))[1])
    both = study.supernet_scores(out, supernet, archs, bench, progress=False)
    assert len(scored) == 1 and both["repghostnet_050"] == first["repghostnet_050"]
    assert [json.loads(line)["label"] for line in path.read_text().splitlines()] == list(archs)
