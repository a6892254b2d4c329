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
    assert set(arch[: space.num_stages]) == {"0.8"}
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
    for index in range(4):
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
        assert {a[j] for a in archs} == set(decision.choices)


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
