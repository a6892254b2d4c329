"""Each study end to end on a tiny setting, through the CLI, with its files parsed."""

import csv
import json

import pytest

from repghost.cli import main
from repghost.study.report import VERDICTS


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
    assert claim["paper"] == "22.0% faster (MNN, phone CPU, batch 1)" and claim["verdict"] in VERDICTS
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
    assert first["paper"] == "25.1 vs 31.7 ms: 20.8% faster" and first["verdict"] in VERDICTS
    assert first["reason"] and data["verdict_rules"]["comparable_tolerance"] == 0.05
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


# -- verdicts: one rule (repghost.study.report.judge) for every study --------------------------------------------

def test_judge_separates_magnitude_direction_and_failure():
    from repghost.study.report import DIRECTION_HOLDS, DOES_NOT_HOLD, MAGNITUDE_HOLDS, UNDECIDED, judge

    # The paper's 13.6 % faster measured as 3.8 % faster: the direction only, not a reproduction.
    verdict, reason = judge(0.136, 0.038)
    assert verdict == DIRECTION_HOLDS
    assert "3.8% faster" in reason and "13.6% faster" in reason and "±25%" in reason and "10.2% faster" in reason
    assert judge(0.136, 0.12)[0] == MAGNITUDE_HOLDS
    assert judge(0.208, 0.34)[0] == DIRECTION_HOLDS  # larger than the paper's: not its magnitude either
    assert judge(0.136, -0.02)[0] == DOES_NOT_HOLD
    assert judge(0.136, 0.0)[0] == DOES_NOT_HOLD
    assert judge(None, 0.30)[0] == DIRECTION_HOLDS  # no paper figure: at most the direction
    assert judge(0.136, None)[0] == UNDECIDED and judge(0.136, float("nan"))[0] == UNDECIDED
    assert judge(None, 0.2, noise=0.5)[0] == UNDECIDED and judge(None, 0.6, noise=0.5)[0] == DIRECTION_HOLDS
    with pytest.raises(ValueError):
        judge(-0.1, 0.2)  # a paper figure against the claim's own direction is a bug in the claim


def test_judge_comparable_latency_claims():
    from repghost.study.report import COMPARABLE_TOLERANCE, DOES_NOT_HOLD, HOLDS, judge

    assert COMPARABLE_TOLERANCE < 0.097
    verdict, reason = judge(0.007, -0.097, comparable=True)  # 9.7 % slower is not "comparable"
    assert verdict == DOES_NOT_HOLD and "9.7% slower" in reason and "±5%" in reason
    assert judge(0.007, 0.30, comparable=True)[0] == DOES_NOT_HOLD  # far faster is not comparable either
    assert judge(0.007, -0.04, comparable=True)[0] == HOLDS
    assert judge(0.007, 0.05, comparable=True)[0] == HOLDS


def _figure1_row(model, median_ms):
    return dict(model=model, median_ms=median_ms, min_ms=median_ms * 0.97)


def test_figure1_claims_are_judged_not_yes():
    from repghost.study import figure1
    from repghost.study.report import DIRECTION_HOLDS, DOES_NOT_HOLD, MAGNITUDE_HOLDS, VERDICT_RULES, format_report

    rows = [_figure1_row("repghostnet_100", 2.886), _figure1_row("timm:mobilenetv3_large_075", 3.0),
            _figure1_row("repghostnet_111", 3.291), _figure1_row("repghostnet_050", 1.98),
            _figure1_row("ghostnet_050", 2.5)]
    claims = {c.claim: c for c in figure1.claims(rows)}
    assert len(claims) == 3  # the 0.58× claim needs repghostnet_058
    faster = claims["RepGhostNet 1.0× 14 % faster than MobileNetV3-L 0.75×"]
    assert faster.verdict == DIRECTION_HOLDS and "3.8% faster" in faster.measured and "13.6% faster" in faster.paper
    comparable = claims["RepGhostNet 1.11× at comparable latency to MobileNetV3-L 0.75× (+1.6 % top-1)"]
    assert comparable.verdict == DOES_NOT_HOLD and "9.7% slower" in comparable.measured
    assert claims["RepGhostNet 0.5× ~20 % faster than GhostNet 0.5×"].verdict == MAGNITUDE_HOLDS  # 20.8 % vs 20.8 %
    result = figure1.StudyResult("figure1", "t", figure1.COLUMNS, rows, claims=list(claims.values()))
    md = format_report(result)
    assert "| direction holds |" in md and "| **does not hold** |" in md and VERDICT_RULES in md
    assert "±25%" in VERDICT_RULES and "5%" in VERDICT_RULES


def test_res50_claims_use_the_papers_figure_of_the_same_batch_size():
    from repghost.study import res50
    from repghost.study.report import DIRECTION_HOLDS, DOES_NOT_HOLD, MAGNITUDE_HOLDS

    def rows(runtime, batch, fast, slow):
        return [dict(model=res50.CLAIM_FAST, runtime=runtime, batch=batch, median_ms=fast, min_ms=fast),
                dict(model=res50.CLAIM_SLOW, runtime=runtime, batch=batch, median_ms=slow, min_ms=slow)]

    claims = res50.claims(rows("eager", 1, 76.2, 100) + rows("onnxruntime", 1, 57.1, 100)
                          + rows("eager", 32, 120, 100) + rows("eager", 8, 90, 100))
    verdicts = {c.claim.rpartition("(")[2][:-1]: c for c in claims}
    assert verdicts["eager, batch 1"].verdict == MAGNITUDE_HOLDS  # 23.8 % vs the paper's 22 %
    assert "22.0% faster (MNN, phone CPU, batch 1)" == verdicts["eager, batch 1"].paper
    assert verdicts["onnxruntime, batch 1"].verdict == DIRECTION_HOLDS  # 42.9 %: twice the paper's
    assert verdicts["eager, batch 32"].verdict == DOES_NOT_HOLD
    assert verdicts["eager, batch 8"].verdict == DIRECTION_HOLDS and "no figure at batch 8" in verdicts[
        "eager, batch 8"].paper


def test_concat_add_and_ablation_claims():
    from repghost.study import ablation, concat_add
    from repghost.study.report import DIRECTION_HOLDS, DOES_NOT_HOLD, HOLDS, MAGNITUDE_HOLDS, UNDECIDED

    concat = concat_add.claims([dict(batch=1, concat_ms=2.0, add_ms=1.0, ratio=2.0),
                                dict(batch=8, concat_ms=1.3, add_ms=1.0, ratio=1.3),
                                dict(batch=32, concat_ms=0.9, add_ms=1.0, ratio=0.9)])
    assert [c.verdict for c in concat] == [MAGNITUDE_HOLDS, DIRECTION_HOLDS, DOES_NOT_HOLD]

    def row(variant, mean, std, ms):
        return dict(variant=variant, top1_mean=mean, top1_std=std, median_ms=ms)

    claims = ablation.claims([row("bn", 98.89, 0.28, 1.68), row("identity", 98.52, 0.58, 1.68),
                              row("none", 99.17, 0.56, 1.70), row("no-shortcut", 74.54, 12.61, 1.64)])
    assert [c.verdict for c in claims] == [UNDECIDED, DIRECTION_HOLDS, HOLDS]
    assert "none 99.17 ± 0.56 %" in claims[0].measured  # compared with the best rival
    assert ablation.claims([row("bn", 98.0, 0.1, 1.0), row("no-shortcut", 97.0, 0.1, 1.2)])[1].verdict == DOES_NOT_HOLD


def test_rerender_judges_a_recorded_study_again(tmp_path):
    from repghost.study import rerender

    rows = [dict(_figure1_row("repghostnet_100", 2.886), family="RepGhostNet", width="1.0×"),
            dict(_figure1_row("timm:mobilenetv3_large_075", 3.0), family="MobileNetV3", width="L 0.75×")]
    old = dict(study="figure1", title="Accuracy–latency", meta={"runtime": "onnxruntime"}, rows=rows, notes=["n"],
               claims=[dict(claim="RepGhostNet 1.0× 14 % faster than MobileNetV3-L 0.75×", paper="", measured="",
                            holds=True)])
    path = tmp_path / "figure1_run9.json"
    path.write_text(json.dumps(old))
    paths = rerender(path)
    assert paths == {"md": tmp_path / "figure1_run9.md", "json": path}
    data = json.loads(path.read_text())
    [claim] = data["claims"]
    assert claim["verdict"] == "direction holds" and "holds" not in claim
    assert data["rows"] == rows and data["verdict_rules"]["magnitude_tolerance"] == 0.25
    md = paths["md"].read_text()
    assert "| direction holds |" in md and "| repghostnet_100 |" in md and "- n" in md


def test_figure1_models_by_spec_or_unambiguous_bare_name(capsys):
    from repghost.study.figure1 import PAPER_POINTS, figure_point

    assert figure_point("timm:mobilenetv3_large_075") == "timm:mobilenetv3_large_075"
    assert figure_point("mobilenetv3_large_075") == "timm:mobilenetv3_large_075"
    assert figure_point("repghostnet_100") == "repghostnet_100"
    with pytest.raises(ValueError, match="'mobilenetv3_large_200' is not a point of the figure; choose from"):
        figure_point("mobilenetv3_large_200")
    assert main(["study", "figure1", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(spec in help_text for spec in PAPER_POINTS) and "bare name" in help_text
