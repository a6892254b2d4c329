"""Each study end to end on a tiny setting, through the CLI, with its files parsed."""

import csv
import json

import pytest

from repghost.cli import main


def read_outputs(out, name):
    data = json.loads((out / f"{name}.json").read_text())
    with (out / f"{name}.csv").open() as f:
        rows = list(csv.DictReader(f))
    md = (out / f"{name}.md").read_text()
    assert (out / f"{name}.png").stat().st_size > 1000
    assert len(rows) == len(data["rows"]) and md.count("\n|") >= len(rows) + 1
    return data, rows, md


def test_res50_study(tmp_path, capsys):
    out = tmp_path / "res50"
    assert main(["study", "res50", "--batch", "1", "--runtimes", "eager", "--img-size", "32", "--warmup", "0",
                 "--runs", "2", "--out", str(out)]) == 0
    data, rows, md = read_outputs(out, "res50")
    assert {r["model"] for r in rows} == {"ghost_resnet50_s2", "ghost_resnet50_s4", "repghost_resnet50_s2",
                                          "repghost_resnet50_s4"}
    assert all(float(r["median_ms"]) > 0 for r in rows)
    params = {r["model"]: float(r["params_m"]) for r in rows}
    assert params["ghost_resnet50_s2"] == pytest.approx(13.95, abs=0.01)
    [claim] = data["claims"]
    assert "RepGhost-Res50 s=2 faster than Ghost-Res50 s=4 (eager, batch 1)" == claim["claim"]
    assert "22%" in claim["paper"] and "44%" in claim["paper"]
    assert claim["measured"].startswith("median: ") and "; min: " in claim["measured"]
    assert "| ghost_resnet50_s4 |" in capsys.readouterr().out


def test_figure1_study(tmp_path):
    out = tmp_path / "fig"
    assert main(["study", "figure1", "--runtime", "eager", "--img-size", "32", "--warmup", "0", "--runs", "2",
                 "--models", "repghostnet_050", "ghostnet_050", "timm:mobilenetv3_small_075", "--out", str(out)]) == 0
    data, rows, _ = read_outputs(out, "figure1")
    assert [r["family"] for r in rows] == ["RepGhostNet", "GhostNet", "MobileNetV3"]
    assert [float(r["paper_phone_ms"]) for r in rows] == [25.1, 31.7, 26.0]
    claims = {c["claim"]: c for c in data["claims"]}
    first = claims["RepGhostNet 0.5× ~20 % faster than GhostNet 0.5×"]
    assert first["paper"] == "25.1 vs 31.7 ms: 20.8% faster" and first["holds"] in (True, False)
    assert first["measured"].startswith("median ") and "; min " in first["measured"]
    assert len(claims) == 1  # the other headlines need models not timed here


def test_concat_add_study_and_bench_alias(tmp_path):
    for argv, out in ((["study", "concat-add"], tmp_path / "a"), (["bench", "--concat-vs-add"], tmp_path / "b")):
        assert main([*argv, "--batch", "1", "--img-size", "32", "--runs", "1", "--warmup", "0",
                     "--out", str(out)]) == 0
        data, rows, _ = read_outputs(out, "concat_add")
        assert rows[0]["batch"] == "1" and float(rows[0]["concat_ms"]) > 0 and float(rows[0]["add_ms"]) > 0
        assert json.loads(rows[0]["merge_ops"]) == [32, 32]
        assert (out / "concat_add_share.png").is_file() and data["claims"]


def test_ablation_study_trains_resumes_and_skips(tmp_path, capsys):
    out = tmp_path / "abl"
    argv = ["study", "ablation", "--epochs", "1", "--batch-size", "128", "--variants", "bn", "--seeds", "0", "1",
            "--latency-size", "32", "--warmup", "0", "--runs", "2", "--out", str(out)]
    assert main(argv) == 0
    data, rows, _ = read_outputs(out, "ablation")
    [row] = data["rows"]
    assert row["variant"] == "bn" and row["seeds"] == 2 and len(row["top1_runs"]) == 2
    assert row["top1_mean"] == pytest.approx(sum(row["top1_runs"]) / 2)
    assert row["top1_std"] == pytest.approx(abs(row["top1_runs"][0] - row["top1_runs"][1]) / 2 ** 0.5)
    assert row["median_ms"] > 0
    done = out / "runs" / "bn-seed0" / "best_deploy.safetensors"
    stamp = done.stat().st_mtime_ns
    # An interrupted run (no deploy file yet) is resumed; finished runs are skipped.
    (out / "runs" / "bn-seed1" / "best_deploy.safetensors").unlink()
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "resumed" in err and err.count("best val top-1") == 1
    assert done.stat().st_mtime_ns == stamp
    assert json.loads((out / "ablation.json").read_text())["rows"][0]["top1_runs"] == row["top1_runs"]
    # The same directory with other settings is refused, not mixed in.
    assert main([*argv[:3], "2", *argv[4:]]) == 2  # --epochs 2
    assert "other settings (epochs)" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["study", "ablation", "--width", "0.7"], "no RepGhostNet of width 0.7"),
    (["study", "ablation", "--variants", "bn", "ghost"], "unknown variant 'ghost'"),
    (["study", "ablation", "--data", "/nonexistent/folder"], "/nonexistent/folder"),
    (["study", "res50", "--ratios", "3"], "ratio 3 has no registered model"),
    (["study", "figure1", "--models", "resnet18"], "'resnet18' is not a point of the figure"),
])
def test_bad_input_fails_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main([*argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unknown_study_is_a_usage_error(capsys):
    assert main(["study", "figure2"]) == 2
    assert "invalid choice: 'figure2'" in capsys.readouterr().err


def test_model_kwargs_reach_the_trained_model(tmp_path, capsys):
    from torch import nn

    from repghost.train import Trainer, resolve_config

    cfg = resolve_config(model_kwargs={"shortcut": False}, output=str(tmp_path), name="run", workers=0)
    model = Trainer(cfg).model
    assert model.model_kwargs["shortcut"] is False
    shortcuts = [m.shortcut for m in model.modules() if hasattr(m, "shortcut")]
    assert shortcuts and not any(isinstance(s, nn.Identity) for s in shortcuts)
    assert main(["train", "--model-kwargs", "[1, 2]"]) == 2
    assert "expected a mapping" in capsys.readouterr().err
