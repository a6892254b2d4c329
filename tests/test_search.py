"""The latency-aware architecture search: controller, reward, super-network, resume and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from repghost import create_model, reparameterize
from repghost.checkpoint import CheckpointError
from repghost.cli import main
from repghost.costmodel.fit import CostModel, fit
from repghost.costmodel.space import SearchSpace
from repghost.deploy import compare_onnx, export_onnx
from repghost.detection.data import DataConfig
from repghost.detection.detectors import (
    DetectorConfig,
    build_detector,
    build_ssdlite,
    detector_body,
    reparameterize_detector,
)
from repghost.reparam import verify_fold
from repghost.search import ChoiceLayer, Controller, LinearCost, SearchConfig, SuperNet, absolute_reward, run_search
from repghost.search.engine import CHECKPOINT_FILE, StepBatches
from repghost.search.quality import held_out_quality

SPACE = SearchSpace()
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.fixture(scope="module")
def cost_model(tmp_path_factory) -> str:
    """A linear cost model of this space fitted on latencies that are a sum of random per-layer-choice
    costs (deterministic, positive), so cheap and dear architectures differ as on a device, and the
    model is fit for use (held-out r² 1)."""
    rng = np.random.default_rng(0)
    cost = rng.uniform(0.05, 1.0, (SPACE.num_layers, len(SPACE.choice_names)))
    archs = [SPACE.sample(5, i) for i in range(600)]
    latency = [1.0 + cost[np.arange(SPACE.num_layers), _index(a)].sum() for a in archs]
    result = fit(SPACE, archs, latency, timing=dict(runtime="onnxruntime", threads=1, batch=1, img_size=320))
    assert result.test["r2"] > 0.999
    path = tmp_path_factory.mktemp("cost") / "costmodel.json"
    result.model.save(path)
    return str(path)


def _index(arch) -> list[int]:
    return [SPACE.choice_names.index(name) for name in arch]


# -- controller and reward -------------------------------------------------------------------------
def test_absolute_reward_penalises_a_miss_in_either_direction():
    assert absolute_reward(0.5, 10.0, 10.0, -0.1) == 0.5
    assert absolute_reward(0.5, 8.0, 10.0, -0.1) == pytest.approx(0.48)
    assert absolute_reward(0.5, 12.0, 10.0, -0.1) == pytest.approx(0.48)


def test_controller_moves_toward_the_choice_a_toy_reward_favours():
    controller = Controller(num_layers=6, num_choices=5, lr=0.05, seed=0)
    for _ in range(400):
        choices = controller.sample()
        controller.update(choices, reward=float(np.mean([c == 3 for c in choices])))
    probs = controller.probs
    assert probs.shape == (6, 5)
    assert torch.all(probs[:, 3] > 0.6), probs[:, 3]            # from 0.2 each at the start
    assert controller.most_likely() == [3] * 6
    assert controller.entropy() < np.log(5) * 0.8


@pytest.mark.parametrize("target", [6.0, 16.0])
def test_latency_term_pulls_sampled_latency_to_the_target(cost_model, target):
    cost = LinearCost(CostModel.load(cost_model, SPACE), SPACE)
    controller = Controller(SPACE.num_layers, len(SPACE.choice_names), seed=1)
    sampled = []
    for _ in range(1500):
        choices = controller.sample()
        sampled.append(cost(choices))
        controller.update(choices, absolute_reward(0.3, sampled[-1], target, -0.07))
    start, end = np.mean(sampled[:100]), np.mean(sampled[-200:])
    assert abs(start - target) / target > 0.2          # the uniform start is far from both targets
    assert abs(end - target) / target < 0.05, (start, end)


def test_linear_cost_is_the_cost_model_and_knows_its_extremes(cost_model):
    model = CostModel.load(cost_model, SPACE)
    cost = LinearCost(model, SPACE)
    archs = [SPACE.sample(3, i) for i in range(50)]
    np.testing.assert_allclose([cost(_index(a)) for a in archs], model.predict(SPACE, archs), rtol=1e-12)
    low, cheapest = cost.cheapest
    high, dearest = cost.dearest
    assert low == pytest.approx(cost(cheapest)) and high == pytest.approx(cost(dearest))
    assert all(low <= cost(_index(a)) <= high for a in archs)


def test_controller_state_round_trips_sampling_included():
    a = Controller(4, 3, seed=5)
    for _ in range(10):
        a.update(a.sample(), 1.0)
    b = Controller(4, 3, seed=99)
    b.load_state_dict(a.state_dict())
    assert [a.sample() for _ in range(5)] == [b.sample() for _ in range(5)]


def test_quality_proxy_is_a_bounded_soft_recall_beside_ssd_own_loss():
    detector = build_detector(DetectorConfig(model="ssdlite", backbone="mobiledet_cpu", num_classes=3, min_size=64))
    images = [torch.rand(3, 64, 64) for _ in range(3)]
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 44.0], [30.0, 20.0, 60.0, 60.0]]),
                "labels": torch.tensor([1, 2])} for _ in range(2)]
    targets.append({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)})  # no object
    detector.train()
    quality, loss, objects = held_out_quality(detector, images, targets)
    assert objects == 4 and 0.0 <= quality <= 1.0
    with torch.no_grad():
        assert loss == pytest.approx(float(sum(detector(images, targets).values())), rel=1e-5)
    # All confidence on the background: nothing is found. All on class 1: only class-1 objects can be.
    assert _confident_quality(detector, images, targets, 0) < 1e-6
    assert 0.0 < _confident_quality(detector, images, targets, 1) <= 0.5 + 1e-6


def _confident_quality(detector, images, targets, label: int) -> float:
    """Q when every anchor is sure of class ``label`` (classification weights 0, that class's bias 30)
    and predicts its own box (regression 0: the decoded box is the anchor)."""
    with torch.no_grad():
        for block in detector.head.regression_head.module_list:
            block[-1].weight.zero_()
            block[-1].bias.zero_()
        for block in detector.head.classification_head.module_list:
            block[-1].weight.zero_()
            block[-1].bias.zero_()
            block[-1].bias.view(-1, 3)[:, label] = 30.0
    return held_out_quality(detector, images, targets)[0]


# -- super-network -----------------------------------------------------------------------------------
def test_supernet_path_is_the_architecture_it_selects():
    net = SuperNet(SPACE).eval()
    arch = SPACE.sample(0, 4)
    net.set_arch(arch)
    alone = SPACE.build(arch, features_only=True, out_indices=(3, 4)).eval()
    alone.load_state_dict(net.path_state_dict(arch))
    x = torch.randn(1, 3, 64, 64)
    for got, want in zip(net(x), alone(x), strict=True):
        torch.testing.assert_close(got, want)


def test_step_batches_are_a_function_of_the_step():
    pool = list(range(10, 40))
    whole = StepBatches(pool, 4, (0, 0), 0, 20)
    resumed = StepBatches(pool, 4, (0, 0), 11, 20)
    assert list(whole)[11:] == list(resumed)
    ranks = [StepBatches(pool, 4, (0, 0), 3, 4, rank, 2).batch(3) for rank in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == sorted(whole.batch(3)) and not set(ranks[0]) & set(ranks[1])


# -- a whole (tiny) search --------------------------------------------------------------------------
def _config(tmp_path, cost_model, name, **overrides) -> SearchConfig:
    values = dict(output=str(tmp_path / name), costmodel=cost_model, target_ms=9.0, steps=8, warmup_fraction=0.25,
                  batch_size=2, img_size=64, log_every=2, checkpoint_every=100, measure=False,
                  data=DataConfig(synthetic_dir=str(tmp_path / "data"), synthetic_train=20, synthetic_val=4,
                                  synthetic_size=64))
    return SearchConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def whole(tmp_path_factory, cost_model):
    """A finished tiny search (8 steps, 2 of them warm-up)."""
    return run_search(_config(tmp_path_factory.mktemp("search"), cost_model, "whole", measure=True))


def _ctrl_c() -> None:
    """SIGINT to the main thread, where Python runs its handlers (and a terminal's Ctrl-C lands): sent to
    the process instead, it may be taken by a thread of a native runtime that an earlier test started."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


def test_killed_and_resumed_search_reproduces_the_uninterrupted_one(tmp_path, cost_model, whole):

    def interrupt(search):
        if search.step == 5:
            _ctrl_c()   # what Ctrl-C sends: stop after this step, with a checkpoint

    cut = run_search(_config(tmp_path, cost_model, "cut"), callback=interrupt)
    assert cut.interrupted and cut.steps_done == 5
    assert not (tmp_path / "cut" / "arch.json").exists()
    _assert_holds_only_what_resume_needs(torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True))
    resumed = run_search(_config(tmp_path, cost_model, "cut", resume=True))
    assert not resumed.interrupted and resumed.steps_done == 8
    assert resumed.arch == whole.arch and resumed.history == whole.history
    a = torch.load(whole.output / CHECKPOINT_FILE, weights_only=True)
    b = torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True)
    assert torch.equal(a["controller"]["logits"], b["controller"]["logits"])
    assert torch.equal(a["trained"], b["trained"]) and a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert "optimizer" not in b  # nothing is left to train: a finished search cannot go on
    _assert_holds_only_what_resume_needs(b)
    again = run_search(_config(tmp_path, cost_model, "cut", resume=True))  # a finished search resumes to its end
    assert again.steps_done == 8 and again.arch == whole.arch
    result = json.loads((tmp_path / "cut" / "arch.json").read_text())
    assert SPACE.arch_from_json(result) == whole.arch
    assert result["predicted_ms"] == pytest.approx(whole.predicted_ms)
    assert sum(result["choice_counts"].values()) == SPACE.num_layers
    assert (tmp_path / "cut" / "report.md").read_text().count("\n| ") == SPACE.num_layers + 1
    measured = json.loads((whole.output / "arch.json").read_text())["measured"]   # timed as the cost model was
    assert measured["measured_ms"] == whole.measured_ms > 0 and measured["reference_measured_ms"] > 0
    assert (measured["runtime"], measured["threads"], measured["img_size"]) == ("onnxruntime", 1, 320)


def _choice_keys(detector: torch.nn.Module) -> dict[tuple[int, int], set[str]]:
    """The detector's state-dict keys of each (layer, choice) block of its super-network."""
    layers = [m for m in detector.modules() if isinstance(m, ChoiceLayer)]
    keys: dict[tuple[int, int], set[str]] = {}
    for key in detector.state_dict():
        if ".choices." in key:
            owner, rest = key.split(".choices.", 1)
            layer = layers.index(detector.get_submodule(owner))
            keys.setdefault((layer, int(rest.split(".")[0])), set()).add(key)
    return keys


def _assert_holds_only_what_resume_needs(state: dict) -> None:
    """The blocks of choices never trained (still at their seeded initial weights) and their optimizer
    state are left out of a search checkpoint; everything else is in it."""
    detector = build_ssdlite(SuperNet(SPACE), 4, 64)
    choice_keys = _choice_keys(detector)
    trained = state["trained"]
    assert trained.shape == (SPACE.num_layers, len(SPACE.choice_names)) and trained.dtype == torch.bool
    assert ((trained.sum(1) >= 1) & (trained.sum(1) <= state["step"])).all()  # one choice per layer per step
    untrained = {k for choice, keys in choice_keys.items() if not trained[choice] for k in keys}
    assert untrained and state["model"].keys() == detector.state_dict().keys() - untrained
    if "optimizer" in state:
        params = [name for name, p in detector.named_parameters() if p.requires_grad]
        with_momentum = {params[i] for i in state["optimizer"]["state"]}
        assert with_momentum == set(params) - untrained


def test_a_search_checkpoint_missing_what_resume_needs_is_refused(tmp_path, cost_model):
    def interrupt(search):
        if search.step == 3:
            _ctrl_c()

    run_search(_config(tmp_path, cost_model, "run"), callback=interrupt)
    path = tmp_path / "run" / CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    trained_key = next(k for k in state["model"] if ".choices." in k)
    for broken, message in ((dict(state, model={k: v for k, v in state["model"].items() if k != trained_key}),
                             f"lacks 1 super-network tensor.*{trained_key}"),
                            ({k: v for k, v in state.items() if k != "optimizer"}, "holds no optimizer state.*step 3")):
        torch.save(broken, path)
        with pytest.raises(CheckpointError, match=f"cannot resume {path}: it {message}"):
            run_search(_config(tmp_path, cost_model, "run", resume=True))


def test_resume_refuses_other_settings(tmp_path, cost_model):
    run_search(_config(tmp_path, cost_model, "run", steps=2))
    with pytest.raises(ValueError, match="settings differ.*tau"):
        run_search(_config(tmp_path, cost_model, "run", steps=2, tau=-0.5, resume=True))
    with pytest.raises(ValueError, match="exists; pass --resume"):
        run_search(_config(tmp_path, cost_model, "run", steps=2))


# -- bad input fails before any training, nothing written ------------------------------------------
def _search(tmp_path, cost_model, *extra) -> list[str]:
    return ["search", "--costmodel", cost_model, "--output", str(tmp_path / "out"), *extra]


def test_an_unfit_cost_model_is_refused_unless_allowed(tmp_path, cost_model, capsys):
    """benchmarks/results/costmodel_raw_model.json: raw medians timed under heavy load, held-out r² −0.59
    (written before models recorded their fitness: judged from that r²)."""
    unfit = str(BENCH / "costmodel_raw_model.json")
    assert main(_search(tmp_path, unfit, "--target-ms", "9")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is unfit: its held-out r² is -0.588" in err and "below 0.9" in err
    assert "--allow-unfit" in err and not (tmp_path / "out").exists()
    # With --allow-unfit the search goes on to its next check: the target, out of this model's range
    # (−156 … 330 ms: a model this bad even predicts negative latencies).
    assert main(_search(tmp_path, unfit, "--target-ms", "1000", "--allow-unfit")) == 2
    assert "above the dearest" in capsys.readouterr().err and not (tmp_path / "out").exists()
    data = json.loads(open(cost_model).read())
    del data["metrics"]
    unknown = tmp_path / "no_metrics.json"
    unknown.write_text(json.dumps(data))
    assert main(_search(tmp_path, str(unknown), "--target-ms", "9")) == 2
    assert "records no held-out r²" in capsys.readouterr().err


def test_cost_model_of_another_space_is_refused(tmp_path, cost_model, capsys):
    data = json.loads(open(cost_model).read())
    data["fingerprint"] = "0123456789abcdef"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    assert main(["search", "--costmodel", str(other), "--output", str(tmp_path / "out"), "--target-ms", "9"]) == 2
    err = capsys.readouterr().err
    assert "belongs to search space" in err and "repghost costmodel fit" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target,side", [("0.5", "below the cheapest"), ("500", "above the dearest")])
def test_unreachable_target_is_refused_with_the_reachable_range(tmp_path, cost_model, capsys, target, side):
    assert main(_search(tmp_path, cost_model, "--target-ms", target)) == 2
    err = capsys.readouterr().err.strip()
    assert side in err and "choose a target in that range" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_data_root_is_refused(tmp_path, cost_model, capsys):
    assert main(_search(tmp_path, cost_model, "--target-ms", "9", "--data", str(tmp_path / "coco"))) == 2
    assert "--data" in capsys.readouterr().err
    (tmp_path / "coco").mkdir()
    with pytest.raises(ValueError, match="has no annotations/instances_train.json"):
        run_search(_config(tmp_path, cost_model, "out", data=DataConfig(root=str(tmp_path / "coco"))))
    assert not (tmp_path / "out").exists()


def test_found_architecture_rebuilds_trains_a_step_folds_and_exports(whole, tmp_path):
    arch_file = whole.output / "arch.json"
    detector = build_detector(DetectorConfig(model="ssdlite", backbone=str(arch_file), num_classes=4, min_size=64))
    assert detector_body(detector).model_name == SPACE.arch_name(whole.arch)
    images = [torch.rand(3, 64, 64) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]]), "labels": torch.tensor([1])} for _ in range(2)]
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.01)
    before = detector_body(detector).stem.conv.weight.detach().clone()
    loss = sum(detector.train()(images, targets).values())
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(before, detector_body(detector).stem.conv.weight)
    detector.eval()
    deployed = reparameterize_detector(detector)
    check = verify_fold(detector_body(detector), detector_body(deployed), (1, 3, 64, 64))
    assert check.ok, check
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in detector_body(deployed).modules())
    classifier = reparameterize(create_model(str(arch_file), num_classes=10).eval())
    path = export_onnx(classifier, tmp_path / "found.onnx", (1, 3, 96, 96), exporter="legacy")
    result = compare_onnx(classifier, path, (2, 3, 96, 96))
    assert result.ok, str(result)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path, cost_model):
    """Every rank trains its share of the minibatch on the same sampled path; rank 0 alone writes."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    # torchrun keeps its per-rank log directory (TMPDIR/torchelastic_*) after the run: not in the machine's /tmp.
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               TMPDIR=str(tmp_path / "tmp"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "repghost",
           "search", "--costmodel", cost_model, "--target-ms", "9", "--output", str(tmp_path / "ddp"), "--steps", "4",
           "--batch-size", "2", "--img-size", "64", "--log-every", "2", "--threads", "1", "--no-measure"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "ddp" / "arch.json").read_text())
    assert len(SPACE.arch_from_json(result)) == SPACE.num_layers and result["search"]["steps"] == 4
    assert proc.stdout.count("architecture:") == 1          # rank 0 logs and writes
    state = torch.load(tmp_path / "ddp" / CHECKPOINT_FILE, weights_only=True)
    assert state["step"] == 4 and [h["step"] for h in state["history"]] == [2, 4]


def test_too_few_held_out_images_for_a_minibatch_is_refused(tmp_path, cost_model):
    with pytest.raises(ValueError, match=r"4 held-out images \(--reward-fraction.*--batch-size"):
        run_search(_config(tmp_path, cost_model, "out", batch_size=8))
    assert not (tmp_path / "out" / CHECKPOINT_FILE).exists()
