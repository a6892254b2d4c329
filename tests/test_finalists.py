"""The search's measured pick: the best-scored architecture whose measured latency is within the band of the
reference's, timed best first in batches that resume; a pick is kept, a miss refused, and the timing is the
detection study's SSDLite body."""

import json

import pytest

from repghost.models.repghostnet_space import RepGhostNetSpace
from repghost.search import finalists
from repghost.search.config import EvolutionError
from repghost.search.finalists import FINALISTS_FILE, MeasuredBandError, MeasureSettings, measured_pick, ranked

SPACE = RepGhostNetSpace()
SETTINGS = MeasureSettings(reference="mobiledet_cpu", finalists=2, tolerance=0.03)


class FakeClock:
    """``time_bodies`` with a fixed ratio per architecture (reference 10 ms) that records every batch it times."""

    def __init__(self, ratios: dict[str, float]):
        self.ratios, self.batches = ratios, []

    def __call__(self, names, settings, progress):
        self.batches.append(list(names))
        return 10.0, [10.0 * self.ratios[n] for n in names]


def test_ranked_is_best_first_with_ties_by_name_and_each_architecture_once():
    scores = [("b", 1.0), ("a", 1.0), ("c", 3.0), ("b", 0.5)]
    assert ranked(scores) == [("c", 3.0), ("a", 1.0), ("b", 1.0)]


def test_the_pick_is_the_best_score_in_the_measured_band_timed_batch_by_batch(tmp_path, monkeypatch):
    # best score first: a (1.10×), b (0.90×) out of the band; c (1.02×) and d (0.99×) in it
    clock = FakeClock(dict(a=1.10, b=0.90, c=1.02, d=0.99, e=1.0))
    monkeypatch.setattr(finalists, "time_bodies", clock)
    scores = [("a", 5.0), ("b", 4.0), ("c", 3.0), ("d", 2.0), ("e", 1.0)]
    result = measured_pick(tmp_path, scores, SETTINGS, progress=False)
    assert result["pick"] == "c"  # not d: the better score wins inside the band
    assert clock.batches == [["a", "b"], ["c", "d"]]  # e never timed: the second batch had a pick
    assert [r["in_band"] for r in result["rows"]] == [False, False, True, True]
    assert json.loads((tmp_path / FINALISTS_FILE).read_text()) == result
    # asked again: the kept pick, nothing timed again (a resumed search cannot change its pick)
    assert measured_pick(tmp_path, scores, SETTINGS, progress=False)["pick"] == "c"
    assert len(clock.batches) == 2


def test_with_repeats_the_pick_is_in_the_band_by_the_mean_of_independent_runs(tmp_path, monkeypatch):
    # b (the better score) reads 1.00 then 1.08 (mean 1.04: out), a 0.98 then 1.06 (mean 1.02: in). The first
    # run alone would pick b, the second neither: the mean of the runs decides, as in the gate
    reads = iter([dict(a=0.98, b=1.00), dict(a=1.06, b=1.08)])
    batches = []

    def time_bodies(names, settings, progress):
        batches.append(list(names))
        ratios = next(reads)
        return 10.0, [10.0 * ratios[n] for n in names]

    monkeypatch.setattr(finalists, "time_bodies", time_bodies)
    settings = MeasureSettings(reference="mobiledet_cpu", finalists=2, tolerance=0.03, repeats=2)
    result = measured_pick(tmp_path, [("b", 2.0), ("a", 1.0)], settings, progress=False)
    assert result["pick"] == "a" and batches == [["b", "a"], ["b", "a"]]
    rows = {r["arch"]: r for r in result["rows"]}
    assert rows["b"]["ratios"] == pytest.approx([1.00, 1.08]) and rows["b"]["ratio"] == pytest.approx(1.04)
    assert not rows["b"]["in_band"] and rows["a"]["in_band"] and rows["a"]["ratio"] == pytest.approx(1.02)
    assert result["settings"]["repeats"] == 2 and "repeats" not in SETTINGS.record()


def test_a_stopped_pick_resumes_after_its_timed_batches(tmp_path, monkeypatch):
    clock = FakeClock(dict(a=1.2, b=1.2, c=1.2, d=1.0))
    monkeypatch.setattr(finalists, "time_bodies", clock)
    scores = [("a", 4.0), ("b", 3.0), ("c", 2.0), ("d", 1.0)]

    def stop_on_second_batch(names, settings, progress):
        if clock.batches:
            raise KeyboardInterrupt
        return clock(names, settings, progress)

    monkeypatch.setattr(finalists, "time_bodies", stop_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        measured_pick(tmp_path, scores, SETTINGS, progress=False)
    kept = json.loads((tmp_path / FINALISTS_FILE).read_text())
    assert [r["arch"] for r in kept["rows"]] == ["a", "b"] and kept["pick"] is None
    monkeypatch.setattr(finalists, "time_bodies", clock)
    assert measured_pick(tmp_path, scores, SETTINGS, progress=False)["pick"] == "d"
    assert clock.batches == [["a", "b"], ["c", "d"]]  # a and b not timed again


def test_other_settings_or_candidates_time_again(tmp_path, monkeypatch):
    clock = FakeClock(dict(a=1.0, b=1.0))
    monkeypatch.setattr(finalists, "time_bodies", clock)
    measured_pick(tmp_path, [("a", 2.0), ("b", 1.0)], SETTINGS, progress=False)
    measured_pick(tmp_path, [("a", 2.0), ("b", 3.0)], SETTINGS, progress=False)
    measured_pick(tmp_path, [("a", 2.0), ("b", 3.0)], MeasureSettings(reference="mobiledet_cpu", finalists=2,
                                                                       tolerance=0.05), progress=False)
    assert len(clock.batches) == 3


def test_no_architecture_in_the_band_is_refused_with_the_ratios_and_kept(tmp_path, monkeypatch):
    clock = FakeClock(dict(a=1.04, b=0.96, c=1.2))  # just outside ±3 % both ways
    monkeypatch.setattr(finalists, "time_bodies", clock)
    scores = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    with pytest.raises(MeasuredBandError, match=r"none of the 3 .* within ±3% of mobiledet_cpu's .* 0\.96–1\.20"):
        measured_pick(tmp_path, scores, SETTINGS, progress=False)
    assert len(json.loads((tmp_path / FINALISTS_FILE).read_text())["rows"]) == 3
    with pytest.raises(MeasuredBandError):  # the kept miss: refused again without timing
        measured_pick(tmp_path, scores, SETTINGS, progress=False)
    assert len(clock.batches) == 2
    with pytest.raises(MeasuredBandError, match="no scored architecture"):
        measured_pick(tmp_path / "none", [], SETTINGS, progress=False)


def test_the_timing_is_the_detection_studys_body_with_the_reference_in_the_same_run(monkeypatch):
    from repghost.bench import latency

    timed = {}

    def time_modules(modules, runtime, input_size, threads, warmup, runs, progress):
        timed.update(modules=modules, runtime=runtime, input_size=input_size, threads=threads, runs=runs)
        return {label: dict(median_ms=float(i + 1)) for i, label in enumerate(modules)}

    monkeypatch.setattr(latency, "time_modules", time_modules)
    monkeypatch.setattr("repghost.bench.time_modules", time_modules)
    arch = SPACE.arch_name(SPACE.named_archs()["repghostnet_050"])
    reference_ms, measured = finalists.time_bodies([arch], MeasureSettings(reference="repghostnet_050"), False)
    assert (reference_ms, measured) == (1.0, [2.0])
    assert list(timed["modules"]) == ["reference", "finalist 0"]
    assert (timed["runtime"], timed["input_size"], timed["threads"], timed["runs"]) == (
        "onnxruntime", (1, 3, 320, 320), 1, 50)
    # the graph the detection study times: the deploy-form body up to stride 32, the same for the registered
    # repghostnet_050 and for its inline name in the space
    import torch

    x = torch.randn(1, 3, 64, 64)
    reference, body = timed["modules"]["reference"], timed["modules"]["finalist 0"]
    body.load_state_dict(reference.state_dict())
    assert torch.equal(reference(x), body(x)) and reference(x).shape[-2:] == (2, 2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())


def test_an_unknown_reference_is_refused_before_any_work(tmp_path):
    from repghost.search.config import EvolutionConfig

    (tmp_path / "cm.json").write_text("{}")
    with pytest.raises(EvolutionError, match="unknown model 'mobiledet_gpu2'"):
        EvolutionConfig(output=str(tmp_path / "evo"), costmodel=str(tmp_path / "cm.json"), target_ms=1.0,
                        quality="latency", measure_against="mobiledet_gpu2")
