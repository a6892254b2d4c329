"""One runner for every model file (repghost.open_model), predict, and the accuracy per format.

Images are the photos scikit-learn and matplotlib ship (no code here drew them). Exports are 32²
(classifiers) and 64² (detectors) to stay fast.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import repghost
from repghost.cli import main
from repghost.detection.detectors import DetectorConfig, build_detector
from repghost.detection.files import save_detector
from repghost.preprocess import Preprocess
from train_helpers import make_photo_folder, sample_photos

SIZE = 32
EDGE_OUT = {"mnn": ("m.mnn", ("MNN", "_tools")), "ncnn": ("m.ncnn.param", ("ncnn", "pnnx")),
            "openvino": ("m.xml", ("openvino",)), "litert": ("m.tflite", ("ai_edge_litert", "litert_torch"))}


def _installed(modules) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A repghostnet_050 trained briefly on crops of the real photos, and its photo folder."""
    root = tmp_path_factory.mktemp("cls")
    data = make_photo_folder(root / "photos", per_class=12, val_per_class=8, size=SIZE)
    assert main(["train", "--recipe", "digits", "--epochs", "2", "--img-size", str(SIZE), "--batch-size", "8",
                 "--warmup-epochs", "0", "--workers", "0", "--threads", "1", "--progress", "false", "--data",
                 str(data), "--output", str(root / "runs"), "--name", "run"]) == 0
    return root / "runs" / "run", data


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """A classifier well above chance (the folder recipe on 60 crops per photo, 10 epochs: ~87 % top-1
    where chance is 33 %), so a format that changed its predictions would change its accuracy."""
    root = tmp_path_factory.mktemp("learned")
    data = make_photo_folder(root / "photos", per_class=60, val_per_class=20)
    assert main(["train", "--data", str(data), "--epochs", "10", "--output", str(root / "runs"), "--name", "run",
                 "--threads", "1", "--workers", "0", "--progress", "false"]) == 0
    return root / "runs" / "run", data


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of the real photos as they are, plus one file that is not an image."""
    folder = tmp_path_factory.mktemp("photos")
    for name, photo in sample_photos().items():
        photo.save(folder / f"{name}.jpg", quality=90)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    return folder


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """An SSDLite-RepGhostNet detector checkpoint (random weights, as det-train writes its layout)."""
    torch.manual_seed(0)
    config = DetectorConfig(model="ssdlite", backbone="repghostnet_050", num_classes=3, min_size=64, max_size=64)
    model = build_detector(config).eval()
    path = tmp_path_factory.mktemp("det") / "det.pt"
    return save_detector(model, path, [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}])


def _exports(run, tmp_path):
    """The checkpoint's exports in every installed format; {path: fp32?}."""
    ckpt = run / "best_deploy.safetensors"
    files = {}
    assert main(["export", str(ckpt), str(tmp_path / "m.onnx"), "--exporter", "legacy", "--int8", "--calib",
                 str(run.parent.parent / "photos"), "--num-calib", "8"]) == 0
    files.update({tmp_path / "m.onnx": True, tmp_path / "m.int8.onnx": False})
    assert main(["export", str(ckpt), str(tmp_path / "m.pt")]) == 0
    files[tmp_path / "m.pt"] = True
    for out, modules in EDGE_OUT.values():
        if _installed(modules):
            calib = ["--int8", "--calib", str(run.parent.parent / "photos"), "--num-calib", "8"]
            int8 = calib if out == "m.xml" else []
            assert main(["export", str(ckpt), str(tmp_path / out), *int8]) == 0
            files[tmp_path / out] = True
            if int8:   # NNCF's int8 IR, opened with the contract beside it like its fp32 one
                files[tmp_path / "m.int8.xml"] = False
    return files


#: Set in the fresh interpreter that runs the every-format case (see the test below).
IN_FRESH_PROCESS = "REPGHOST_EVERY_FORMAT_CASE"


@pytest.mark.slow
def test_eval_of_every_exported_format_gives_the_checkpoints_top1(tmp_path):
    """The every-format case, run by pytest in a fresh interpreter, as a user runs each command: the edge
    runtimes it loads (OpenVINO with NNCF, LiteRT, MNN, ncnn, timed by bench) leave native state in the
    process that made a later in-process SIGINT (the search's Ctrl-C test) crash the test process."""
    case = f"{__file__}::test_every_exported_format_in_this_process"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s", case,
                           "--basetemp", str(tmp_path / "case")], env={**os.environ, IN_FRESH_PROCESS: "1"},
                          capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=3000)
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    print(proc.stdout[-1500:])


@pytest.mark.skipif(not os.environ.get(IN_FRESH_PROCESS), reason="run in a fresh interpreter by "
                    "test_eval_of_every_exported_format_gives_the_checkpoints_top1")
def test_every_exported_format_in_this_process(learned, tmp_path, capsys):
    run, data = learned
    files = _exports(run, tmp_path)
    reference = repghost.train.evaluate_checkpoint(run / "best_deploy.safetensors", workers=0, progress=False)
    assert reference["top1"] > 60, reference   # the model learned: a changed prediction shows
    for path, fp32 in files.items():
        opened = repghost.open_model(path, threads=1)
        assert opened.task == "classification" and opened.class_names == ["china", "flower", "grace_hopper"]
        assert opened.preprocess == repghost.open_model(run / "best_deploy.safetensors").preprocess
        result = repghost.train.evaluate_checkpoint(path, workers=0, progress=False)
        assert result["count"] == reference["count"]
        if fp32:  # the same model, run elsewhere: the same accuracy
            assert abs(result["top1"] - reference["top1"]) <= 0.1, (path, result["top1"], reference["top1"])
        else:     # int8: its own change, reported
            print(f"{path.name}: top-1 {result['top1']:.2f} vs fp32 {reference['top1']:.2f}")
    # predict with every format: the same top class for every photo as the checkpoint
    expected = repghost.predict(run / "best_deploy.safetensors", [str(data / "val")], log=None, progress=False)
    for path, fp32 in files.items():
        got = repghost.predict(path, [str(data / "val")], log=None, progress=False, batch_size=3)
        assert got.images == expected.images == 60
        if fp32:
            assert [r["top"][0]["label"] for r in got.records] == [r["top"][0]["label"] for r in expected.records]
    # one table: format, size, accuracy, latency per file
    assert main(["bench", str(run / "best_deploy.safetensors"), *map(str, files), "--data", str(data), "--runs", "3",
                 "--warmup", "1", "--out", str(tmp_path / "bench")]) == 0
    rows = json.loads((tmp_path / "bench" / "formats.json").read_text())["results"]
    assert [r["file"] for r in rows] == [str(run / "best_deploy.safetensors"), *map(str, files)]
    assert all(r["value"] is not None and r["median_ms"] > 0 and r["size_mb"] > 0 for r in rows), rows
    assert abs(rows[1]["value"] - reference["top1"]) <= 0.1


def test_predict_on_a_classifier_writes_topk_and_skips_a_corrupt_image(classifier, photos, tmp_path, capsys):
    run, _ = classifier
    out = tmp_path / "out"
    assert main(["predict", str(run / "best_deploy.safetensors"), str(photos), "--topk", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 images" in printed and "1 unreadable skipped" in printed and "broken.jpg" in printed
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(len(r["top"]) == 2 for r in records)
    # the probabilities are the model's softmax on the image prepared by the file's own contract
    opened = repghost.open_model(run / "best_deploy.safetensors")
    with Image.open(photos / "china.jpg") as image:
        probs = opened(opened.preprocess.transform()(image.convert("RGB"))[None]).softmax(-1)[0]
    china = next(r for r in records if r["source"].endswith("china.jpg"))
    assert china["top"][0]["prob"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert china["top"][0]["label"] == opened.class_names[int(probs.argmax())]
    assert (out / "predictions.csv").read_text().splitlines()[0] == "source,frame,rank,index,label,prob"


def test_predict_on_a_detector_draws_the_models_boxes(detector, photos, tmp_path):
    out = tmp_path / "out"
    report = repghost.predict(detector, [str(photos / "china.jpg")], out=out, conf=0.0, max_det=5, log=None,
                              progress=False)
    (record,) = report.records
    assert len(record["detections"]) == 5
    # The model's own boxes, computed here on the stretched photo and mapped back to the photo's pixels.
    opened = repghost.open_model(detector)
    assert opened.task == "detection" and opened.preprocess.resize == "stretch"
    with Image.open(photos / "china.jpg") as image:
        photo = image.convert("RGB")
    (raw,) = opened(opened.preprocess.transform()(photo)[None])
    top = raw["scores"].argsort(descending=True)[:5]
    boxes = Preprocess.to_image(opened.preprocess, raw["boxes"][top], *photo.size)
    written = json.loads((out / "detections.json").read_text())
    got = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in written)])
    assert torch.allclose(got, boxes, atol=0.02)
    assert {d["category_id"] for d in written} <= {7, 9}   # the training data's category ids
    with Image.open(record["image"]) as drawn:
        assert drawn.size == photo.size
        assert drawn.convert("RGB").tobytes() != photo.tobytes()   # boxes were drawn on it


@pytest.mark.parametrize("case", ["empty folder", "no match", "video without decoder", "wrong runtime"])
def test_predict_refuses_bad_input_with_one_line_and_writes_nothing(case, classifier, tmp_path, capsys,
                                                                   monkeypatch):
    run, _ = classifier
    (tmp_path / "empty").mkdir()
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    source = {"empty folder": str(tmp_path / "empty"), "no match": str(tmp_path / "*.png"),
              "video without decoder": str(tmp_path / "clip.mp4"), "wrong runtime": str(tmp_path / "empty")}[case]
    extra = ["--runtime", "litert"] if case == "wrong runtime" else []
    if case == "video without decoder":  # as on a machine without the extra, whether or not this one has it
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" else find_spec(name, *a))
    if case == "wrong runtime":  # a real image, so only the runtime is wrong
        sample_photos()["china"].save(tmp_path / "empty" / "china.jpg")
    code = main(["predict", str(run / "best_deploy.safetensors"), source, *extra, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("repghost predict: error: "), err
    if case == "video without decoder":
        assert "repghost[video]" in err[0]
    assert not (tmp_path / "out").exists()


def test_predict_on_a_video_gives_the_models_prediction_for_every_frame(classifier, tmp_path):
    """A short clip of the real photos (encoded with PyAV, the video extra): one record per frame, each the
    model's own top-k on that decoded frame."""
    av = pytest.importorskip("av")
    run, _ = classifier
    clip = tmp_path / "clip.mp4"
    photos = [p.resize((96, 64)) for p in sample_photos().values()]
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for photo in photos:
            container.mux(stream.encode(av.VideoFrame.from_image(photo)))
        container.mux(stream.encode())
    with av.open(str(clip)) as container:
        frames = [f.to_image().convert("RGB") for f in container.decode(video=0)]
    assert len(frames) == len(photos)
    model = repghost.open_model(run / "best_deploy.safetensors")
    transform = model.preprocess.transform()
    expected = model(torch.stack([transform(f) for f in frames])).softmax(-1)
    report = repghost.predict(model, [str(clip)], topk=2, log=None, progress=False)
    assert [r["frame"] for r in report.records] == list(range(len(frames)))
    for record, probs in zip(report.records, expected, strict=True):
        assert record["top"][0]["index"] == int(probs.argmax())
        assert record["top"][0]["prob"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_a_model_of_the_other_task_is_refused_by_eval_and_det_eval(classifier, detector, capsys):
    run, _ = classifier
    assert main(["eval", str(detector)]) == 2  # the command line must change: exit 2, as for a usage error
    assert "det-eval" in capsys.readouterr().err
    assert main(["det-eval", str(run / "best_deploy.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "repghost eval" in err[0]


def test_a_runtime_the_format_cannot_run_on_is_refused(classifier, tmp_path, capsys):
    run, _ = classifier
    with pytest.raises(repghost.deploy.RuntimeChoiceError,
                       match=r"^best_deploy\.safetensors is a safetensors file: it runs on eager, not onnxruntime$"):
        repghost.open_model(run / "best_deploy.safetensors", runtime="onnxruntime")
    onnx = tmp_path / "m.onnx"
    assert main(["export", str(run / "best_deploy.safetensors"), str(onnx), "--exporter", "legacy"]) == 0
    capsys.readouterr()
    assert main(["eval", str(onnx), "--runtime", "litert", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["repghost eval: error: m.onnx is an ONNX file: it runs on onnxruntime or openvino, not litert"]


#: How the refusal names a file of each format (the article is the one its name is read with).
FORMAT_NOUNS = {"checkpoint": "a training checkpoint", "safetensors": "a safetensors file",
                "torchscript": "a TorchScript file", "onnx": "an ONNX file", "openvino": "an OpenVINO IR file",
                "litert": "a LiteRT file", "mnn": "an MNN file", "ncnn": "an ncnn file"}


@pytest.mark.parametrize("fmt", list(FORMAT_NOUNS))
def test_the_runtime_refusal_names_every_format_with_its_article(fmt):
    from repghost.deploy.graph_runner import choose_runtime
    from repghost.names import FORMAT_RUNTIMES

    assert set(FORMAT_NOUNS) == set(FORMAT_RUNTIMES)
    assert choose_runtime("f", fmt, None) == FORMAT_RUNTIMES[fmt][0]
    with pytest.raises(repghost.deploy.RuntimeChoiceError) as refused:
        choose_runtime("f", fmt, "compile")
    runs_on = " or ".join(FORMAT_RUNTIMES[fmt])
    assert str(refused.value) == f"f is {FORMAT_NOUNS[fmt]}: it runs on {runs_on}, not compile"


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_graph_with_a_static_batch_runs_batches_of_any_size(tmp_path, runtime):
    """An ONNX file exported with a fixed batch of 2 gives PyTorch's logits for 1, 2 and 5 images: the
    runner runs it in slices of 2, the short last one padded."""
    from repghost.deploy import export_onnx

    if runtime == "openvino" and not _installed(("openvino",)):
        pytest.skip("openvino is not installed")
    torch.manual_seed(0)
    model = repghost.create_model("repghostnet_050", num_classes=5, deploy=True).eval()
    path = export_onnx(model, tmp_path / "b2.onnx", (2, 3, SIZE, SIZE), exporter="legacy", dynamic_batch=False)
    opened = repghost.open_model(path, runtime=runtime, threads=1)
    assert opened.input_size == SIZE
    x = torch.randn(5, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(x)
    for count in (1, 2, 5):
        got = opened(x[:count])
        assert got.shape == (count, 5)
        assert torch.allclose(got, expected[:count], atol=1e-4), (count, (got - expected[:count]).abs().max())


def test_the_runner_path_of_det_eval_gives_the_torch_paths_ap(tmp_path):
    """What det-eval runs for an exported detector file (the runner, the file's contract, boxes mapped
    back) scores a detector checkpoint as torchvision's own evaluation does, on the synthetic set."""
    from repghost.deploy.evaluation import evaluate_runner
    from repghost.detection.data import DataConfig

    assert main(["det-train", "--model", "ssdlite", "--synthetic-train", "8", "--synthetic-val", "4",
                 "--synthetic-size", "64", "--min-size", "64", "--max-size", "64", "--batch-size", "4", "--workers",
                 "0", "--epochs", "2", "--warmup-iters", "1", "--fpn-channels", "16", "--threads", "1", "--output",
                 str(tmp_path / "det"), "--synthetic-dir", str(tmp_path / "synthetic")]) == 0
    torch_path = json.loads((tmp_path / "det" / "metrics.json").read_text())["bbox"]
    data = DataConfig(root=str(tmp_path / "synthetic"))
    runner_path = evaluate_runner(repghost.open_model(tmp_path / "det" / "last.pt"), data, progress=False)
    assert runner_path["num_images"] == 4
    for name in ("AP", "AP50"):
        assert abs(runner_path["bbox"][name] - torch_path[name]) <= 0.1, (runner_path["bbox"], torch_path)


def test_predict_on_mask_rcnn_draws_masks_and_writes_their_rles(photos, tmp_path):
    import pycocotools.mask as mask_utils

    torch.manual_seed(0)
    config = DetectorConfig(model="maskrcnn", backbone="repghostnet_050", num_classes=2, min_size=64, max_size=64,
                            fpn_channels=16)
    path = save_detector(build_detector(config).eval(), tmp_path / "mask.pt", [{"id": 3, "name": "thing"}])
    report = repghost.predict(path, [str(photos / "grace_hopper.jpg")], out=tmp_path / "out", conf=0.0, max_det=3,
                              log=None, progress=False)
    (record,) = report.records
    written = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len(written) == len(record["detections"]) > 0
    for result in written:   # each mask in the photo's pixels, as COCO RLE
        assert result["segmentation"]["size"] == [record["height"], record["width"]]
        assert mask_utils.decode({**result["segmentation"], "counts": result["segmentation"]["counts"].encode()}
                                 ).shape == (record["height"], record["width"])
    assert Path(record["image"]).is_file()
