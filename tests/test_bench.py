"""Benchmark harness and the Concat-vs-Add study, on tiny configurations (correctness, not speed)."""

import json

import pytest

from repghost.bench import ModelSpec
from repghost.bench.latency import time_interleaved
from repghost.cli import main
from repghost.models import short_model_name

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_model_spec_parsing():
    assert ModelSpec.parse("repghostnet_100") == ModelSpec("repghost", "repghostnet_100", "train")
    assert ModelSpec.parse("timm:repghostnet_100@deploy") == ModelSpec("timm", "repghostnet_100", "deploy")
    assert ModelSpec.parse("torchvision:mobilenet_v3_large").label == "torchvision:mobilenet_v3_large@train"
    assert ModelSpec.parse("ghostnet_100").paper_top1 == 73.9
    with pytest.raises(ValueError, match="source"):
        ModelSpec.parse("keras:ghostnet_100")
    with pytest.raises(ValueError, match="form"):
        ModelSpec.parse("repghostnet_100@fast")
    assert ModelSpec.parse("runs/x/best.pt@deploy") == ModelSpec("file", "runs/x/best.pt", "deploy")  # checked later


def test_model_spec_of_a_searched_architecture(tmp_path):
    from repghost.costmodel.space import SearchSpace

    space = SearchSpace()
    name = space.arch_name(space.from_model_name("mobiledet_cpu"))
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(space.arch_to_json(space.from_model_name("mobiledet_cpu"))))
    spec = ModelSpec.parse(f"{name}@deploy")
    assert spec == ModelSpec("repghost", name, "deploy") and spec.label == f"{short_model_name(name)}@deploy"
    assert ModelSpec.parse(str(path)) == ModelSpec("repghost", str(path), "train")   # a model, not a checkpoint
    with pytest.raises(ValueError, match="source must be one of repghost, timm, torchvision.*belongs to search"):
        ModelSpec.parse(name.replace(space.fingerprint, "f" * 16))


def test_rounds_interleave_every_runner_once_in_rotated_order():
    calls = []
    runners = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    times = time_interleaved(runners, warmup=2, runs=3, progress=False, desc="")
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up
    assert calls[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(t) == 3 for t in times.values())


def test_bench_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench"
    rc = main(["bench", "repghostnet_050", "repghostnet_050@deploy", "--runtimes", "eager", "onnxruntime",
               "--img-size", "32", "--runs", "3", "--warmup", "1", "--out", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "| repghostnet_050 | deploy | onnxruntime |" in table
    data = json.loads((out / "latency.json").read_text())
    assert {"torch", "onnxruntime", "cpu", "date"} <= set(data["environment"])
    results = data["results"]
    assert len(results) == 4 and all(r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] for r in results)
    assert all(r["runs"] == 3 and r["error"] == "" for r in results)
    train, deploy = (next(r for r in results if r["form"] == form and r["runtime"] == "eager")
                     for form in ("train", "deploy"))
    assert train["macs_m"] < deploy["macs_m"]  # folded biases add MACs, from repghost.profile
    assert (out / "latency.csv").read_text().startswith("model,form,runtime")
    assert (out / "latency.png").read_bytes()[:8] == PNG_MAGIC


def test_bench_rejects_unknown_model(capsys):
    assert main(["bench", "no_such_net", "--runs", "1"]) != 0
    assert "available models" in capsys.readouterr().err


def test_concat_vs_add_study(tmp_path):
    from repghost.study import concat_add, write_report

    result = concat_add.run(batch_sizes=(1, 2), img_size=32, runs=2, warmup=1, progress=False)
    assert [r["batch"] for r in result.rows] == [1, 2]
    for r in result.rows:
        assert tuple(r["merge_ops"]) == (32, 32)  # GhostNet 1.0× has 32 Ghost modules
        assert r["concat_ms"] > 0 and r["add_ms"] > 0
        assert sum(r["concat_share"].values()) == pytest.approx(1.0)
        assert sum(r["add_share"].values()) == pytest.approx(1.0)
        assert "Add (shortcut)" in r["add_share"]  # the 16 shortcut Adds are not counted as merges
    paths = write_report(result, tmp_path)
    assert paths["png"].read_bytes()[:8] == PNG_MAGIC and paths["share_png"].read_bytes()[:8] == PNG_MAGIC
    assert paths["png"].name == "concat_add.png" and paths["share_png"].name == "concat_add_share.png"
    assert "| 1 |" in paths["md"].read_text()
