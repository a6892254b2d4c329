"""The latency cost model's plumbing on tiny inputs: space, sampling (resume, refusals), features,
fit, save / load / predict. Fidelity is the benchmark's business (benchmarks/costmodel.py), not this file's."""

import ast
import importlib.metadata
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from repghost import check_equivalence, create_model, is_deploy, profile, reparameterize
from repghost.cli import main
from repghost.costmodel.fit import (
    CostModel,
    CostModelError,
    feature_names,
    features,
    fit,
    fit_directory,
    free_parameters,
    samples_needed,
)
from repghost.costmodel.sampling import META_FILE, RECORDS_FILE, TimingSettings, latencies, read_records, sample
from repghost.costmodel.space import SearchSpace, SpaceError

from conftest import randomize_bn

TINY = TimingSettings(img_size=32, warmup=1, runs=2, chunk=3)
ROOT = Path(__file__).resolve().parents[1]
#: Real timings kept by benchmarks/costmodel.py: 1000 random architectures and mobiledet_cpu, idle machine.
BENCH = ROOT / "benchmarks" / "results"


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


def test_sample_fit_save_load_predict_and_resume(space, tmp_path, capsys):
    out = tmp_path / "samples"
    first = sample(space, out, 3, seed=0, settings=TINY)  # progress on, and stderr is no terminal here
    assert first["timed"] == 3
    log = capsys.readouterr().err
    assert "\r" not in log  # no carriage-return frames of a bar in a log
    assert re.fullmatch(r"timing architectures: 3/3 timed \(this chunk of 3: [\d.]+ s\)\n"
                        r"timing architectures: 3/3 arch in [\d.]+ s, [\d.]+ arch/s\n", log), log
    records = read_records(out, space)
    assert [r["index"] for r in records] == [0, 1, 2] and all(r["median_ms"] > 0 for r in records)
    assert all(len(r["times_ms"]) == TINY.runs for r in records)

    # A crash mid-write tears the last line; the zeros of an unwritten block and a newline may follow it.
    # Reading ignores it with a warning; sampling drops it, says so, and times that architecture again.
    path = out / RECORDS_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:40] + "\0" * 8 + "\n")
    assert [r["index"] for r in read_records(out, space)] == [0, 1]
    assert capsys.readouterr().err == f"warning: {path}:3: ignoring a torn last line (a sampling run stopped " \
                                      "while writing it)\n"
    again = sample(space, out, 3, seed=0, settings=TINY, progress=False)
    assert again["timed"] == 1 and again["on_disk"] == 3
    assert capsys.readouterr().err.count(f"{path}:3: dropped a torn last line") == 1
    assert path.read_text().startswith("".join(lines[:2]))  # what was on disk was never re-timed
    assert [r["index"] for r in read_records(out, space)] == [0, 1, 2]

    # The same without a newline after the torn bytes.
    text = path.read_text()
    path.write_text(text + text.splitlines()[0][:40])
    assert len(read_records(out, space)) == 3
    again = sample(space, out, 5, seed=0, settings=TINY, progress=False)
    assert again["timed"] == 2 and again["on_disk"] == 5
    assert path.read_text().startswith(text)
    assert sample(space, out, 5, seed=0, settings=TINY, progress=False)["timed"] == 0
    capsys.readouterr()

    records = read_records(out, space)
    assert all(r["rel_to_ref"] > 0 and r["ref_median_ms"] > 0 for r in records)  # mobiledet_cpu ran in each round
    y, how = latencies(records)
    assert how["target"] == "rel_to_ref" and np.allclose(y, [r["rel_to_ref"] * how["reference_ms"] for r in records])
    archs = [r["arch"] for r in records]
    result = fit(space, archs, y, test_fraction=0.4, underdetermined=True)  # 3 of them cannot determine a model
    saved = result.model.save(tmp_path / "model.json")
    loaded = CostModel.load(saved, space)
    assert np.allclose(loaded.predict(space, archs), result.model.predict(space, archs))


def _copy_samples(tmp_path, name="timed") -> Path:
    return Path(shutil.copytree(BENCH / "costmodel_samples", tmp_path / name))


def test_a_bad_line_before_the_last_is_corruption_refused_with_its_number(space, tmp_path, capsys):
    out = _copy_samples(tmp_path)
    path = out / RECORDS_FILE
    lines = path.read_text().splitlines(keepends=True)
    for bad, why in ((lines[2][:50] + "\n", "not a JSON record, with records after it"),
                     ('{"median_ms": 1.0}\n', "not a timing record")):
        corrupt = "".join(lines[:2]) + bad + "".join(lines[3:])
        path.write_text(corrupt)
        with pytest.raises(SpaceError, match=rf"records.jsonl:3: .*{why}"):
            read_records(out, space)
        with pytest.raises(SpaceError, match="records.jsonl:3: "):
            sample(space, out, 1001, settings=TimingSettings())  # refused before anything is timed or written
        assert path.read_text() == corrupt
        assert main(["costmodel", "fit", str(out)]) == 1
        assert "records.jsonl:3: " in capsys.readouterr().err
        assert not (out / "costmodel.json").exists()


def test_fit_ignores_a_torn_last_line_with_a_warning(space, tmp_path, capsys):
    out = _copy_samples(tmp_path)
    path = out / RECORDS_FILE
    whole = path.read_text()
    path.write_text(whole + whole.splitlines()[5][:70] + "\n")
    torn = fit_directory(out, space)
    assert capsys.readouterr().err == (f"warning: {path}:1002: ignoring a torn last line (a sampling run stopped "
                                       "while writing it)\n")
    path.write_text(whole)
    assert torn.model == fit_directory(out, space).model


def test_fit_refuses_fewer_architectures_than_free_parameters(space):
    needed = samples_needed(space, 0.2)
    assert free_parameters(space) == 1 + 18 * 19 == 343 and needed == 429  # 429 - round(0.2 × 429) = 343
    rng = np.random.default_rng(1)
    cost = rng.uniform(0.1, 2.0, size=(space.num_layers, len(space.choices)))
    index = {c: i for i, c in enumerate(space.choice_names)}
    archs = [space.sample(2, i) for i in range(needed)]
    y = [3.0 + sum(cost[layer, index[c]] for layer, c in enumerate(a)) for a in archs]
    with pytest.raises(ValueError, match=r"20 timed architecture\(s\), 16 to fit on: too few to determine the "
                                         r"linear model's 343 free parameters .* time at least 429"):
        fit(space, archs[:20], y[:20])
    with pytest.raises(ValueError, match="428 timed architecture"):
        fit(space, archs[:-1], y[:-1])
    with pytest.raises(ValueError, match="train on at least 343"):
        fit(space, archs, y, split=(range(342), range(342, needed)))
    assert fit(space, archs, y).test["r2"] > 0.99


def test_fit_on_real_timings_is_fit_for_use_and_an_unfit_one_is_refused(space, tmp_path, capsys):
    good = _copy_samples(tmp_path, "good")
    assert main(["costmodel", "fit", str(good)]) == 0
    assert re.search(r"fit for use: held-out r² 0\.9\d+ ≥ 0\.9\n", capsys.readouterr().out)
    assert json.loads((good / "costmodel.json").read_text())["fitness"] == dict(usable=True, rule="held-out r² ≥ 0.9")

    # The same architectures with their latencies shuffled among them: timings that say nothing about
    # the architecture, as on a machine whose load swamps them.
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(good / META_FILE, bad / META_FILE)
    records = read_records(good, space)
    shuffled = np.random.default_rng(0).permutation([r["rel_to_ref"] for r in records])
    (bad / RECORDS_FILE).write_text("".join(json.dumps(dict(r, rel_to_ref=float(v))) + "\n"
                                            for r, v in zip(records, shuffled, strict=True)))
    assert main(["costmodel", "fit", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("repghost costmodel: error: the cost model is unfit: its "
                                                         "held-out r² is ")
    assert "below 0.9" in err and "--allow-unfit" in err
    model = bad / "costmodel.json"
    fitness = json.loads(model.read_text())["fitness"]
    assert fitness["usable"] is False and "below 0.9" in fitness["reason"]

    assert main(["costmodel", "predict", str(model), "mobiledet_cpu"]) == 1
    err = capsys.readouterr().err
    assert "is unfit: its held-out r² is" in err and "--allow-unfit" in err
    assert main(["costmodel", "predict", str(model), "mobiledet_cpu", "--allow-unfit"]) == 0
    captured = capsys.readouterr()
    assert "predicted" in captured.out and "warning:" in captured.err and "unfit" in captured.err


def test_old_cost_model_files_are_judged_by_their_recorded_held_out_r2(space, tmp_path, capsys):
    """Files written before the verdict was stored (benchmarks/results) load, judged from their metrics."""
    files = {"costmodel_model.json": None, "costmodel_loaded_model.json": "0.851", "costmodel_raw_model.json": "-0.588"}
    for name, r2 in files.items():
        path = BENCH / name
        assert "fitness" not in json.loads(path.read_text())
        reason = CostModel.load(path, space).unfit_reason()
        if r2 is None:
            assert reason is None
            assert main(["costmodel", "predict", str(path), "mobiledet_cpu"]) == 0
        else:
            assert reason.startswith(f"its held-out r² is {r2} (MAPE ") and "below 0.9" in reason
            assert main(["costmodel", "predict", str(path), "mobiledet_cpu"]) == 1
    capsys.readouterr()
    data = json.loads((BENCH / "costmodel_model.json").read_text())
    for metrics in ({}, {"test": {"r2": "high"}}, {"test": {"r2": float("nan")}}):
        (tmp_path / "model.json").write_text(json.dumps(dict(data, metrics=metrics)))
        assert "records no held-out r²" in CostModel.load(tmp_path / "model.json", space).unfit_reason()


def test_cost_model_and_search_import_only_declared_packages():
    """Every third-party module the cost model and the search import is a declared dependency."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=\[; ]", d)[0].lower().replace("_", "-") for d in project["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    imported = set()
    for package in ("costmodel", "search"):
        for file in (ROOT / "src" / "repghost" / package).glob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"repghost"}
    assert "scipy" in third_party
    undeclared = {m for m in third_party
                  if not {d.lower().replace("_", "-") for d in distributions.get(m, [m])} & declared}
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {sorted(undeclared)}"


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
    model = fit(space, archs, np.linspace(5, 9, 30), underdetermined=True).model
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
    capsys.readouterr()
    assert main(["costmodel", "fit", str(out), "--test-fraction", "0.4"]) == 1  # 5 timed: far too few
    err = capsys.readouterr().err.strip()
    assert err.startswith("repghost costmodel: error: 5 timed architecture(s), 3 to fit on: too few") and \
        err.endswith("time at least 571 (`repghost costmodel sample --n`) to fit with --test-fraction 0.4")
    assert not (out / "costmodel.json").exists() and not (out / "costmodel.png").exists()
    model = BENCH / "costmodel_model.json"
    assert main(["costmodel", "predict", str(model), "mobiledet_cpu"]) == 0
    assert "predicted" in capsys.readouterr().out
    assert main(["costmodel", "predict", str(model), "mobiledet_gpu"]) == 1
    assert "not expressible" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[]")
    assert main(["costmodel", "predict", str(tmp_path / "bad.json"), "mobiledet_cpu"]) == 1
    assert "not a repghost cost model" in capsys.readouterr().err


def test_the_repghostnet_space_fits_non_negative_costs_and_recovers_planted_ones():
    from repghost.costmodel.features import feature_names, features, fit_method
    from repghost.models.repghostnet_space import RepGhostNetSpace

    space = RepGhostNetSpace()
    assert fit_method(space) == "nnls" and fit_method(SearchSpace()) == "ols"
    archs = [space.cost_sample(3, i)[0] for i in range(160)]
    x = features(space, archs)
    names = feature_names(space)
    rng = np.random.default_rng(0)
    planted = np.where(rng.random(len(names)) < 0.3, 0.0, rng.uniform(0.0, 1.0, len(names)) / (x.max(0) + 1e-9))
    y = x @ planted + 0.7  # a machine on which every operation costs a non-negative time per unit
    result = fit(space, archs, y, test_fraction=0.25, seed=0)
    assert result.model.metrics["method"] == "nnls" and min(result.model.weights) >= 0
    assert result.test["r2"] > 0.999 and result.model.bias == pytest.approx(0.7, abs=0.05)
    assert fit(space, archs, y, test_fraction=0.25, method="ols").model.metrics["method"] == "ols"
    with pytest.raises(ValueError, match="method is 'nnls' or 'ols'"):
        fit(space, archs, y, method="lasso")
