import random

import numpy as np
import pytest
import torch

from repghost.data import DataError, SampleDataset, build_datasets, build_loader, build_transform, collate_skipping
from repghost.data.datasets import digits
from repghost.data.loader import SkipSampler
from repghost.train import resolve_config
from train_helpers import make_image_folder


def test_digits_split_is_fixed_stratified_and_disjoint():
    train, val = digits("train"), digits("val")
    assert (len(train), len(val)) == (1437, 360)
    assert train.classes == val.classes == [str(i) for i in range(10)]
    assert np.bincount(val.targets).min() >= 35  # stratified: every digit ~36 times
    again = digits("val")
    assert again.targets == val.targets
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(again.items, val.items, strict=True))
    first = np.asarray(train.items[0])
    assert first.shape == (8, 8, 3) and first.dtype == np.uint8 and first.max() > 200
    train_pixels = {np.asarray(x).tobytes() for x in train.items}
    # Disjoint by index; identical-looking digits may exist, but not most of them.
    assert sum(np.asarray(x).tobytes() in train_pixels for x in val.items) < 10


def test_digits_transforms_upsample_to_three_channels():
    cfg = resolve_config("digits")
    raw = digits("val")
    x, y, bad = SampleDataset(raw, build_transform(cfg, is_training=False))[0]
    assert x.shape == (3, 32, 32) and bad == "" and y == raw.targets[0]
    x_train, _, _ = SampleDataset(raw, build_transform(cfg, is_training=True))[0]
    assert x_train.shape == (3, 32, 32)


def test_augmentation_depends_only_on_seed_epoch_index_and_leaves_global_rng_alone():
    cfg = resolve_config("repghostnet_100", img_size=32)
    ds = SampleDataset(digits("train"), build_transform(cfg, is_training=True), seed=3)
    torch.manual_seed(123)
    random.seed(5)
    before = torch.get_rng_state(), random.getstate()
    a = ds[7][0]
    ds[1], ds[2]  # other samples in between change nothing
    assert torch.equal(a, ds[7][0])
    assert torch.equal(before[0], torch.get_rng_state()) and before[1] == random.getstate()
    ds.set_epoch(1)
    assert not torch.equal(a, ds[7][0])  # a new epoch, new augmentation


def test_skip_sampler_resumes_inside_an_epoch():
    data = list(range(50))
    full = SkipSampler(data, shuffle=True, seed=4)
    full.set_epoch(2)
    order = list(full)
    part = SkipSampler(data, shuffle=True, seed=4)
    part.set_epoch(2)
    part.set_start(16)
    assert list(part) == order[16:] and len(part) == 34


def test_image_folder_loads(tmp_path):
    root = make_image_folder(tmp_path / "d")
    sets = build_datasets(str(root))
    assert len(sets["train"]) == 36 and len(sets["val"]) == 12
    assert sets["train"].classes == ["class_0", "class_1", "class_2"]


def test_missing_split_is_a_clear_error(tmp_path):
    root = make_image_folder(tmp_path / "d")
    for f in (root / "val").rglob("*.png"):
        f.unlink()
    for d in sorted((root / "val").iterdir()):
        d.rmdir()
    (root / "val").rmdir()
    with pytest.raises(DataError, match=r"missing split: .*val"):
        build_datasets(str(root))


def test_empty_class_folder_is_a_clear_error(tmp_path):
    root = make_image_folder(tmp_path / "d")
    (root / "train" / "class_9").mkdir()
    with pytest.raises(DataError, match=r"class_9 \(empty\)"):
        build_datasets(str(root))


def test_directory_without_images_is_a_clear_error(tmp_path):
    root = make_image_folder(tmp_path / "d")
    notes = root / "train" / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"notes \(1 files, none an image\)"):
        build_datasets(str(root))
    flat = tmp_path / "flat" / "train"
    flat.mkdir(parents=True)
    (flat / "a.txt").write_text("x")
    with pytest.raises(DataError, match="no class folders"):
        build_datasets(str(tmp_path / "flat"))


def test_train_and_val_classes_must_match(tmp_path):
    root = make_image_folder(tmp_path / "d")
    (root / "val" / "class_2").rename(root / "val" / "class_x")
    with pytest.raises(DataError, match="classes differ"):
        build_datasets(str(root))


def test_corrupt_image_is_skipped_with_its_path(tmp_path):
    root = make_image_folder(tmp_path / "d")
    bad = root / "val" / "class_1" / "001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cfg = resolve_config("digits", img_size=16)
    ds = SampleDataset(build_datasets(str(root))["val"], build_transform(cfg, is_training=False))
    index = ds.raw.items.index(str(bad))
    assert ds[index][0] is None and ds[index][2] == str(bad)
    images, targets, paths = collate_skipping([ds[0], ds[index], ds[1]])
    assert images.shape == (2, 3, 16, 16) and targets.tolist() == [0, 0] and paths == [str(bad)]
    batches = list(build_loader(ds, batch_size=5, train=False))
    assert sum(len(b[1]) for b in batches) == 11
    assert [p for b in batches for p in b[2]] == [str(bad)]
