"""The RepGhostNet-skeleton search space: it holds the registered RepGhostNets exactly, every decision's
choices build, fold and run, skip only where a block can be the identity, its files and names are its own;
and the MobileDet-CPU space and the shared machinery behave as before."""

import json

import numpy as np
import pytest
import torch

import repghost
from repghost import create_model, reparameterize
from repghost.models.repghostnet_space import FUSED_MAX_STRIDE, MULTIPLIERS, RepGhostNetSpace, SkipBlock, make_block
from repghost.models.searched import SearchSpace
from repghost.models.space import ArchSpace, SpaceError, get_space, space_ids
from repghost.reparam import verify_fold

from conftest import randomize_bn


@pytest.fixture(scope="module")
def space():
    return RepGhostNetSpace()


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["repghostnet_050", "repghostnet_080", "repghostnet_100"])
def test_the_space_holds_the_registered_repghostnets_exactly(space, name):
    """Same parameter count, the registered state dict loads strictly, same logits and features in train
    and in deploy form."""
    arch = space.from_model_name(name)
    assert space.load_arch(name) == arch and create_model(name).model_name == name
    ref = randomize_bn(create_model(name), seed=3).eval()
    model = create_model(space.arch_name(arch)).eval()
    assert n_params(model) == n_params(ref)
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
        deployed, ref_deployed = reparameterize(model), reparameterize(ref)
        assert torch.equal(deployed(x), ref_deployed(x))
    ref_body = randomize_bn(create_model(name, features_only=True), seed=4).eval()
    body = create_model(space.arch_name(arch), features_only=True).eval()
    body.load_state_dict(ref_body.state_dict(), strict=True)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(body(x), ref_body(x), strict=True))
    assert body.feature_info.channels() == ref_body.feature_info.channels()


def test_the_repghostnets_use_the_multipliers_and_others_are_refused(space):
    assert {"0.5", "0.8", "1.0"} <= set(MULTIPLIERS)
    assert set(space.named_archs()) == {"repghostnet_050", "repghostnet_080", "repghostnet_100"}
    arch = space.from_model_name("repghostnet_080")
    assert set(arch[: space.num_stages]) == {"0.8"}  # 0.65 rounds to 0.8's width at 16 channels: named by the larger
    assert space.widths(arch) == [12, 20, 32, 64, 88, 128, 768]
    assert space.canonical(space.with_choice(arch, "s0_width", "0.65")) == arch
    assert space.canonical(space.with_choice(arch, "s1_width", "0.65")) != arch
    with pytest.raises(SpaceError, match="repghostnet_058 is not expressible"):
        space.from_model_name("repghostnet_058")


def test_skeleton_decisions_and_where_skip_and_fused_are(space):
    assert space.stage_chs == [16, 24, 40, 80, 112, 160, 960]
    assert space.num_decisions == 7 + 16 * 4
    skippable = [s.index for s in space.slots if s.skippable]
    # stride 1 and in == out: block 0 (its stage holds the stem) and every block after the first of a stage
    assert skippable == [0, 2, 4, 6, 7, 8, 10, 12, 13, 14, 15]
    for slot in space.slots:
        assert slot.skippable == (slot.stride == 1 and slot.in_stage == slot.stage)
        assert ("fused" in slot.ops) == (slot.out_stride <= FUSED_MAX_STRIDE)
    ops = {d.name: d.choices for d in space.decisions}
    assert "skip" not in ops["b1_op"] and "skip" not in ops["b9_op"] and "skip" in ops["b15_op"]
    with pytest.raises(SpaceError, match="unknown choice 'skip' for decision 'b9_op'"):
        space.validate(space.with_choice(space.from_model_name("repghostnet_100"), "b9_op", "skip"))
    with pytest.raises(ValueError, match="skip needs stride 1 and in == out"):
        make_block("skip", 16, 16, 24, 3, 1, False)


@pytest.mark.slow  # ~170 distinct blocks and 6 networks built, run and folded: ~20 s
def test_every_choice_of_every_decision_builds_folds_and_runs(space):
    """Each width choice on every stage at once (whole networks), and each choice of each block decision
    in turn on RepGhostNet 0.5×, built, folded and run as the block it makes."""
    for m in MULTIPLIERS:
        blocks = space.from_model_name("repghostnet_050")[space.num_stages:]
        arch = space.canonical([m] * space.num_stages + list(blocks))
        body = space.build(arch, features_only=True).eval()
        with torch.no_grad():
            maps = body(torch.randn(1, 3, 32, 32))
        assert [f.shape[1] for f in maps] == [space.widths(arch)[j] for j in (0, 1, 2, 4, 6)]
    base = space.from_model_name("repghostnet_050")
    built = set()
    for decision in space.decisions[space.num_stages:]:
        i = int(decision.name[1:].split("_")[0])
        for choice in decision.choices:
            block = space.blocks(space.with_choice(base, decision.name, choice))[i]
            if block in built:
                continue
            built.add(block)
            module = randomize_bn(make_block(block.op, block.in_chs, block.mid_chs, block.out_chs, block.kernel,
                                             block.stride, block.se)).eval()
            x = torch.randn(1, block.in_chs, 8, 8)
            with torch.no_grad():
                y, folded = module(x), reparameterize(module)(x)
            assert y.shape == (1, block.out_chs, 8 // block.stride, 8 // block.stride)
            assert (y - folded).abs().max() <= 1e-4 * y.abs().max()
    assert len(built) > 100


def test_random_architectures_fold_exactly_in_float64(space):
    for index in range(2):
        arch = space.sample(0, index)
        model = randomize_bn(space.build(arch, features_only=True), seed=index).eval()
        deployed = reparameterize(model)
        assert repghost.is_deploy(deployed)
        check = verify_fold(model, deployed, (1, 3, 32, 32))
        assert check.ok, (arch, check)


def test_skip_makes_the_block_the_identity(space):
    arch = space.with_choice(space.from_model_name("repghostnet_050"), "b7_op", "skip")
    model = space.build(arch)
    block = model.blocks[6][1]
    assert isinstance(block, SkipBlock) and n_params(block) == 0
    assert n_params(model) < n_params(space.build(space.from_model_name("repghostnet_050")))


def test_inactive_decisions_are_canonical_so_one_model_has_one_name(space):
    arch = space.with_choice(space.from_model_name("repghostnet_100"), "b7_op", "skip")
    other = space.with_choice(space.with_choice(arch, "b7_k", "5"), "b7_mid", "0.35")
    assert space.canonical(other) == space.canonical(arch)
    assert space.arch_name(other) == space.arch_name(arch)
    active = dict(zip(space.decision_names, space.active(arch), strict=True))
    assert not active["b7_k"] and not active["b7_mid"] and not active["b7_se"] and active["b7_op"]
    # a RepGhost bottleneck's kernel matters only with a stride-2 conv or a projection shortcut
    assert not active["b6_k"] and active["b5_k"] and active["b9_k"]
    tucker = space.with_choice(arch, "b6_op", "tucker")
    assert not dict(zip(space.decision_names, space.active(tucker), strict=True))["b6_se"]
    assert all(space.canonical(space.sample(3, i)) == space.sample(3, i) for i in range(20))


def test_sampling_is_seeded_and_covers_every_choice(space):
    assert space.sample(1, 5) == space.sample(1, 5) != space.sample(1, 6)
    archs = [space.sample(0, i) for i in range(300)]
    for j, decision in enumerate(space.decisions[: space.num_stages]):
        every = {space.widths(space.with_choice(archs[0], decision.name, c))[j] for c in decision.choices}
        assert {space.widths(a)[j] for a in archs} == every and len(every) >= 4


def test_names_and_files_round_trip_and_other_spaces_are_refused(space, tmp_path):
    arch = space.sample(0, 1)
    name = space.arch_name(arch)
    assert name.startswith("repghostnet_search:") and space.from_arch_name(name) == arch
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(space.arch_to_json(arch)))
    assert space.load_arch(path) == arch
    model = create_model(path)
    assert model.model_name == name == repghost.models.resolve_model_name(name)
    # a MobileDet-CPU-space file is not this space's, and this space's is not the MobileDet one's
    old = SearchSpace()
    old_path = tmp_path / "old.json"
    old_path.write_text(json.dumps(old.arch_to_json(old.from_model_name("mobiledet_cpu"))))
    with pytest.raises(SpaceError, match="belongs to search space 'mobiledet_cpu_skeleton/v1'"):
        space.load_arch(old_path)
    with pytest.raises(SpaceError, match="belongs to search space 'repghostnet_skeleton/v1'"):
        old.load_arch(path)
    with pytest.raises(SpaceError, match="not a searched architecture's name"):
        space.from_arch_name(old.arch_name(old.from_model_name("mobiledet_cpu")))
    assert create_model(old_path).model_name.startswith("mobiledet_search:")  # the resolver picks the space


@pytest.mark.parametrize("change,message", [
    (dict(fingerprint="0" * 16), "belongs to search space"),
    (dict(space="another_space/v1"), "belongs to search space"),
    (dict(format="something/1"), "is not a repghost architecture file"),
    (dict(choices=["1.0"] * 71), "must be an object"),
])
def test_bad_files_are_refused(space, tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**space.arch_to_json(space.sample(0, 0)), **change}))
    with pytest.raises(repghost.UnknownModelError, match=message):
        create_model(path)


def test_bad_choices_in_files_and_names_are_refused(space, tmp_path):
    data = space.arch_to_json(space.sample(0, 0))
    bad = dict(data, choices={**data["choices"], "s0_width": "0.9"})
    missing = dict(data, choices={k: v for k, v in data["choices"].items() if k != "b3_op"})
    for payload, message in ((bad, "unknown choice '0.9' for decision 's0_width'"),
                             (missing, "must name every decision.*missing b3_op")):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(payload))
        with pytest.raises(SpaceError, match=message):
            space.load_arch(path)
    name = space.arch_name(space.sample(0, 0))
    with pytest.raises(repghost.UnknownModelError, match="has 71 decisions"):
        create_model(name.rsplit(",", 1)[0])
    with pytest.raises(repghost.UnknownModelError, match="belongs to search space"):
        create_model(name.replace(space.fingerprint, "f" * 16))


def test_both_spaces_implement_the_interface():
    assert space_ids() == ["mobiledet_cpu_skeleton/v1", "repghostnet_skeleton/v1"]
    for space_id in space_ids():
        space = get_space(space_id)
        assert isinstance(space, ArchSpace) and space.id == space_id
        arch = space.sample(0, 0)
        assert len(arch) == space.num_decisions == len(space.decisions)
        assert all(c in d.choices for c, d in zip(arch, space.decisions, strict=True))
        body = space.build(arch, features_only=True, out_indices=(3, 4))
        assert body.feature_info.reduction() == [16, 32]
        assert space.from_arch_name(space.arch_name(arch)) == arch
        assert space.arch_from_json(space.arch_to_json(arch)) == arch
    with pytest.raises(SpaceError, match="unknown search space 'nope'"):
        get_space("nope")


def test_the_mobiledet_space_is_unchanged():
    """Its fingerprint (which every recorded file of it carries), its sampling and its file layout."""
    old = SearchSpace()
    assert old.fingerprint == "7c6012ee1d142448"
    assert old.sample(0, 0) == tuple(old.choice_names[i] for i in
                                     np.random.default_rng([0, 0]).integers(len(old.choices), size=18))
    data = old.arch_to_json(old.sample(0, 0))
    assert set(data) == {"format", "space", "fingerprint", "layers"} and isinstance(data["layers"], list)
    assert [d.name for d in old.decisions][:2] == ["L0", "L1"]


# -- the cost model on the RepGhostNet space -------------------------------------------------------------
def test_cost_features_are_the_work_each_choice_brings(space):
    from repghost.costmodel.fit import feature_names, features, free_parameters

    names = feature_names(space)
    assert free_parameters(space) == 1 + len(names) == 91
    base = space.from_model_name("repghostnet_050")
    x0 = features(space, [base])[0]
    macs = [i for i, n in enumerate(names) if n.endswith(":macs")]
    # the deploy model's convs, counted independently (the SE gates' 1×1 convs on pooled maps aside)
    model = space.build(base, features_only=True, deploy=True)
    counted, sizes = 0, {}

    def hook(conv, _inputs, out):
        nonlocal counted
        if out.shape[-1] > 1:
            counted += out.numel() * conv.in_channels // conv.groups * conv.kernel_size[0] ** 2
    for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
        conv.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.empty(1, 3, 320, 320))
    assert x0[macs].sum() == pytest.approx(counted / 1e6)
    # a choice moves the features exactly when it changes the model (its canonical name)
    changed = 0
    for decision in space.decisions:
        for choice in decision.choices:
            arch = space.with_choice(base, decision.name, choice)
            moved = not np.array_equal(features(space, [arch])[0], x0)
            assert moved == (space.canonical(arch) != base), (decision.name, choice)
            changed += moved
    assert changed > 150
    skipped = features(space, [space.with_choice(base, "b7_op", "skip")])[0]
    assert skipped[macs].sum() < x0[macs].sum()
    sizes = {n: v for n, v in zip(names, x0, strict=True) if v}
    assert sizes["s32:se:n"] == 3 and sizes["s2:conv3:n"] == 1  # SE in blocks 11, 13, 15 at stride 32; the stem


def test_fit_recovers_a_latency_linear_in_the_work_and_files_carry_the_space(space, tmp_path):
    from repghost.costmodel.fit import CostModel, CostModelError, features, fit, model_space

    archs = [space.cost_sample(0, i)[0] for i in range(160)]
    weights = np.random.default_rng(0).uniform(0.0, 0.2, size=90)
    y = 1.0 + features(space, archs) @ weights
    result = fit(space, archs, y, test_fraction=0.2)
    assert result.test["r2"] > 0.999999
    path = result.model.save(tmp_path / "model.json")
    assert json.loads(path.read_text())["space"] == "repghostnet_skeleton/v1"
    assert model_space(path).id == space.id
    loaded = CostModel.load(path, space)
    assert np.allclose(loaded.predict(space, archs), y)
    with pytest.raises(CostModelError, match="belongs to search space 'repghostnet_skeleton/v1'"):
        CostModel.load(path, SearchSpace())
    with pytest.raises(ValueError, match=r"too few to determine the linear model's 91 free parameters "
                                         r"\(1 \+ 90 work features\)"):
        fit(space, archs[:40], y[:40])


def test_predict_takes_the_space_of_the_model_and_search_refuses_it(space, tmp_path, capsys):
    from repghost.cli import main
    from repghost.costmodel.fit import features, fit

    archs = [space.cost_sample(1, i)[0] for i in range(120)]
    y = 2.0 + features(space, archs) @ np.linspace(0.01, 0.1, 90)
    path = fit(space, archs, y).model.save(tmp_path / "model.json")
    assert main(["costmodel", "predict", str(path), "repghostnet_050"]) == 0
    assert "repghostnet_050: predicted" in capsys.readouterr().out
    assert main(["costmodel", "predict", str(path), "mobiledet_cpu"]) == 1
    assert "neither an architecture file nor one of repghostnet_050" in capsys.readouterr().err
    # the search (MobileDet-CPU space) refuses it before any work, writing nothing
    out = tmp_path / "search"
    assert main(["search", "--costmodel", str(path), "--target-ms", "5", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "belongs to search space 'repghostnet_skeleton/v1'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cost_sample_mixes_uniform_and_cheap_draws(space):
    from repghost.costmodel.fit import feature_names, features

    draws = [space.cost_sample(0, i) for i in range(200)]
    assert [d for _, d in draws[:4]] == ["uniform", "cheap", "uniform", "cheap"]
    assert all(a == space.sample(0, i) for i, (a, d) in enumerate(draws) if d == "uniform")
    macs = [i for i, n in enumerate(feature_names(space)) if n.endswith(":macs")]
    work = features(space, [a for a, _ in draws])[:, macs].sum(axis=1)
    cheap = np.array([d == "cheap" for _, d in draws])
    limit = features(space, [space.from_model_name("repghostnet_050")])[0, macs].sum()
    assert np.median(work[cheap]) < limit < np.median(work[~cheap])  # the cheap draws reach below RepGhostNet 0.5×
    assert (work[cheap] <= limit).mean() > 0.5
    old = SearchSpace()
    assert old.cheap_share == 0 and old.cost_sample(0, 1) == (old.sample(0, 1), "uniform")


def test_cli_samples_and_fits_the_space_it_is_told(tmp_path, capsys):
    from repghost.cli import main
    from repghost.costmodel.sampling import read_records

    out = tmp_path / "rg"
    tiny = ["--img-size", "32", "--warmup", "1", "--runs", "2", "--quiet"]
    assert main(["costmodel", "sample", "--space", "repghostnet_skeleton/v1", "--out", str(out), "--n", "2",
                 *tiny]) == 0
    records = read_records(out)
    assert [r.get("name") for r in records[:3]] == ["repghostnet_050", "repghostnet_080", "repghostnet_100"]
    assert [r.get("draw") for r in records[3:]] == ["uniform", "cheap"]
    assert json.loads((out / "space.json").read_text())["timing"]["reference"] == "repghostnet_100"
    assert all(r["cpu_median_ms"] > 0 and len(r["cpu_times_ms"]) == 2 for r in records)  # the same runs' CPU time
    capsys.readouterr()
    assert main(["costmodel", "fit", str(out)]) == 1
    assert "free parameters (1 + 90 work features)" in capsys.readouterr().err
    assert main(["costmodel", "fit", str(out), "--space", "mobiledet_cpu_skeleton/v1"]) == 1
    assert "belongs to search space 'repghostnet_skeleton/v1'" in capsys.readouterr().err
    assert main(["costmodel", "sample", "--out", str(out), "--n", "1", *tiny]) == 1  # the default space: not this dir
    assert "belongs to search space 'repghostnet_skeleton/v1'" in capsys.readouterr().err


def test_a_file_of_the_space_is_a_detection_backbone(space, tmp_path):
    """det-train --backbone arch.json takes either space's file; the detector records the inline name and folds."""
    from repghost.detection import DetectorConfig, build_detector
    from repghost.detection.detectors import detector_body
    from repghost.reparam import fold_and_verify

    arch = space.with_choice(space.from_model_name("repghostnet_050"), "b12_op", "skip")
    path = tmp_path / "found.json"  # a name that matches no backbone pattern: the file is what counts
    path.write_text(json.dumps(space.arch_to_json(arch)))
    config = DetectorConfig(model="ssdlite", backbone=str(path), num_classes=3, min_size=64, max_size=64)
    assert config.backbone == space.arch_name(arch)
    detector = randomize_bn(build_detector(config)).eval()
    body = detector_body(detector)
    assert body.model_name == config.backbone and body.feature_info.channels() == [56, 480]
    with torch.no_grad():
        assert len(detector([torch.rand(3, 64, 64)])) == 1
    _, check = fold_and_verify(detector, (1, 3, 64, 64), part=detector_body)
    assert check.ok


def test_latencies_on_the_cpu_clock_and_records_without_it_refused():
    from repghost.costmodel.sampling import latencies

    records = [dict(median_ms=9.0, cpu_median_ms=4.0, rel_to_ref=0.5, ref_median_ms=18.0),
               dict(median_ms=30.0, cpu_median_ms=8.0, rel_to_ref=1.0, ref_median_ms=30.0)]
    y, how = latencies(records, "cpu")
    assert list(y) == [4.0, 8.0] and how == dict(target="cpu_median_ms")
    assert latencies(records)[1]["target"] == "rel_to_ref"  # the wall clock stays the default
    with pytest.raises(SpaceError, match="1 of 3 records have no CPU times"):
        latencies([*records, dict(median_ms=5.0, rel_to_ref=0.3, ref_median_ms=20.0)], "cpu")
    with pytest.raises(ValueError, match="clock must be one of wall, cpu"):
        latencies(records, "gpu")
