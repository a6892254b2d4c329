"""Detector export: the fixed-size graph plus Python post-processing gives torchvision's detections;
``repghost export`` of SSDLite (every backbone family) and RetinaNet, checked on real photos and refused
when the file disagrees; ``det-eval`` of the exported files gives the checkpoint's AP; bad input refused."""

import copy
import json

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import to_tensor

from repghost import create_model
from repghost.checkpoint import save_checkpoint
from repghost.cli import main
from repghost.costmodel.space import SearchSpace
from repghost.data.photos import sample_photos
from repghost.deploy import detector_export
from repghost.deploy.detector_export import export_detector
from repghost.deploy.detector_files import DETECTION, TASK_KEY, open_detector_file, read_props
from repghost.deploy.graph_runner import RuntimeChoiceError
from repghost.detection import DetectorConfig, build_detector, reparameterize_detector
from repghost.detection.engine import make_train_config, train_detector
from repghost.detection.files import save_detector
from repghost.detection.graph import DetectorGraph, postprocess, postprocess_of, prepare, preprocess_of
from test_detection import spread_predictions

from conftest import randomize_bn

SIZE = 64
CATEGORIES = [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "ellipse"}, {"id": 3, "name": "triangle"}]


def small_detector(model: str = "ssdlite", backbone: str = "repghostnet_050") -> torch.nn.Module:
    """A detector with spread BN statistics and head outputs, so that it is far from constant (some
    backbones, mobiledet_cpu among them, output a constant at initialization)."""
    torch.manual_seed(0)
    config = DetectorConfig(model=model, backbone=backbone, num_classes=4, fpn_channels=16, min_size=SIZE,
                            max_size=SIZE)
    return spread_predictions(randomize_bn(build_detector(config).eval()))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """SSDLite on RepGhostNet 0.5x trained for a few steps on the synthetic set (scores far from ties)."""
    out = tmp_path_factory.mktemp("det") / "run"
    threads = torch.get_num_threads()
    try:
        train_detector(make_train_config(
            output=str(out), model="ssdlite", synthetic_dir=str(out.parent / "synthetic"), synthetic_train=24,
            synthetic_val=8, synthetic_size=SIZE, min_size=SIZE, max_size=SIZE, batch_size=8, workers=0,
            epochs=4, lr_steps=[4], warmup_iters=2, eval_every=0, threads=1))
    finally:
        torch.set_num_threads(threads)
    return out / "last.pt"


@pytest.mark.parametrize("model", ["ssdlite", "retinanet"])
def test_graph_and_python_postprocessing_give_torchvisions_detections(model):
    """On real photos (not square: RetinaNet pads them), graph + post-processing == the torchvision model."""
    detector = reparameterize_detector(small_detector(model))
    images = [to_tensor(p) for p in sample_photos()]
    with torch.no_grad():
        expected = detector(images)
    graph = DetectorGraph(detector, SIZE).eval()
    transform = preprocess_of(detector).transform()
    batch, sizes, original = prepare(images, transform)
    with torch.no_grad():
        got = postprocess(graph(batch), postprocess_of(detector, graph), sizes, original, transform)
    for a, b in zip(expected, got, strict=True):
        assert len(a["boxes"]) > 10
        assert torch.equal(a["labels"], b["labels"])
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3) and torch.allclose(a["scores"], b["scores"], atol=1e-6)


def test_export_to_onnx_carries_its_contract_and_det_eval_gives_the_checkpoints_ap(trained, tmp_path, capsys):
    out = tmp_path / "det.onnx"
    assert main(["export", str(trained), str(out), "--exporter", "legacy"]) == 0
    assert "vs PyTorch on 3 photos" in capsys.readouterr().out
    props = read_props(out)
    assert props[TASK_KEY] == DETECTION and props["repghost_model"] == "ssdlite"
    assert props["repghost_backbone"] == "repghostnet_050" and props["repghost_input_size"] == str(SIZE)
    assert json.loads(props["repghost_classes"]) == [c["name"] for c in CATEGORIES]
    post = json.loads(props["repghost_postprocess"])
    assert post["nms_thresh"] == 0.55 and post["detections_per_img"] == 300 and post["score_thresh"] == 0.001
    detector = open_detector_file(out)
    assert (detector.task, detector.format, detector.runtime, detector.input_size) == (
        "detection", "onnx", "onnxruntime", SIZE)
    assert detector.class_names == ["__background__", "rectangle", "ellipse", "triangle"]
    assert detector.preprocess.resize == "stretch"
    assert detector.detector_config.deploy  # the re-parameterized form

    assert main(["det-eval", str(trained), "--workers", "0", "--output", str(tmp_path / "ref.json")]) == 0
    assert main(["det-eval", str(out), "--workers", "0", "--output", str(tmp_path / "onnx.json")]) == 0
    ref, got = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ref", "onnx"))
    assert ref["bbox"]["AP50"] > 5, "the comparison needs a detector that finds something"
    assert got["bbox"]["AP"] == pytest.approx(ref["bbox"]["AP"], abs=0.1)
    assert got["num_images"] == ref["num_images"] == 8


@pytest.mark.parametrize("fmt, suffix", [
    pytest.param("openvino", ".xml", marks=pytest.mark.slow),
    pytest.param("litert", ".tflite", marks=pytest.mark.slow),  # the converter alone takes a minute
])
def test_edge_formats_give_the_checkpoints_ap(trained, tmp_path, fmt, suffix):
    out = tmp_path / f"det{suffix}"
    assert main(["export", str(trained), str(out)]) == 0
    assert read_props(out)[TASK_KEY] == DETECTION  # the sidecar
    assert main(["det-eval", str(trained), "--workers", "0", "--output", str(tmp_path / "ref.json")]) == 0
    assert main(["det-eval", str(out), "--workers", "0", "--output", str(tmp_path / "got.json")]) == 0
    ref, got = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ref", "got"))
    assert got["bbox"]["AP"] == pytest.approx(ref["bbox"]["AP"], abs=0.1)


def test_the_check_refuses_a_file_that_disagrees_and_removes_it(trained, tmp_path, monkeypatch, capsys):
    """The file written is not the model checked (a class head's weights scaled by 1.1): the export fails,
    nothing stays."""
    write = detector_export.write_graph

    def write_another(graph, out, *args, **kwargs):
        other = copy.deepcopy(graph)
        with torch.no_grad():
            other.head.classification_head.module_list[0][1].weight.mul_(1.1)
        return write(other, out, *args, **kwargs)

    monkeypatch.setattr(detector_export, "write_graph", write_another)
    out = tmp_path / "det.onnx"
    assert main(["export", str(trained), str(out), "--exporter", "legacy"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("repghost export: error: onnx output differs from PyTorch") and "\n" not in err
    assert "scores max abs error" in err and "FAIL" in err
    assert list(tmp_path.iterdir()) == []


# mobiledet_cpu (constant at initialization, so the case the spread weights matter for) in the quick run; the
# others, each 10-40 s on a 2-core machine, with the slow tests (repghostnet_050 SSDLite: the trained tests above).
SLOW = pytest.mark.slow
CASES = [pytest.param("ssdlite", "repghostnet_050", marks=SLOW), pytest.param("ssdlite", "ghostnet_050", marks=SLOW),
         ("ssdlite", "mobiledet_cpu"), pytest.param("ssdlite", "searched", marks=SLOW),
         pytest.param("retinanet", "repghostnet_050", marks=SLOW)]


@pytest.mark.parametrize("model, backbone", CASES)
def test_every_backbone_and_retinanet_export(model, backbone, tmp_path):
    if backbone == "searched":
        space = SearchSpace()
        ops = [n for n in space.choice_names if n.endswith(("k3_e4", "k5_e8", "r25_75"))]
        arch = tuple(ops[i % len(ops)] for i in range(space.num_layers))
        backbone = str(tmp_path / "arch.json")
        (tmp_path / "arch.json").write_text(json.dumps(space.arch_to_json(arch)))
    detector = small_detector(model, backbone)
    save_detector(detector, tmp_path / "det.pt", CATEGORIES)
    report = export_detector(tmp_path / "det.pt", tmp_path / "det.onnx", "onnx", exporter="legacy", log=lambda m: None)
    assert report.comparison.ok and report.comparison.scores.scale > 0.05  # far from a constant output
    opened = open_detector_file(tmp_path / "det.onnx")
    with torch.no_grad():
        expected = reparameterize_detector(detector)([to_tensor(p) for p in sample_photos()])
    got = opened(sample_photos())  # PIL images go in as they are
    for a, b in zip(expected, got, strict=True):
        # The best scores agree (this untrained detector gives many equal scores, which NMS may then keep in
        # another order or set: the graph's outputs themselves are compared by the export's check above).
        assert len(a["boxes"]) > 10 and torch.allclose(a["scores"][:10], b["scores"][:10], atol=1e-5)


def test_mask_rcnn_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys):
    save_detector(small_detector("maskrcnn"), tmp_path / "mask.pt", CATEGORIES)
    for out in ("m.onnx", "m.xml", "m.tflite"):
        assert main(["export", str(tmp_path / "mask.pt"), str(tmp_path / out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("repghost export: error: Mask R-CNN cannot be exported: ") and "\n" not in err
    # Nor does any detector go to TorchScript, or take a classifier's flags.
    save_detector(small_detector(), tmp_path / "ssd.pt", CATEGORIES)
    for args in (["m.pt"], ["m.onnx", "--mean", "0.5", "0.5", "0.5"], ["m.tflite", "--int8"]):
        assert main(["export", str(tmp_path / "ssd.pt"), str(tmp_path / args[0]), *args[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("repghost export: error: ") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.pt", "ssd.pt"]


def test_a_classifier_given_to_det_eval_is_refused_in_one_line(tmp_path, capsys):
    onnx = tmp_path / "cls.onnx"
    assert main(["export", "repghostnet_050", str(onnx), "--img-size", "32", "--exporter", "legacy"]) == 0
    capsys.readouterr()
    assert main(["det-eval", str(onnx)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("repghost det-eval: error: ") and "holds a classifier" in err and "\n" not in err
    assert "repghost eval" in err  # names the command that takes it
    ckpt = tmp_path / "cls.safetensors"
    save_checkpoint(create_model("repghostnet_050", num_classes=10), ckpt)
    assert main(["det-eval", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a classifier" in err and "not a detector" in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cls.onnx", "cls.safetensors"]


def test_a_detector_given_to_eval_is_refused_in_one_line(trained, tmp_path, capsys):
    out = tmp_path / "det.onnx"
    export_detector(trained, out, "onnx", exporter="legacy", log=lambda m: None)
    for path in (out, trained):
        assert main(["eval", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("repghost eval: error: ") and "det-eval" in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.onnx"]


@pytest.mark.parametrize("fmt, suffix", [
    ("onnx", ".onnx"),
    pytest.param("openvino", ".xml", marks=pytest.mark.slow),
    pytest.param("litert", ".tflite", marks=pytest.mark.slow),
    pytest.param("mnn", ".mnn", marks=pytest.mark.slow),
    pytest.param("ncnn", ".ncnn.param", marks=pytest.mark.slow),
])
def test_predict_and_the_runner_on_an_exported_detector_give_the_files_own_detections(trained, tmp_path, fmt,
                                                                                       suffix):
    """``repghost.predict`` on an exported file of every installed format (through
    :func:`repghost.open_model`) finds on each real photo what the file's own exact path finds: the same
    boxes, scores and labels."""
    import repghost
    from repghost.deploy.edge import EDGE_RUNTIMES, MissingRuntimeError

    if fmt in EDGE_RUNTIMES:
        try:
            EDGE_RUNTIMES[fmt].require(export=True)
        except MissingRuntimeError:
            pytest.skip(f"{fmt} is not installed")
    out = tmp_path / f"det{suffix}"
    export_detector(str(trained), out, fmt, exporter="legacy")
    runner = repghost.open_model(out)
    assert (runner.task, runner.format, runner.input_size) == ("detection", fmt, SIZE)
    assert runner.class_names == ["__background__", "rectangle", "ellipse", "triangle"]
    photos = tmp_path / "photos"
    photos.mkdir()
    images = sample_photos()
    for i, photo in enumerate(images):
        photo.save(photos / f"{i}.png")
    report = repghost.predict(out, [str(photos)], conf=0.0, max_det=300, log=None, progress=False)
    expected = open_detector_file(out)([to_tensor(p) for p in images])
    records = sorted(report.records, key=lambda r: r["source"])
    assert len(records) == len(images)
    for record, want in zip(records, expected, strict=True):
        got = sorted(record["detections"], key=lambda d: -d["score"])[:20]
        assert len(record["detections"]) == len(want["boxes"]) > 10
        for d, box, score, label in zip(got, want["boxes"][:20], want["scores"][:20], want["labels"][:20],
                                        strict=False):
            x1, y1, x2, y2 = box.tolist()
            assert d["label"] == int(label) and d["score"] == pytest.approx(float(score), abs=1e-4)
            assert d["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.05)


def test_detector_files_run_batches_of_any_size(trained, tmp_path):
    out = tmp_path / "det.xml"
    export_detector(trained, out, "openvino", log=lambda m: None)
    detector = open_detector_file(out)  # a static batch of 1, run image by image
    x = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    assert tuple(detector.graph(x).shape)[:1] == (3,)
    assert open_detector_file(out, runtime="openvino").runtime == "openvino"
    with pytest.raises(RuntimeChoiceError, match=r"^det\.xml is an OpenVINO IR file: it runs on openvino, "
                                                 r"not onnxruntime$"):
        open_detector_file(out, runtime="onnxruntime")


@pytest.mark.slow  # quantization and four COCO evaluations: about a minute
@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("openvino", ".xml")])
def test_int8_reports_the_ap_change_on_held_out_images(trained, tmp_path, capsys, fmt, suffix):
    out = tmp_path / f"det{suffix}"
    assert main(["export", str(trained), str(out), "--int8", "--exporter", "legacy", "--num-calib", "16"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("int8 ("))
    assert "on 8 held-out images" in line and "calibrated on 16 training images" in line
    int8 = next(p for p in tmp_path.iterdir() if ".int8." in p.name and p.suffix == suffix)
    assert read_props(int8)[TASK_KEY] == DETECTION
    # The figures it prints are det-eval's of the two files.
    for path, label in ((out, "fp32"), (int8, "AP")):
        assert main(["det-eval", str(path), "--workers", "0", "--output", str(tmp_path / "m.json")]) == 0
        ap = json.loads((tmp_path / "m.json").read_text())["bbox"]["AP"]
        assert f"{label} {ap:.2f}" in line


def test_bench_times_a_detector_in_three_parts_with_the_post_processing_share(trained, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", str(trained), "--runtimes", "eager", "onnxruntime", "--runs", "3", "--warmup", "1",
                 "--out", str(out)]) == 0
    rows = json.loads((out / "detector_latency.json").read_text())["results"]
    assert [r["runtime"] for r in rows] == ["eager", "onnxruntime"]
    for row in rows:
        assert row["error"] == "" and row["img_size"] == SIZE and row["runs"] == 3
        assert all(row[k] > 0 for k in ("body_ms", "graph_ms", "e2e_ms", "post_ms"))
        assert 0 < row["post_share"] < 1 and 0 < row["post_cpu_share"] < 1 and row["nms_candidates"] > 0
    assert "post share" in capsys.readouterr().out


def test_bench_refuses_detectors_mixed_with_classifiers_and_mask_rcnn(trained, tmp_path, capsys):
    assert main(["bench", str(trained), "repghostnet_050", "--out", str(tmp_path / "b")]) == 2
    assert "benchmarked on their own" in capsys.readouterr().err
    save_detector(small_detector("maskrcnn"), tmp_path / "mask.pt", CATEGORIES)
    assert main(["bench", str(tmp_path / "mask.pt"), "--out", str(tmp_path / "b")]) == 2
    assert "Mask R-CNN cannot be exported" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
