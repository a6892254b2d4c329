"""COCO-format detection data: the synthetic set, and every kind of bad annotation."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from repghost.detection.data import CocoDetection, DetectionDataError
from repghost.detection.synthetic import (
    BENCHMARK_SPLITS,
    annotation_path,
    image_dir,
    make_detection_benchmark,
    make_synthetic_coco,
)


def digest(root) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_synthetic_set_is_deterministic_and_valid(tmp_path):
    kwargs = dict(num_train=6, num_val=3, image_size=64, min_object=12, max_object=28)
    a = make_synthetic_coco(tmp_path / "a", seed=3, **kwargs)
    b = make_synthetic_coco(tmp_path / "b", seed=3, **kwargs)
    c = make_synthetic_coco(tmp_path / "c", seed=4, **kwargs)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)

    dataset = CocoDetection(annotation_path(a, "train"), image_dir(a, "train"), masks=True)
    assert len(dataset) == 6 and dataset.num_classes == 4
    assert dataset.report.clipped_boxes == dataset.report.degenerate_boxes == 0
    total = 0
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
        boxes, masks = target["boxes"], target["masks"]
        assert len(boxes) == len(masks) == len(target["labels"]) >= 1
        total += len(boxes)
        for box, mask in zip(boxes, masks, strict=True):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            # The box is the mask's tight bounding box (pixel edges).
            assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    anns = json.loads(annotation_path(a, "train").read_text())["annotations"]
    assert total == len(anns)
    assert all(a_["area"] == dataset.coco.annToMask(a_).sum() for a_ in anns)


def write_dataset(root, images, annotations, files=None, size=(32, 24)):
    """A COCO dataset whose image files are ``files`` (default: every listed image)."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    for info in images:
        if files is None or info["file_name"] in files:
            Image.new("RGB", size, (90, 120, 150)).save(root / "img" / info["file_name"])
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 7, "name": "thing"}, {"id": 9, "name": "other"}]}
    (root / "ann.json").write_text(json.dumps(data))
    return root / "ann.json", root / "img"


def image(i):
    return {"id": i, "file_name": f"{i}.png", "width": 32, "height": 24}


def ann(i, image_id, bbox, category=7, **extra):
    return {"id": i, "image_id": image_id, "category_id": category, "bbox": bbox, "iscrowd": 0, **extra}


def test_missing_image_files_error_or_skip(tmp_path):
    ann_file, img_dir = write_dataset(tmp_path, [image(1), image(2), image(3)],
                                      [ann(1, 1, [1, 1, 5, 5]), ann(2, 2, [1, 1, 5, 5]), ann(3, 3, [2, 2, 4, 4])],
                                      files={"1.png", "3.png"})
    with pytest.raises(DetectionDataError, match=r"1 of 3 image files .* missing .*2\.png.*--skip-missing-images"):
        CocoDetection(ann_file, img_dir)
    dataset = CocoDetection(ann_file, img_dir, skip_missing_images=True)
    assert dataset.report.missing_images == ["2.png"]
    assert dataset.ids == [1, 3] and dataset.report.annotations == 2
    assert "1 missing image files skipped" in dataset.report.summary()


def test_bad_boxes_are_clipped_or_skipped_and_counted(tmp_path):
    annotations = [
        ann(1, 1, [-4, 2, 10, 6]),          # reaches left of the image: clipped to x=0
        ann(2, 1, [25, 20, 20, 10]),        # reaches past the right and bottom edges: clipped
        ann(3, 1, [40, 30, 5, 5]),          # entirely outside: skipped
        ann(4, 1, [3, 3, 0, 5]),            # zero width: skipped
        ann(5, 1, [3, 3, 4, -1]),           # negative height: skipped
        ann(6, 1, [5, 5, 8, 8], iscrowd=1),  # crowd: evaluation only
        ann(7, 1, [10, 10, 4, 4], category=9),
    ]
    ann_file, img_dir = write_dataset(tmp_path, [image(1)], annotations)
    dataset = CocoDetection(ann_file, img_dir, train=True)
    report = dataset.report
    assert (report.clipped_boxes, report.outside_boxes, report.degenerate_boxes, report.crowd_annotations) == \
        (2, 1, 2, 1)
    assert report.annotations == 4  # 2 clipped + crowd + the good one
    _, target = CocoDetection(ann_file, img_dir)[0]
    assert target["boxes"].tolist() == [[0, 2, 6, 8], [25, 20, 32, 24], [10, 10, 14, 14]]
    assert target["labels"].tolist() == [1, 1, 2]  # category ids 7, 9 → labels 1, 2
    assert dataset.label_to_category(2) == 9


def test_images_without_annotations(tmp_path):
    ann_file, img_dir = write_dataset(tmp_path, [image(1), image(2), image(3)],
                                      [ann(1, 1, [1, 1, 5, 5]), ann(2, 3, [3, 3, 0, 0])])
    train = CocoDetection(ann_file, img_dir, train=True)
    assert train.ids == [1]  # image 3's only box is degenerate: nothing to learn from it either
    assert train.report.images_without_annotations == 2 and train.report.dropped_images == 2
    val = CocoDetection(ann_file, img_dir, train=False)
    assert val.ids == [1, 2, 3] and val.report.dropped_images == 0
    _, target = val[1]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


@pytest.mark.parametrize("annotations,message", [
    ([ann(1, 99, [1, 1, 5, 5])], "annotation 1 refers to unknown image id 99"),
    ([ann(1, 1, [1, 1, 5, 5], category=3)], "annotation 1 has unknown category id 3"),
    ([ann(1, 1, [1, 1, 5])], r"annotation 1 has a malformed bbox \[1, 1, 5\]"),
])
def test_inconsistent_annotations_are_errors(tmp_path, annotations, message):
    ann_file, img_dir = write_dataset(tmp_path, [image(1)], annotations)
    with pytest.raises(DetectionDataError, match=message):
        CocoDetection(ann_file, img_dir)


def test_unreadable_files_name_their_path(tmp_path):
    ann_file, img_dir = write_dataset(tmp_path, [image(1), image(2)], [ann(1, 1, [1, 1, 5, 5])])
    (img_dir / "2.png").write_bytes(b"not a png")
    dataset = CocoDetection(ann_file, img_dir)
    with pytest.raises(OSError, match=r"cannot read image .*2\.png"):
        dataset.load_image(2)
    assert dataset[1] == (None, str(img_dir / "2.png"))   # skipped by the loaders, its path reported
    Image.new("RGB", (10, 10)).save(img_dir / "2.png")
    with pytest.raises(DetectionDataError, match=r"2\.png is 10x10 but .* says 32x24"):
        dataset[1]
    ann_file.write_text("{not json")
    with pytest.raises(DetectionDataError, match="not valid JSON"):
        CocoDetection(ann_file, img_dir)
    ann_file.write_text(json.dumps({"images": []}))
    with pytest.raises(DetectionDataError, match="not a COCO annotation file: no annotations, categories"):
        CocoDetection(ann_file, img_dir)
    with pytest.raises(DetectionDataError, match="annotation file not found"):
        CocoDetection(tmp_path / "nope.json", img_dir)


def test_masks_need_segmentations(tmp_path):
    ann_file, img_dir = write_dataset(tmp_path, [image(1)], [ann(1, 1, [1, 1, 5, 5])])
    with pytest.raises(DetectionDataError, match="1 annotations have no segmentation"):
        CocoDetection(ann_file, img_dir, masks=True)


def test_horizontal_flip_moves_boxes_with_pixels(tmp_path):
    square = [[2, 3, 8, 3, 8, 7, 2, 7]]
    ann_file, img_dir = write_dataset(tmp_path, [image(1)], [ann(1, 1, [2, 3, 6, 4], segmentation=square)])
    pixels = np.zeros((24, 32, 3), np.uint8)
    pixels[3:7, 2:8] = 255
    Image.fromarray(pixels).save(img_dir / "1.png")
    dataset = CocoDetection(ann_file, img_dir, train=True, masks=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        img, target = dataset[0]
        x1, y1, x2, y2 = (int(v) for v in target["boxes"][0])
        assert img[0, y1:y2, x1:x2].min() == 1 and img[0].sum() == (x2 - x1) * (y2 - y1)
        assert torch.equal(target["masks"][0].bool(), img[0] > 0.5)
        seen.add(x1)
    assert seen == {2, 24}  # both orientations happened


# -- the detection benchmark ----------------------------------------------------------------------
TINY_BENCH = dict(num_train=6, num_search=3, num_test=4, image_size=64, min_object=12, max_object=28)


def split_pixels(root, split) -> list[bytes]:
    return [hashlib.sha256(np.asarray(Image.open(p)).tobytes()).digest()
            for p in sorted(image_dir(root, split).glob("*.png"))]


def test_benchmark_splits_are_disjoint_deterministic_and_independent(tmp_path):
    a = make_detection_benchmark(tmp_path / "a", seed=3, **TINY_BENCH)
    b = make_detection_benchmark(tmp_path / "b", seed=3, **TINY_BENCH)
    assert digest(a) == digest(b)
    assert digest(make_detection_benchmark(tmp_path / "c", seed=4, **TINY_BENCH)) != digest(a)
    pixels = {split: split_pixels(a, split) for split in BENCHMARK_SPLITS}
    assert [len(pixels[s]) for s in BENCHMARK_SPLITS] == [6, 3, 4]
    every = [h for split in BENCHMARK_SPLITS for h in pixels[split]]
    assert len(set(every)) == len(every)  # no image twice, within or across splits
    for split, count in zip(BENCHMARK_SPLITS, (6, 3, 4), strict=True):
        dataset = CocoDetection(annotation_path(a, split), image_dir(a, split))
        assert len(dataset) == count and dataset.num_classes == 4
    # A split is the same whatever the other splits' sizes: a larger train set leaves test untouched.
    bigger = make_detection_benchmark(tmp_path / "d", seed=3, **{**TINY_BENCH, "num_train": 9})
    assert split_pixels(bigger, "test") == pixels["test"]
    assert split_pixels(bigger, "train")[:6] == pixels["train"]
    assert annotation_path(bigger, "test").read_bytes() != annotation_path(a, "test").read_bytes()  # ann ids move


def test_benchmark_reuses_regenerates_another_version_and_refuses_other_files(tmp_path, monkeypatch):
    root = make_detection_benchmark(tmp_path / "b", **TINY_BENCH)
    stamp = annotation_path(root, "train").stat().st_mtime_ns
    make_detection_benchmark(root, **TINY_BENCH)  # the same: reused as is
    assert annotation_path(root, "train").stat().st_mtime_ns == stamp

    make_detection_benchmark(root, **{**TINY_BENCH, "num_train": 4})  # another version: cleared, no stale image
    assert len(list(image_dir(root, "train").glob("*.png"))) == 4
    assert digest(root) == digest(make_detection_benchmark(tmp_path / "fresh", **{**TINY_BENCH, "num_train": 4}))

    # A generation cut short is recognized as the benchmark's own and regenerated whole.
    from repghost.detection import synthetic

    real = synthetic._write_split
    monkeypatch.setattr(synthetic, "_write_split", lambda root, split, *a: (_ for _ in ()).throw(KeyboardInterrupt)
                        if split == "test" else real(root, split, *a))
    with pytest.raises(KeyboardInterrupt):
        make_detection_benchmark(tmp_path / "cut", **TINY_BENCH)
    monkeypatch.setattr(synthetic, "_write_split", real)
    assert digest(make_detection_benchmark(tmp_path / "cut", **TINY_BENCH)) == digest(
        make_detection_benchmark(tmp_path / "whole", **TINY_BENCH))

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no detection benchmark"):
        make_detection_benchmark(other, **TINY_BENCH)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="every split needs"):
        make_detection_benchmark(tmp_path / "bad", **{**TINY_BENCH, "num_test": 0})
    assert not (tmp_path / "bad").exists()
