"""The evolutionary search over the RepGhostNet-skeleton space: it stays in the latency band, finds a planted
quality better than random search at the same number of scored architectures, replays its generations from
the scores on disk, and refuses bad input before it scores anything."""

import json

import numpy as np
import pytest

from repghost.costmodel.features import feature_names
from repghost.costmodel.fit import CostModel
from repghost.models.repghostnet_space import RepGhostNetSpace
from repghost.search import evolution
from repghost.search.evolution import Evolution, EvolutionConfig, EvolutionError, agreement, run_evolution

SPACE = RepGhostNetSpace()


def cost_model(tmp_path):
    """A cost model of the space (latency = the MACs of stride-16/32 1×1 convs), saved."""
    picked = [n for n in feature_names(SPACE) if n.startswith(("s16:pw:macs", "s32:pw:macs"))]
    model = CostModel(SPACE.fingerprint, picked, [1.0] * len(picked), 0.5,
                      metrics={"test": {"r2": 0.99, "n": 80}}, space_id=SPACE.id)
    return model, model.save(tmp_path / "costmodel.json")


def reference_ms(model) -> float:
    return float(model.predict(SPACE, [SPACE.named_archs()["repghostnet_050"]])[0])


def config(tmp_path, path, model, **kw) -> EvolutionConfig:
    kw = {"population": 8, "parents": 2, "generations": 3, "tolerance": 0.1, "quality": "shuffled", **kw}
    return EvolutionConfig(output=str(tmp_path / "evo"), costmodel=str(path), target_ms=reference_ms(model), **kw)


def planted(hidden):
    """A quality the search can find: the share of decisions equal to ``hidden``'s."""
    return lambda arch: float(np.mean([a == h for a, h in zip(arch, hidden, strict=True)]))


def test_every_candidate_is_in_the_band_and_the_run_is_its_seeds(tmp_path):
    model, path = cost_model(tmp_path)
    cfg = config(tmp_path, path, model)
    scored = []

    def predict(archs):
        return model.predict(SPACE, archs)

    search = Evolution(SPACE, predict, planted(SPACE.sample(9, 0)), cfg, record=lambda n, v: scored.append(n))
    best = search.run()
    assert len(scored) == len(set(scored)) == cfg.evaluations == 8 + 3 * 6
    ms = predict([SPACE.from_arch_name(n) for n in scored])
    assert np.all(np.abs(ms / cfg.target_ms - 1) <= cfg.tolerance)
    assert SPACE.arch_name(best) == max(scored, key=lambda n: search.scores[n]) == search.history[-1]["best"]
    assert [h["evaluated"] for h in search.history] == [8, 14, 20, 26]
    shares = search.history[0]["choice_shares"][SPACE.decisions[0].name]
    assert sum(shares.values()) == pytest.approx(1.0)
    again = Evolution(SPACE, predict, planted(SPACE.sample(9, 0)), cfg)
    assert again.run() == best and again.history == search.history
    other = Evolution(SPACE, predict, planted(SPACE.sample(9, 0)), config(tmp_path, path, model, seed=1))
    other.run()
    assert other.history[0]["population"] != search.history[0]["population"]


def test_evolution_finds_a_planted_quality_that_random_search_does_not(tmp_path):
    model, path = cost_model(tmp_path)
    hidden = SPACE.sample(5, 0)

    def predict(archs):
        return model.predict(SPACE, archs)

    found = {}
    for strategy in ("evolution", "random"):
        for seed in (0, 1, 2):
            cfg = config(tmp_path, path, model, strategy=strategy, seed=seed, tolerance=0.5, population=12,
                         parents=3, generations=6)
            search = Evolution(SPACE, predict, planted(hidden), cfg)
            search.run()
            found[strategy, seed] = search.scores[search.history[-1]["best"]]
    for seed in (0, 1, 2):  # the same number of scored architectures, every seed
        assert found["evolution", seed] > found["random", seed] + 0.05, found


def test_a_resumed_search_scores_only_what_is_missing_and_replays_the_same_run(tmp_path):
    model, path = cost_model(tmp_path)
    cfg = config(tmp_path, path, model)

    def predict(archs):
        return model.predict(SPACE, archs)

    records = []
    whole = Evolution(SPACE, predict, planted(SPACE.sample(3, 0)), cfg, record=lambda n, v: records.append((n, v)))
    whole.run()
    calls = []

    def counted(arch):
        calls.append(arch)
        return planted(SPACE.sample(3, 0))(arch)

    resumed = Evolution(SPACE, predict, counted, cfg, known=dict(records[:11]))
    resumed.run()
    assert len(calls) == cfg.evaluations - 11
    assert resumed.history == whole.history


def test_the_command_resumes_from_its_files_and_refuses_other_settings(tmp_path):
    model, path = cost_model(tmp_path)
    cfg = config(tmp_path, path, model, generations=2)
    first = run_evolution(cfg, progress=False)
    out = tmp_path / "evo"
    saved = json.loads((out / "evolution.json").read_text())
    assert len(saved["history"]) == 3 and saved["settings"]["costmodel"] == cfg.settings()["costmodel"]
    assert SPACE.load_arch(out / "arch.json") == first.arch
    lines = (out / "scores.jsonl").read_text().splitlines()
    assert len(lines) == cfg.evaluations
    # a stop after 5 scores, one more torn mid-write
    (out / "scores.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:9])
    (out / "arch.json").unlink()
    again = run_evolution(cfg, progress=False)
    assert again.arch == first.arch and again.history == first.history
    assert (out / "scores.jsonl").read_text().splitlines() == lines  # the torn one and the rest scored again
    with pytest.raises(EvolutionError, match=r"other settings \(mutation_prob\)"):
        run_evolution(config(tmp_path, path, model, generations=2, mutation_prob=0.3), progress=False)


@pytest.mark.parametrize("bad,message", [
    (dict(parents=8), "parents .* fewer than the population"),
    (dict(quality="supernet"), "give its supernet.pt"),
    (dict(quality="supernet", supernet="none.pt"), "super-network checkpoint not found"),
    (dict(strategy="greedy"), "strategy is one of"),
    (dict(tolerance=0.0), "tolerance"),
    (dict(population=3), "population"),
])
def test_bad_settings_are_refused(bad, message, tmp_path):
    model, path = cost_model(tmp_path)
    with pytest.raises(EvolutionError, match=message):
        config(tmp_path, path, model, **bad)


def test_an_unreachable_band_or_another_space_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    from repghost.costmodel.space import SearchSpace

    model, path = cost_model(tmp_path)
    monkeypatch.setattr(evolution, "MAX_TRIES", 200)
    with pytest.raises(EvolutionError, match="no uniform draw within"):
        run_evolution(config(tmp_path, path, model, tolerance=1e-9), progress=False)
    assert not (tmp_path / "evo").exists()
    space = SearchSpace()
    other = CostModel(space.fingerprint, feature_names(space)[:1], [1.0], 1.0, metrics={"test": {"r2": 0.99}},
                      space_id=space.id).save(tmp_path / "mobiledet.json")
    with pytest.raises(EvolutionError, match="RepGhostNet-skeleton space"):
        run_evolution(EvolutionConfig(output=str(tmp_path / "evo"), costmodel=str(other), target_ms=1.0,
                                      quality="latency"), progress=False)
    assert not (tmp_path / "evo").exists()


def test_agreement_counts_the_decisions_both_use():
    a = SPACE.named_archs()["repghostnet_050"]
    assert agreement(SPACE, [a, a, a]) == 1.0
    b = SPACE.named_archs()["repghostnet_100"]  # differs in the widths only
    assert 0 < agreement(SPACE, [a, b]) < 1
    assert agreement(SPACE, [a, b]) == pytest.approx(1 - sum(x != y for x, y in zip(a, b, strict=True))
                                                     / sum(SPACE.active(a)))
    with pytest.raises(ValueError, match="at least 2"):
        agreement(SPACE, [a])


@pytest.mark.slow
def test_the_supernet_score_is_the_fidelity_studys_score(tmp_path):
    from repghost.detection.config import DataConfig
    from repghost.detection.synthetic import make_detection_benchmark
    from repghost.search.proxy import HeldOutScorer
    from repghost.search.supertrain import CHECKPOINT_FILE, SupernetConfig, load_supernet, train_supernet

    bench = make_detection_benchmark(tmp_path / "bench", num_train=8, num_search=2, num_test=2, image_size=64)
    train_supernet(SupernetConfig(output=str(tmp_path / "sn"), data=DataConfig(root=str(bench), train_split="train"),
                                  steps=1, batch_size=2, img_size=64, lr_warmup_steps=0))
    supernet = tmp_path / "sn" / CHECKPOINT_FILE
    model, path = cost_model(tmp_path)
    result = run_evolution(config(tmp_path, path, model, quality="supernet", supernet=str(supernet),
                                  population=4, parents=2, generations=1), progress=False)
    training = load_supernet(supernet)
    scorer = HeldOutScorer(training, "search")
    assert result.score == pytest.approx(scorer.score(result.arch)[0])
    with pytest.raises(ValueError, match="the one the super-network trained on"):
        HeldOutScorer(training, "train")
    with pytest.raises(EvolutionError, match="is the split .* trained on"):
        run_evolution(config(tmp_path / "other", path, model, quality="supernet", supernet=str(supernet),
                             split="train"), progress=False)


def test_the_measured_pick_is_written_and_a_miss_fails_the_command_with_one_line(tmp_path, monkeypatch, capsys):
    from repghost import cli
    from repghost.search import finalists

    model, path = cost_model(tmp_path)
    cfg = config(tmp_path, path, model, generations=1)
    searched = run_evolution(cfg, progress=False)
    second = sorted(searched.history[-1]["population"], key=lambda n: n != searched.history[-1]["best"])[1]
    ratio = {n: (1.0 if n == second else 1.5) for n in json.loads(json.dumps(searched.history[-1]["population"]))}
    monkeypatch.setattr(finalists, "time_bodies",
                        lambda names, settings, progress: (10.0, [10.0 * ratio.get(n, 1.5) for n in names]))
    measured = run_evolution(config(tmp_path, path, model, generations=1, measure_against="mobiledet_cpu",
                                    finalists=3), progress=False)
    out = tmp_path / "evo"
    assert measured.arch == SPACE.from_arch_name(second) != searched.arch  # the best score is out of the band
    assert SPACE.load_arch(out / "arch.json") == measured.arch and measured.measured["pick"] == second
    assert measured.score == measured.measured["rows"][[r["arch"] for r in measured.measured["rows"]].index(second)][
        "score"]

    ratio.clear()  # nothing in the band: the command fails (exit 1) with one line, after the search's files
    code = cli.main(["evolve", "--costmodel", str(path), "--target-ms", str(cfg.target_ms), "--quality", "shuffled",
                     "--population", "8", "--parents", "2", "--generations", "1", "--tolerance", "0.1",
                     "--output", str(tmp_path / "miss"), "--measure-against", "mobiledet_cpu"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # the lines before it are the search's progress bar
    assert code == 1 and "Traceback" not in err and last.startswith("repghost evolve: error: none of the 14")
    assert "within ±10% of mobiledet_cpu's measured latency (ratios 1.50–1.50)" in last
    assert (tmp_path / "miss" / "scores.jsonl").is_file() and not (tmp_path / "miss" / "arch.json").exists()


def fake_ratio(name: str) -> float:
    """A made-up measured ratio per architecture, 0.8–1.2 (about one in seven within ±3 %)."""
    import hashlib

    return 0.8 + 0.4 * int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") / 2 ** 32


def test_a_measured_band_scores_only_admitted_architectures_and_resumes_without_timing(tmp_path, monkeypatch):
    from repghost.search import finalists

    model, path = cost_model(tmp_path)
    calls = []

    def time_bodies(names, settings, progress):
        calls.append(list(names))
        assert settings.reference == "mobiledet_cpu" and settings.tolerance == 0.03
        return 10.0, [10.0 * fake_ratio(n) for n in names]

    monkeypatch.setattr(finalists, "time_bodies", time_bodies)
    cfg = config(tmp_path, path, model, tolerance=0.03, prefilter=0.5, measured_band="mobiledet_cpu")
    result = run_evolution(cfg, progress=False)
    out = tmp_path / "evo"
    scored = [r["arch"] for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())]
    timed = {r["arch"]: r for r in map(json.loads, (out / "timings.jsonl").read_text().splitlines())}
    assert len(scored) == len(set(scored)) == cfg.evaluations
    assert all(abs(fake_ratio(n) - 1) <= 0.03 for n in scored)  # every scored architecture is in the measured band
    assert len(timed) > 2 * cfg.evaluations  # most were timed and let go
    assert all(abs(timed[n]["ratio"] - fake_ratio(n)) < 1e-9 for n in timed)
    assert max(map(len, calls)) <= evolution.GATE_BATCH and sum(map(len, calls)) == len(timed)  # none timed twice
    assert result.history[-1]["best_ratio"] == pytest.approx(fake_ratio(result.history[-1]["best"]))
    ms = model.predict(SPACE, [SPACE.from_arch_name(n) for n in scored])
    assert np.all(np.abs(ms / cfg.target_ms - 1) <= 0.5) and not np.all(np.abs(ms / cfg.target_ms - 1) <= 0.03)

    calls.clear()  # the same command again: replayed from the scores and timings on disk, nothing timed
    again = run_evolution(cfg, progress=False)
    assert calls == [] and again.history == result.history and again.arch == result.arch
    (out / "evolution.json").unlink()  # timings without the settings they were made under are refused
    (out / "scores.jsonl").unlink()
    with pytest.raises(EvolutionError, match="timings.jsonl has no evolution.json beside it"):
        run_evolution(cfg, progress=False)


def test_an_unreachable_measured_band_fails_with_one_line(tmp_path, monkeypatch, capsys):
    from repghost import cli
    from repghost.search import finalists

    model, path = cost_model(tmp_path)
    monkeypatch.setattr(finalists, "time_bodies", lambda names, settings, progress: (10.0, [15.0] * len(names)))
    monkeypatch.setattr(evolution, "GATE_PATIENCE", 40)
    code = cli.main(["evolve", "--costmodel", str(path), "--target-ms", str(reference_ms(model)), "--quality",
                     "shuffled", "--population", "8", "--parents", "2", "--generations", "1", "--tolerance", "0.03",
                     "--prefilter", "0.5", "--output", str(tmp_path / "miss"), "--measured-band", "mobiledet_cpu"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in err, err
    assert last.startswith("repghost evolve: error: 48 candidates in a row outside ±3% of mobiledet_cpu's measured "
                           "latency (ratios 1.50–1.50)"), last
    assert not (tmp_path / "miss" / "scores.jsonl").exists() and not (tmp_path / "miss" / "arch.json").exists()


@pytest.mark.parametrize("bad, message", [(dict(measured_band="mobiledet_gpu9"), "unknown model 'mobiledet_gpu9'"),
                                          (dict(measured_band="mobiledet_cpu", tolerance=0.05, prefilter=0.04),
                                           "prefilter .* must be at least the tolerance")])
def test_bad_measured_band_settings_are_refused(bad, message, tmp_path):
    model, path = cost_model(tmp_path)
    with pytest.raises(EvolutionError, match=message):
        config(tmp_path, path, model, **bad)


def test_timing_repeats_admit_on_the_mean_ratio_of_independent_runs(tmp_path, monkeypatch):
    from repghost.search import finalists

    model, path = cost_model(tmp_path)
    calls = []

    def time_bodies(names, settings, progress):  # each run off by ±0.04 in turn: one run alone would mislead
        calls.append(list(names))
        shift = 0.04 if len(calls) % 2 else -0.04
        return 10.0, [10.0 * (fake_ratio(n) + shift) for n in names]

    monkeypatch.setattr(finalists, "time_bodies", time_bodies)
    cfg = config(tmp_path, path, model, tolerance=0.03, prefilter=0.5, measured_band="mobiledet_cpu",
                 timing_repeats=2)
    run_evolution(cfg, progress=False)
    out = tmp_path / "evo"
    scored = [r["arch"] for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())]
    timed = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()]
    assert all(abs(fake_ratio(n) - 1) <= 0.03 for n in scored)  # admitted on the mean, not on either run
    assert all(r["ratios"] == pytest.approx([fake_ratio(r["arch"]) + 0.04, fake_ratio(r["arch"]) - 0.04]) and
               r["ratio"] == pytest.approx(fake_ratio(r["arch"])) for r in timed)
    assert sum(map(len, calls)) == 2 * len(timed) and calls[0::2] == calls[1::2]  # every batch timed twice
    assert json.loads((out / "evolution.json").read_text())["settings"]["timing_repeats"] == 2
    assert "timing_repeats" not in config(tmp_path, path, model).settings()  # older searches resume as they were


def test_a_search_started_from_the_hand_design_holds_it_in_its_first_population(tmp_path):
    model, path = cost_model(tmp_path)
    hand = SPACE.named_archs()["repghostnet_050"]
    cfg = config(tmp_path, path, model, start_from=("repghostnet_050",))
    result = run_evolution(cfg, progress=False)
    first = result.history[0]["population"]
    assert SPACE.arch_name(hand) in first and len(first) == len(set(first)) == cfg.population
    saved = json.loads((tmp_path / "evo" / "evolution.json").read_text())["settings"]
    assert saved["start_from"] == [SPACE.arch_name(hand)]  # the architecture, not the name it was given by
    assert "start_from" not in config(tmp_path, path, model).settings()  # older searches resume as they were
    (tmp_path / "hand.json").write_text(json.dumps(SPACE.arch_to_json(hand)))
    again = run_evolution(config(tmp_path, path, model, start_from=(str(tmp_path / "hand.json"),)), progress=False)
    assert again.history == result.history  # the same start given as a file: the same search, resumed


def test_a_start_outside_the_band_is_refused_or_left_out_by_the_gate(tmp_path, monkeypatch, capsys):
    from repghost import cli
    from repghost.search import finalists

    model, path = cost_model(tmp_path)
    far = "repghostnet_100"  # predicted well above repghostnet_050's latency
    code = cli.main(["evolve", "--costmodel", str(path), "--target-ms", str(reference_ms(model)), "--quality",
                     "shuffled", "--population", "8", "--parents", "2", "--generations", "1", "--tolerance", "0.1",
                     "--output", str(tmp_path / "far"), "--start-from", far])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and f"start architecture {far} is predicted at" in last and "outside ±10%" in last, last
    assert not (tmp_path / "far").exists()
    code = cli.main(["evolve", "--costmodel", str(path), "--target-ms", "1", "--quality", "shuffled",
                     "--output", str(tmp_path / "typo"), "--start-from", "repghostnet_05"])
    assert code == 2 and "--start-from: repghostnet_05" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()

    calls = []

    def time_bodies(names, settings, progress):  # the start (a run of its own) is refused; the rest as usual
        calls.append(list(names))
        return 10.0, [10.0 * (1.5 if n == SPACE.arch_name(SPACE.named_archs()[far]) else fake_ratio(n))
                      for n in names]

    monkeypatch.setattr(finalists, "time_bodies", time_bodies)
    code = cli.main(["evolve", "--costmodel", str(path), "--target-ms", str(reference_ms(model)), "--quality",
                     "shuffled", "--population", "8", "--parents", "2", "--generations", "1", "--tolerance", "0.03",
                     "--prefilter", "0.5", "--measured-band", "mobiledet_cpu", "--output", str(tmp_path / "gated"),
                     "--start-from", far])
    assert code == 0
    assert calls[0] == [SPACE.arch_name(SPACE.named_archs()[far])]  # timed, though the cost model puts it far out
    first = json.loads((tmp_path / "gated" / "evolution.json").read_text())["history"][0]
    assert SPACE.arch_name(SPACE.named_archs()[far]) not in first["population"] and len(first["population"]) == 8
    assert first["start_refused"] == {far: 1.5}  # and said so, by the name it was given
    assert f"note: start architecture {far} measured 1.500× mobiledet_cpu's latency" in capsys.readouterr().err
