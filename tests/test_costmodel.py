"""The latency cost model's plumbing on tiny inputs: space, sampling (resume, refusals), features,
fit, save / load / predict. Fidelity is the benchmark's business (benchmarks/costmodel.py), not this file's."""

import json

import numpy as np
import pytest

from repghost import check_equivalence, create_model, is_deploy, profile, reparameterize
from repghost.cli import main
from repghost.costmodel.fit import CostModel, CostModelError, feature_names, features, fit
from repghost.costmodel.sampling import RECORDS_FILE, TimingSettings, latencies, read_records, sample
from repghost.costmodel.space import SearchSpace, SpaceError

from conftest import randomize_bn

TINY = TimingSettings(img_size=32, warmup=1, runs=2, chunk=3)


@pytest.fixture(scope="module")
def space():
    return SearchSpace()


def test_space_skeleton_and_choices(space):
    assert space.num_layers == 18 and len(space.choices) == 20
    assert {c.op for c in space.choices} == {"ibn", "fused", "tucker", "repghost"}
    assert [p.stride for p in space.positions].count(2) == 4
    assert space.sample(3, 7) == space.sample(3, 7) != space.sample(3, 8)
    assert len({space.sample(0, i) for i in range(50)}) == 50


def test_mobiledet_cpu_is_the_all_ibn_architecture(space):
    arch = space.from_model_name("mobiledet_cpu")
    assert all(a.startswith("ibn_") for a in arch)
    built, ref = space.build(arch), create_model("mobiledet_cpu", features_only=True)
    assert profile(built, (1, 3, 64, 64)) == profile(ref, (1, 3, 64, 64))
    for other in ("mobiledet_gpu", "mobiledet_dsp", "mobiledet_edgetpu"):
        with pytest.raises(SpaceError, match="not expressible"):
            space.from_model_name(other)


def test_every_choice_builds_runs_and_folds(space):
    import torch

    names = space.choice_names
    for arch in (names[:space.num_layers], names[-space.num_layers:]):  # together: every choice
        model = randomize_bn(space.build(arch)).eval()
        with torch.no_grad():
            assert model(torch.rand(1, 3, 32, 32)).shape == (1, 144)
        deployed = reparameterize(model)
        assert is_deploy(deployed)
        assert check_equivalence(model, deployed, (1, 3, 64, 64))["max_rel"] <= 1e-5


def test_arch_json_round_trip_and_refusals(space, tmp_path):
    arch = space.sample(0, 1)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(space.arch_to_json(arch)))
    assert space.load_arch(path) == arch
    bad = dict(space.arch_to_json(arch), fingerprint="0" * 16)
    path.write_text(json.dumps(bad))
    with pytest.raises(SpaceError, match="belongs to search space"):
        space.load_arch(path)
    path.write_text(json.dumps(dict(space.arch_to_json(arch), layers=list(arch[:-1]))))
    with pytest.raises(SpaceError, match="has 18 layers"):
        space.load_arch(path)
    path.write_text(json.dumps(dict(space.arch_to_json(arch), layers=["ibn_k7_e4"] * 18)))
    with pytest.raises(SpaceError, match="unknown layer choice"):
        space.load_arch(path)
    with pytest.raises(SpaceError, match="neither an architecture file"):
        space.load_arch(tmp_path / "missing.json")


def test_features_are_per_layer_one_hots(space):
    archs = [space.sample(0, i) for i in range(4)]
    x = features(space, archs)
    names = feature_names(space)
    assert x.shape == (4, 18 * 20) == (4, len(names))
    assert (x.sum(axis=1) == 18).all()
    first = names[int(np.flatnonzero(x[0])[0])]
    assert first == f"L0:8x16:{archs[0][0]}"


def test_fit_recovers_an_additive_latency(space):
    """Least squares on the one-hot features reproduces a latency that is a sum of per-layer costs."""
    rng = np.random.default_rng(0)
    cost = rng.uniform(0.1, 2.0, size=(space.num_layers, len(space.choices)))
    archs = [space.sample(1, i) for i in range(600)]
    index = {c: i for i, c in enumerate(space.choice_names)}
    y = [3.0 + sum(cost[layer, index[c]] for layer, c in enumerate(a)) for a in archs]
    result = fit(space, archs, y, test_fraction=0.2, seed=0)
    assert result.test["r2"] > 0.999999 and result.test["mape"] < 1e-6
    assert result.model.metrics["features_kept"] == 360


def test_sample_fit_save_load_predict_and_resume(space, tmp_path):
    out = tmp_path / "samples"
    first = sample(space, out, 3, seed=0, settings=TINY, progress=False)
    assert first["timed"] == 3
    records = read_records(out, space)
    assert [r["index"] for r in records] == [0, 1, 2] and all(r["median_ms"] > 0 for r in records)
    assert all(len(r["times_ms"]) == TINY.runs for r in records)

    # A crash mid-write leaves a cut last line: it is ignored and that architecture is timed again.
    path = out / RECORDS_FILE
    text = path.read_text()
    path.write_text(text + text.splitlines()[0][:40])
    assert len(read_records(out, space)) == 3
    again = sample(space, out, 5, seed=0, settings=TINY, progress=False)
    assert again["timed"] == 2 and again["on_disk"] == 5
    assert path.read_text().startswith(text)  # what was on disk was never re-timed
    assert sample(space, out, 5, seed=0, settings=TINY, progress=False)["timed"] == 0

    records = read_records(out, space)
    assert all(r["rel_to_ref"] > 0 and r["ref_median_ms"] > 0 for r in records)  # mobiledet_cpu ran in each round
    y, how = latencies(records)
    assert how["target"] == "rel_to_ref" and np.allclose(y, [r["rel_to_ref"] * how["reference_ms"] for r in records])
    archs = [r["arch"] for r in records]
    result = fit(space, archs, y, test_fraction=0.4)
    saved = result.model.save(tmp_path / "model.json")
    loaded = CostModel.load(saved, space)
    assert np.allclose(loaded.predict(space, archs), result.model.predict(space, archs))


def test_sampling_refuses_another_space_or_other_settings(space, tmp_path):
    out = tmp_path / "samples"
    sample(space, out, 1, settings=TINY, progress=False)
    with pytest.raises(SpaceError, match="use another directory"):
        sample(space, out, 2, settings=TimingSettings(img_size=64, warmup=1, runs=2), progress=False)
    meta = json.loads((out / "space.json").read_text())
    (out / "space.json").write_text(json.dumps(dict(meta, fingerprint="f" * 16)))
    before = (out / RECORDS_FILE).read_text()
    with pytest.raises(SpaceError, match="belongs to search space"):
        sample(space, out, 2, settings=TINY, progress=False)
    assert (out / RECORDS_FILE).read_text() == before


def test_raw_timings_without_a_reference_and_no_mixing():
    raw = [dict(median_ms=2.0), dict(median_ms=3.0)]
    y, how = latencies(raw)
    assert how == dict(target="median_ms") and list(y) == [2.0, 3.0]
    with pytest.raises(SpaceError, match="mix"):
        latencies([*raw, dict(median_ms=1.0, rel_to_ref=0.5, ref_median_ms=2.0)])


def test_cost_model_file_refusals(space, tmp_path):
    archs = [space.sample(0, i) for i in range(30)]
    model = fit(space, archs, np.linspace(5, 9, 30)).model
    good = model.to_json()
    cases = {
        "not_json.json": "{",
        "other_format.json": json.dumps(dict(good, format="something/1")),
        "other_space.json": json.dumps(dict(good, fingerprint="0123456789abcdef")),
        "short_weights.json": json.dumps(dict(good, weights=good["weights"][:-1])),
        "bad_feature.json": json.dumps(dict(good, features=["L99:1x1:ibn_k3_e4"] + good["features"][1:])),
        "nan_bias.json": json.dumps(dict(good, bias=float("nan"))),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(CostModelError):
            CostModel.load(tmp_path / name, space)


def test_cli_sample_fit_predict(tmp_path, capsys):
    out = tmp_path / "cli"
    tiny = ["--img-size", "32", "--warmup", "1", "--runs", "2", "--quiet"]
    assert main(["costmodel", "sample", "--out", str(out), "--n", "4", "--arch", "mobiledet_cpu", *tiny]) == 0
    assert len(read_records(out)) == 5
    assert main(["costmodel", "fit", str(out), "--test-fraction", "0.4"]) == 0
    assert (out / "costmodel.json").is_file() and (out / "costmodel.png").is_file()
    capsys.readouterr()
    assert main(["costmodel", "predict", str(out / "costmodel.json"), "mobiledet_cpu"]) == 0
    assert "predicted" in capsys.readouterr().out
    assert main(["costmodel", "predict", str(out / "costmodel.json"), "mobiledet_gpu"]) == 1
    assert "not expressible" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[]")
    assert main(["costmodel", "predict", str(tmp_path / "bad.json"), "mobiledet_cpu"]) == 1
    assert "not a repghost cost model" in capsys.readouterr().err
