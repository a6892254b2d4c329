"""The super-network over the RepGhostNet-skeleton space: its paths are the space's stand-alone detectors,
the sandwich rule's extremes, BN recalibration, training and scoring."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from repghost import create_model
from repghost.checkpoint import CheckpointError
from repghost.detection.data import CocoDetection, collate
from repghost.detection.evaluate import predict
from repghost.detection.synthetic import annotation_path, image_dir, make_synthetic_coco
from repghost.models.repghostnet_space import RepGhostNetSpace, make_block
from repghost.search.calibrate import preserved_bn_state, recalibrate_bn
from repghost.search.proxy import (
    box_ap,
    image_subsets,
    path_forward,
    predict_architecture,
    score_architecture,
    score_noise,
)
from repghost.search.sandwich import SandwichTrainer, distillation_loss, sandwich_archs
from repghost.search.sliced import sliced_state_dict
from repghost.search.superbody import SuperBody
from repghost.search.superops import BlockBounds, OpPath, SuperBlock
from repghost.search.superspace import SuperSSDLite, body_path, extreme_arch, tucker_rank
from repghost.search.supertrain import CHECKPOINT_FILE, SupernetConfig, SupernetTraining, train_supernet
from test_supernet import randomize

SPACE = RepGhostNetSpace()
IMAGE = 64  # SSDLite input: the head's maps are 4×4 … 1×1


@pytest.fixture(scope="module")
def supernet() -> SuperSSDLite:
    torch.manual_seed(0)
    return SuperSSDLite(SPACE, num_classes=4, image_size=IMAGE)


def images(count: int = 2, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, IMAGE, IMAGE, generator=generator) for _ in range(count)]


def head_of(model, batch) -> dict[str, torch.Tensor]:
    images_t, _ = model.transform(batch)
    return model.head(list(model.backbone(images_t.tensors).values()))


ARCHS = {"repghostnet_050": SPACE.named_archs()["repghostnet_050"],
         "repghostnet_100": SPACE.named_archs()["repghostnet_100"],
         "largest": extreme_arch(SPACE, True, (0,)), "smallest": extreme_arch(SPACE, False, (0,)),
         "random_0": SPACE.sample(3, 0), "random_1": SPACE.sample(3, 1)}


@pytest.mark.parametrize("name", ARCHS)
def test_super_ssdlite_path_is_the_stand_alone_detector_of_that_architecture(supernet, name):
    """Body, extra layers and head: the stand-alone SSDLite of the architecture (the space's model),
    given the path's sliced weights, computes what the super-network computes, in train and eval mode."""
    randomize(supernet.model, seed=7)
    detector = supernet.stand_alone(ARCHS[name])
    batch = images()
    for training in (True, False):
        supernet.model.train(training), detector.train(training)
        with torch.no_grad():
            got, expected = head_of(supernet.model, batch), head_of(detector, batch)
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-4)


def test_the_space_named_models_are_paths_with_their_parameter_counts(supernet):
    for name, arch in SPACE.named_archs().items():
        body = supernet.stand_alone(arch).backbone.body
        reference = create_model(name, features_only=True, out_indices=(3, 4))
        assert sum(p.numel() for p in body.parameters()) == sum(p.numel() for p in reference.parameters()), name


def test_sandwich_extremes_are_the_top_and_bottom_of_every_ordered_decision():
    largest, smallest = extreme_arch(SPACE, True, (1,)), extreme_arch(SPACE, False, (1,))
    widths = [SPACE.widths(largest), SPACE.widths(smallest)]
    for arch in (SPACE.sample(0, i) for i in range(20)):
        assert all(lo <= w <= hi for lo, w, hi in zip(widths[1], SPACE.widths(arch), widths[0], strict=True))
    big = SPACE.blocks(largest)
    assert all(b.op != "skip" for b in big)
    kernels = [c for d, c, used in zip(SPACE.decisions, largest, SPACE.active(largest), strict=True)
               if d.name.endswith("_k") and used]
    assert kernels and set(kernels) == {"5"}
    assert all(b.op == "skip" for b, slot in zip(SPACE.blocks(smallest), SPACE.slots, strict=True) if slot.skippable)
    assert len({b.op for b in big}) > 1  # the op has no order: drawn, so every op trains at the extremes


# -- BN recalibration ---------------------------------------------------------------------------------------
def test_bn_recalibration_changes_only_bn_buffers_and_sets_the_path_batch_statistics(supernet):
    model = supernet.model
    supernet.set_arch(ARCHS["random_0"])
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norms = {m: name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    seen: dict[str, list[torch.Tensor]] = {}

    def record(module, inputs, output):
        seen.setdefault(norms[module], []).append(inputs[0].detach())

    hooks = [m.register_forward_hook(record) for m in norms]
    batches = [images(2, seed=1), images(2, seed=2)]
    try:
        assert recalibrate_bn(model, batches, path_forward(supernet, torch.device("cpu"))) == 2
    finally:
        for hook in hooks:
            hook.remove()
    assert not model.training and all(m.momentum is not None for m in norms)
    after = model.state_dict()
    bn_buffers = {f"{name}.{b}" for name in norms.values()
                  for b in ("running_mean", "running_var", "num_batches_tracked")}
    for key, value in after.items():
        if key not in bn_buffers:
            assert torch.equal(value, before[key]), f"{key} changed"
    assert len(seen) > 50  # body, extra layers and head
    for name, inputs in seen.items():
        chs = inputs[0].shape[1]
        mean = torch.stack([x.mean((0, 2, 3)) for x in inputs]).mean(0)
        var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs]).mean(0)
        torch.testing.assert_close(after[f"{name}.running_mean"][:chs], mean, rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(after[f"{name}.running_var"][:chs], var, rtol=1e-4, atol=1e-5, msg=name)
    changed = [k for k in bn_buffers if not torch.equal(after[k], before[k])]
    assert len(changed) > 100


def test_scoring_leaves_the_bn_statistics_as_they_were(supernet):
    model = supernet.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with preserved_bn_state(model):
        recalibrate_bn(model, [images()], path_forward(supernet, torch.device("cpu")))
        assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_recalibration_refuses_no_batches(supernet):
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_bn(supernet.model, [], path_forward(supernet, torch.device("cpu")))


# -- training: sandwich rule, distillation, resume -------------------------------------------------------------
def test_distillation_loss_looks_at_the_foreground_and_the_hardest_negatives():
    generator = torch.Generator().manual_seed(0)
    teacher = {"cls_logits": torch.randn(2, 20, 5, generator=generator),
               "bbox_regression": torch.randn(2, 20, 4, generator=generator)}
    matched = [torch.full((20,), -1), torch.full((20,), -1)]
    matched[0][[3, 7]] = 0  # two foreground anchors in image 0, none in image 1
    assert distillation_loss(teacher, teacher, matched) == 0
    student = {k: v + torch.randn(v.shape, generator=generator) for k, v in teacher.items()}
    kl = torch.nn.functional.kl_div(student["cls_logits"].log_softmax(-1), teacher["cls_logits"].log_softmax(-1),
                                    reduction="none", log_target=True).sum(-1)
    negatives = kl[0].clone()
    negatives[[3, 7]] = -1
    hardest = negatives.topk(6).values.sum()  # 3 × 2 foreground anchors; image 1 has none, so no negatives
    boxes = torch.nn.functional.smooth_l1_loss(student["bbox_regression"][0, [3, 7]],
                                               teacher["bbox_regression"][0, [3, 7]], reduction="sum")
    expected = (kl[0, [3, 7]].sum() + hardest + boxes) / 2
    torch.testing.assert_close(distillation_loss(student, teacher, matched), expected)


def _used_ops(arch) -> set[tuple[int, int, str]]:
    path = body_path(SPACE, arch)
    return {(i, j, p.op) for i, stage in enumerate(path.blocks) for j, p in enumerate(stage) if p.op != "skip"}


def test_a_sandwich_step_trains_exactly_the_ops_of_its_largest_smallest_and_random_paths():
    torch.manual_seed(0)
    supernet = SuperSSDLite(SPACE, num_classes=3, image_size=IMAGE)
    optimizer = torch.optim.SGD(supernet.model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    archs = sandwich_archs(supernet, seed=0, step=5, num_random=2)
    assert archs == sandwich_archs(supernet, seed=0, step=5, num_random=2)  # a function of (seed, step)
    assert archs[0] == extreme_arch(SPACE, True, (0, 5, 0)) and archs[1] == extreme_arch(SPACE, False, (0, 5, 1))
    before = {k: v.clone() for k, v in supernet.model.named_parameters()}
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])}]
    record = SandwichTrainer(supernet, optimizer, seed=0, num_random=2).step(5, images(2), targets)
    assert all(torch.isfinite(torch.tensor(v)) for v in record.values()) and record["distill_loss"] > 0
    used = set().union(*map(_used_ops, archs))
    for i, stage in enumerate(supernet.body.blocks[:-1]):
        for j, block in enumerate(stage):
            for op, module in block.ops.items():
                name = next(n for n, m in supernet.model.named_modules() if m is module)
                moved = any(not torch.equal(p, before[f"{name}.{k}"]) for k, p in module.named_parameters())
                assert moved == ((i, j, op) in used), (i, j, op)


@pytest.mark.slow
def test_supernet_training_resumes_exactly_and_saves_only_what_resume_needs(tmp_path):
    data = dict(synthetic_train=8, synthetic_val=4, synthetic_size=IMAGE, synthetic_dir=str(tmp_path / "synthetic"))

    def config(name: str) -> SupernetConfig:
        # every phase of the schedule: step 1 the largest path alone, step 2 one op, step 3 every op
        return SupernetConfig(output=str(tmp_path / name), data=data, steps=3, batch_size=2, img_size=IMAGE,
                              lr_warmup_steps=1, checkpoint_every=2, log_every=2, threads=1, largest_only_steps=1,
                              reference_op_steps=2)

    whole = train_supernet(config("whole"))
    # a record averages each loss over the steps that have it: step 1 has no students
    assert [set(r) for r in whole.history] == [{"step", "teacher_loss", "student_loss", "distill_loss"}] * 2
    assert all(math.isfinite(v) for r in whole.history for v in r.values())

    def crash_at_step_3(training):
        if training.step == 3:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        train_supernet(config("cut"), callback=crash_at_step_3)
    saved = torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True)
    assert saved["step"] == 2 and "optimizer" in saved
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in saved["model"])
    resumed = train_supernet(config("cut"), resume=True)
    for (key, a), b in zip(whole.supernet.model.named_parameters(), resumed.supernet.model.parameters(), strict=True):
        assert torch.equal(a, b), key
    assert resumed.history == whole.history
    final = torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True)
    assert final["step"] == 3 and "optimizer" not in final  # a finished training cannot go on
    written = (tmp_path / "cut" / CHECKPOINT_FILE).read_bytes()
    assert train_supernet(config("cut"), resume=True).step == 3  # nothing to do: the file is left as it is
    assert (tmp_path / "cut" / CHECKPOINT_FILE).read_bytes() == written  # (scores are keyed by its digest)
    with pytest.raises(ValueError, match="differ"):
        train_supernet(dataclasses.replace(config("cut"), lr=0.1), resume=True)
    with pytest.raises(FileExistsError):
        train_supernet(config("cut"))


# -- scoring ---------------------------------------------------------------------------------------------------
def test_score_noise_separates_the_architecture_effect_from_the_subset_noise():
    rng = np.random.default_rng(0)
    arch_effect, noise = rng.normal(0, 1, (14, 1)), rng.normal(0, 0.1, (14, 6))
    clear = score_noise(10 + arch_effect + rng.normal(0, 1, (1, 6)) + noise)
    assert clear["F"] > 50 and clear["p"] < 1e-6 and clear["split_half_spearman"] > 0.9
    assert 0.5 < clear["sd_arch"] < 1.5 and 0.05 < clear["sd_noise"] < 0.15
    flat = score_noise(10 + rng.normal(0, 1, (14, 6)))
    assert flat["F"] < 3 and flat["p"] > 0.01
    with pytest.raises(ValueError, match="≥ 2 architectures"):
        score_noise(np.ones((14, 1)))


def test_image_subsets_are_disjoint_and_cover_the_split():
    parts = image_subsets(list(range(1, 20)), 6)
    assert sorted(i for p in parts for i in p) == list(range(1, 20)) and {len(p) for p in parts} <= {3, 4}
    with pytest.raises(ValueError, match="subsets"):
        image_subsets([1, 2, 3], 4)


def test_an_architecture_score_is_its_held_out_ap_and_does_not_depend_on_what_was_scored_before(tmp_path):
    root = make_synthetic_coco(tmp_path / "data", 4, 6, IMAGE, seed=0)
    held_out = CocoDetection(annotation_path(root, "val"), image_dir(root, "val"))
    loader = torch.utils.data.DataLoader(held_out, batch_size=3, collate_fn=collate)
    torch.manual_seed(0)
    supernet = SuperSSDLite(SPACE, held_out.num_classes, IMAGE)
    calibration = [images(2, seed=5)]
    first = score_architecture(supernet, ARCHS["random_0"], calibration, loader, torch.device("cpu"))
    score_architecture(supernet, ARCHS["largest"], calibration, loader, torch.device("cpu"))
    assert score_architecture(supernet, ARCHS["random_0"], calibration, loader, torch.device("cpu")) == first
    # The score is that of the stand-alone detector with the path's weights and recalibrated statistics:
    # the same detections, so the same AP.
    detector = supernet.stand_alone(ARCHS["random_0"])
    recalibrate_bn(detector, calibration, lambda batch: head_of(detector, batch))
    expected, _ = predict(detector, loader, torch.device("cpu"), progress=False)
    got = predict_architecture(supernet, ARCHS["random_0"], calibration, loader, torch.device("cpu"))
    assert sorted(got) == sorted(expected) == sorted(held_out.coco.getImgIds())
    for image_id, records in expected.items():
        assert len(got[image_id]) == len(records) > 0
        for a, b in zip(got[image_id], records, strict=True):
            assert a["category_id"] == b["category_id"]
            np.testing.assert_allclose(a["bbox"] + [a["score"]], b["bbox"] + [b["score"]], rtol=1e-3, atol=1e-3)
    assert 0 <= first <= 100 and first == box_ap(held_out, expected)


def test_a_path_of_another_shape_or_no_path_is_refused(supernet):
    body = SuperBody(supernet.body.bounds)
    with pytest.raises(RuntimeError, match="no path selected"):
        body(torch.zeros(1, 3, IMAGE, IMAGE))
    path = body_path(SPACE, ARCHS["random_0"])
    with pytest.raises(ValueError, match="blocks per stage"):
        body.set_path(dataclasses.replace(path, blocks=path.blocks[:-1]))


def test_supernet_settings_and_checkpoints_that_cannot_resume_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lr"):
        SupernetConfig(output=str(tmp_path), lr=0.0)
    with pytest.raises(ValueError, match="num_random"):
        SupernetConfig(output=str(tmp_path), num_random=-1)
    config = SupernetConfig(output=str(tmp_path), steps=4, img_size=IMAGE)
    training = SupernetTraining(config, num_classes=3)
    training.step = 2
    state = training.state_dict()
    other = SupernetTraining(config, num_classes=3)
    with pytest.raises(CheckpointError, match="trained space"):
        other.load_state_dict({**state, "space": "0" * 16})
    with pytest.raises(CheckpointError, match="do not match"):
        other.load_state_dict({**state, "model": {k: v for k, v in state["model"].items() if "stem" not in k}})
    with pytest.raises(CheckpointError, match="no optimizer state"):
        other.load_state_dict({k: v for k, v in state.items() if k != "optimizer"})
    other.load_state_dict(state)
    assert other.step == 2


@pytest.mark.parametrize("op", ["repghost", "ibn", "fused", "tucker"])
@pytest.mark.parametrize(("in_chs", "mid", "out", "k", "stride", "se"),
                         [(16, 40, 24, 5, 2, True), (12, 28, 12, 3, 1, False), (16, 48, 20, 3, 1, True)])
def test_super_op_is_the_space_block_make_block_builds(op, in_chs, mid, out, k, stride, se):
    """Each op against the block the space's models are made of (``make_block``: ReLU, mid_chs, ranks)."""
    block = make_block(op, in_chs, mid, out, k, stride, se and op != "tucker")
    bounds = BlockBounds(16, 24, {"repghost": 48, "ibn": 48, "fused": 48, "tucker": (12, 12)}, stride=stride,
                         act=nn.ReLU)
    super_block = randomize(SuperBlock(bounds), seed=3)
    rank = tucker_rank(mid)
    path = (OpPath(op, out, rank, k, False, rank) if op == "tucker" else OpPath(op, out, mid, k, se))
    block.load_state_dict(sliced_state_dict(super_block.ops[op], block), strict=True)
    x = torch.randn(2, in_chs, 16, 16, generator=torch.Generator().manual_seed(2))
    for training in (True, False):
        super_block.train(training), block.train(training)
        with torch.no_grad():
            torch.testing.assert_close(super_block(x, path), block(x), rtol=1e-5, atol=1e-5)


def test_reference_op_steps_train_only_the_repghost_ops_and_keep_the_rest_of_each_path():
    from repghost.search.superspace import with_reference_op

    torch.manual_seed(0)
    supernet = SuperSSDLite(SPACE, num_classes=3, image_size=IMAGE)
    archs = sandwich_archs(supernet, seed=0, step=5, num_random=2)
    early = sandwich_archs(supernet, seed=0, step=5, num_random=2, reference_share=1.0)
    assert early == [with_reference_op(SPACE, a) for a in archs]
    for arch, fixed in zip(archs, early, strict=True):
        for name, was, now in zip(SPACE.decision_names, arch, fixed, strict=True):
            if name.endswith("_op"):  # every real op the RepGhost bottleneck, skips kept
                assert now == ("skip" if was == "skip" else "repghost")
        assert SPACE.widths(fixed) == SPACE.widths(arch)
    assert any(a != f for a, f in zip(archs, early, strict=True))  # the draw had other ops to replace
    optimizer = torch.optim.SGD(supernet.model.parameters(), lr=0.01)
    before = {k: v.clone() for k, v in supernet.model.named_parameters()}
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])}]
    SandwichTrainer(supernet, optimizer, seed=0, num_random=2, reference_op_steps=6).step(5, images(2), targets)
    changed = {k for k, v in supernet.model.named_parameters() if not torch.equal(v, before[k])}
    body_ops = {k.split(".ops.")[1].split(".")[0] for k in changed if ".ops." in k}
    assert body_ops == {"repghost"}


def test_largest_only_steps_train_the_largest_path_alone():
    torch.manual_seed(0)
    supernet = SuperSSDLite(SPACE, num_classes=3, image_size=IMAGE)
    (largest,) = sandwich_archs(supernet, seed=0, step=5, num_random=2, largest_only=True)
    assert largest == extreme_arch(SPACE, True, (0, 5, 0))
    optimizer = torch.optim.SGD(supernet.model.parameters(), lr=0.01)
    before = {k: v.clone() for k, v in supernet.model.named_parameters()}
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])}]
    record = SandwichTrainer(supernet, optimizer, seed=0, num_random=2, largest_only_steps=6).step(5, images(2),
                                                                                                  targets)
    assert set(record) == {"teacher_loss"}  # no students: no student or distillation loss is made up
    for i, stage in enumerate(supernet.body.blocks[:-1]):
        for j, block in enumerate(stage):
            for op, module in block.ops.items():
                name = next(n for n, m in supernet.model.named_modules() if m is module)
                moved = any(not torch.equal(p, before[f"{name}.{k}"]) for k, p in module.named_parameters())
                assert moved == ((i, j, op) in _used_ops(largest)), (i, j, op)


def test_the_reference_op_share_ramps_down_and_replaces_that_share_of_ops():
    from repghost.search.sandwich import reference_share
    from repghost.search.superspace import with_reference_op

    assert [reference_share(s, 4, 3) for s in (0, 3)] == [1.0, 1.0]
    assert [reference_share(s, 4, 3) for s in (4, 5, 6)] == pytest.approx([0.75, 0.5, 0.25])
    assert [reference_share(s, 4, 3) for s in (7, 100)] == [0.0, 0.0]
    assert reference_share(0, 0, 0) == 0.0
    archs = [SPACE.sample(9, i) for i in range(200)]
    real = kept = 0
    for i, arch in enumerate(archs):
        mixed = with_reference_op(SPACE, arch, 0.5, (9, i))
        assert mixed == with_reference_op(SPACE, arch, 0.5, (9, i))  # a function of its seed
        for name, was, now in zip(SPACE.decision_names, arch, mixed, strict=True):
            if name.endswith("_op") and was not in ("skip", "repghost"):
                real += 1
                kept += now == was
                assert now in (was, "repghost")
    assert 0.4 < kept / real < 0.6


def test_a_checkpoint_written_before_a_setting_existed_resumes_with_its_default():
    from repghost.search.supertrain import saved_settings

    config = SupernetConfig(output="x", steps=3).to_dict()
    older = {k: v for k, v in config.items() if k not in ("op_ramp_steps", "largest_only_steps")}
    assert saved_settings({"config": older}) == config
    changed = {**older, "steps": 9}
    assert saved_settings({"config": changed})["steps"] == 9  # a setting it recorded is kept as recorded
