"""Ctrl-C, for every command the parser knows (nested ones too): exit 130, one line on stderr, no
traceback, no ``repghost-*`` entry left in the temporary directory, no half-written output.

The property test runs each command's small-but-real invocation twice in this process: once to
the end (it must succeed, and a profiler hook counts the calls into repghost's own functions), then
again with SIGINT — what Ctrl-C sends — raised at a call drawn at random (seeded) among them. The
signal goes through the process's real handler: the default one raises KeyboardInterrupt there,
``train`` and ``search`` install their own and stop at the end of the step. A few cases send a
real SIGINT to a ``repghost`` subprocess at a random moment instead.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml

import repghost
from repghost.cli import commands, main
from repghost.io import SCRATCH_PREFIX
from train_helpers import make_image_folder

SRC = str(Path(repghost.__file__).parent)
SEED = 16
#: The share of a command's counted calls in which the interrupt is drawn: the second run makes a few
#: calls fewer (module imports and caches are done by then), and the interrupt must fall inside it.
SPAN = 0.95
#: Interrupt points drawn per command (more for a thorough run: REPGHOST_INTERRUPT_DRAWS=10).
DRAWS = int(os.environ.get("REPGHOST_INTERRUPT_DRAWS", "1"))

DET = ["--model", "ssdlite", "--synthetic-train", "4", "--synthetic-val", "2", "--synthetic-size", "64",
       "--min-size", "64", "--max-size", "64", "--batch-size", "2", "--workers", "0", "--epochs", "1",
       "--warmup-iters", "1", "--fpn-channels", "16", "--threads", "1"]
TRAIN = ["--recipe", "digits", "--epochs", "1", "--img-size", "16", "--batch-size", "4", "--warmup-epochs", "0",
         "--workers", "0", "--threads", "1", "--progress", "false"]
SAMPLE = ["--img-size", "32", "--warmup", "0", "--runs", "2", "--chunk", "2", "--quiet"]


BENCH_SAMPLES = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "costmodel_samples"

class Inputs:
    """What the commands read: made once, by the commands themselves."""

    def __init__(self, root: Path):
        self.data = make_image_folder(root / "shapes", per_class=4, val_per_class=2, size=16)
        assert main(["train", *TRAIN, "--data", str(self.data), "--output", str(root / "runs"),
                     "--name", "run"]) == 0
        self.run = root / "runs" / "run"
        # A cost model must be fitted on more architectures than it has free parameters: the real timings
        # the benchmarks recorded (timing them here would take an hour).
        self.samples = Path(shutil.copytree(BENCH_SAMPLES, root / "samples"))
        self.costmodel = self.samples / "costmodel.json"
        assert main(["costmodel", "fit", str(self.samples)]) == 0
        self.fidelity_costmodel = _repghostnet_cost_model(root / "costmodel_repghostnet.json")
        self.synthetic = root / "synthetic"
        self.det = root / "det"
        assert main(["det-train", *DET, "--output", str(self.det), "--synthetic-dir", str(self.synthetic)]) == 0


def _repghostnet_cost_model(path: Path) -> Path:
    """A cost model of the RepGhostNet-skeleton space (latency = its stride-32 1×1 convs' MACs): what the
    fidelity study draws with; fitting a real one needs hundreds of timed architectures."""
    from repghost.costmodel.features import feature_names
    from repghost.costmodel.fit import CostModel
    from repghost.models.repghostnet_space import RepGhostNetSpace

    space = RepGhostNetSpace()
    picked = [n for n in feature_names(space) if n == "s32:pw:macs"]
    return CostModel(space.fingerprint, picked, [1.0], 0.5, metrics={"test": {"r2": 0.99}},
                     space_id=space.id).save(path)


def _reference_ms(costmodel: Path) -> str:
    """A latency target in the RepGhostNet-skeleton space: the cost model's prediction for repghostnet_050."""
    from repghost.costmodel.fit import CostModel
    from repghost.models.repghostnet_space import RepGhostNetSpace

    space = RepGhostNetSpace()
    return f"{float(CostModel.load(costmodel, space).predict(space, [space.load_arch('repghostnet_050')])[0]):.3f}"


def _target_ms(costmodel: Path) -> str:
    """A latency target the search can reach: the cost model's prediction for MobileDet-CPU."""
    from repghost.costmodel.fit import CostModel
    from repghost.costmodel.space import SearchSpace

    space = SearchSpace()
    return f"{float(CostModel.load(costmodel, space).predict(space, [space.load_arch('mobiledet_cpu')])[0]):.3f}"


#: command -> its invocation, writing under ``out``.
INVOCATIONS = {
    ("models",): lambda i, out: ["models", "repghostnet_05*", "--img-size", "32"],
    ("train",): lambda i, out: ["train", *TRAIN, "--data", str(i.data), "--output", str(out), "--name", "run"],
    ("eval",): lambda i, out: ["eval", str(i.run / "best.pt"), "--workers", "0", "--json", str(out / "eval.json")],
    ("convert",): lambda i, out: ["convert", str(i.run / "best_model.safetensors"), str(out / "deploy.safetensors")],
    ("export",): lambda i, out: ["export", str(i.run / "best_deploy.safetensors"), str(out / "model.onnx"),
                                 "--exporter", "legacy", "--int8", "--calib", str(i.data), "--num-calib", "4"],
    ("predict",): lambda i, out: ["predict", str(i.run / "best_deploy.safetensors"), str(i.data / "val"),
                                  "--out", str(out / "predict")],
    # The timing commands run eager here: an onnxruntime run spends most of its time in torch's ONNX
    # exporter; test_real_ctrl_c and the scratch-space tests below time through onnxruntime.
    ("bench",): lambda i, out: ["bench", "repghostnet_050", "repghostnet_050@deploy", "--runtimes", "eager",
                                "--img-size", "32", "--warmup", "1", "--runs", "3", "--out", str(out)],
    ("study", "res50"): lambda i, out: ["study", "res50", "--ratios", "4", "--batch", "1", "--img-size", "32",
                                        "--runtimes", "eager", "--warmup", "0", "--runs", "2", "--out", str(out)],
    ("study", "ablation"): lambda i, out: ["study", "ablation", "--data", str(i.data), "--recipe", "digits",
                                           "--seeds", "0", "--variants", "bn", "--epochs", "1", "--batch-size", "4",
                                           "--runtime", "eager", "--latency-size", "32", "--warmup", "0", "--runs",
                                           "2", "--out", str(out)],
    ("study", "detection"): lambda i, out: ["study", "detection", "--archs", "repghostnet_050", "--seeds", "0",
                                            "--train-images", "4", "--search-images", "1", "--test-images", "2",
                                            "--image-size", "64", "--epochs", "1", "--batch-size", "2", "--workers",
                                            "0", "--runtime", "eager", "--latency-size", "32", "--warmup", "0",
                                            "--runs", "2", "--out", str(out)],
    ("study", "fidelity"): lambda i, out: ["study", "fidelity", "--cost-model", str(i.fidelity_costmodel),
                                           "--count", "2", "--tolerance", "0.5", "--seeds", "0",
                                           "--train-images", "4", "--search-images", "1", "--test-images", "2",
                                           "--image-size", "64", "--epochs", "1", "--batch-size", "2",
                                           "--workers", "0", "--runtime", "eager", "--latency-size", "32",
                                           "--warmup", "0", "--runs", "2", "--out", str(out)],
    ("evolve",): lambda i, out: ["evolve", "--costmodel", str(i.fidelity_costmodel), "--target-ms",
                                 _reference_ms(i.fidelity_costmodel), "--quality", "shuffled", "--tolerance", "0.5",
                                 "--population", "4", "--parents", "2", "--generations", "2", "--output",
                                 str(out / "evo")],
    ("study", "figure1"): lambda i, out: ["study", "figure1", "--models", "repghostnet_050", "ghostnet_050",
                                          "--runtime", "eager", "--img-size", "32", "--warmup", "0", "--runs", "2",
                                          "--out", str(out)],
    ("study", "concat-add"): lambda i, out: ["study", "concat-add", "--batch", "1", "--img-size", "32",
                                             "--warmup", "0", "--runs", "1", "--out", str(out)],
    ("det-train",): lambda i, out: ["det-train", *DET, "--output", str(out / "det"),
                                    "--synthetic-dir", str(i.synthetic)],
    ("det-eval",): lambda i, out: ["det-eval", str(i.det / "last.pt"), "--workers", "0", "--threads", "1",
                                   "--reparameterize", "--output", str(out / "eval.json"),
                                   "--save-deploy", str(out / "deploy.pt")],
    ("costmodel", "sample"): lambda i, out: ["costmodel", "sample", "--out", str(out / "samples"), "--n", "3",
                                             *SAMPLE],
    ("costmodel", "fit"): lambda i, out: ["costmodel", "fit", str(i.samples), "--out", str(out / "model.json")],
    ("costmodel", "predict"): lambda i, out: ["costmodel", "predict", str(i.costmodel), "mobiledet_cpu"],
    ("search",): lambda i, out: ["search", "--costmodel", str(i.costmodel), "--target-ms", _target_ms(i.costmodel),
                                 "--output", str(out / "search"), "--data", str(i.synthetic), "--img-size", "64",
                                 "--steps", "2", "--warmup-fraction", "0.5", "--batch-size", "2",
                                 "--reward-fraction", "0.5", "--log-every", "1", "--workers", "0", "--threads", "1"],
}


@pytest.fixture(autouse=True)
def ctrl_c_reaches_the_process():
    """Ctrl-C as a terminal delivers it: a test run started as a background job (``cmd &`` without job
    control) inherits SIGINT *ignored*, and so would every command it runs and every child it starts, which
    no user's terminal does. Python's own handler for the test, the old disposition back after it."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    return Inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """A temporary directory of the test's own: ``$TMPDIR`` and ``tempfile`` point there."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    threads = torch.get_num_threads()
    yield tmp
    torch.set_num_threads(threads)


class Interrupter:
    """A profiler hook counting calls into repghost's functions (only those named ``name``, when
    given); at call number ``at`` it runs ``before`` and raises SIGINT in this process, which the
    process's handler then takes as a Ctrl-C at that point."""

    def __init__(self, at: int | None = None, before=None, name: str | None = None):
        self.at, self.before, self.name, self.calls, self.fired = at, before, name, 0, False

    def __call__(self, frame, event, arg):
        code = frame.f_code
        if event != "call" or code.co_name == "<module>" or not code.co_filename.startswith(SRC):
            return
        if self.name is not None and code.co_name != self.name:
            return
        self.calls += 1
        if self.calls == self.at:
            sys.setprofile(None)
            self.fired = True
            if self.before is not None:
                self.before()
            signal.raise_signal(signal.SIGINT)


def _run(argv: list[str], hook: Interrupter) -> int:
    sys.setprofile(hook)
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail(f"KeyboardInterrupt escaped main({argv})")
    finally:
        sys.setprofile(None)


def scratch_entries(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(SCRATCH_PREFIX))


def assert_complete(out: Path) -> None:
    """Every file under ``out`` is whole: no staged ``.NAME.*.tmp`` file, and each parses as what
    its name says (an exported ONNX file carries its preprocessing contract: the export finished)."""
    from PIL import Image
    from safetensors.torch import load_file

    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = path.name
        assert not (name.startswith(".") and name.endswith(".tmp")), f"staged file left: {path}"
        assert path.stat().st_size > 0 or name.endswith(".txt"), f"empty file: {path}"
        if name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".jsonl"):
            assert path.read_text().endswith("\n"), f"cut record in {path}"
            [json.loads(line) for line in path.read_text().splitlines()]
        elif name.endswith(".csv"):
            with path.open(newline="") as f:
                assert next(csv.reader(f)), f"no header in {path}"
        elif name.endswith(".yaml"):
            assert isinstance(yaml.safe_load(path.read_text()), dict)
        elif name.endswith(".png"):
            with Image.open(path) as image:
                image.verify()
        elif name.endswith(".pt"):
            torch.load(path, weights_only=True)
        elif name.endswith(".safetensors"):
            load_file(path)
        elif name.endswith(".onnx"):
            import onnx

            props = {p.key for p in onnx.load(str(path)).metadata_props}
            assert "repghost_preprocess" in props, f"{path}: an export that did not finish"
        elif not (name.endswith((".md", ".txt")) or name.startswith("events.out.tfevents")):
            raise AssertionError(f"unexpected file {path}")


def assert_one_interrupt_line(err: str, context: str) -> None:
    """Ctrl-C gets one line on stderr, and no traceback (lines of work finished meanwhile may come too)."""
    assert "Traceback" not in err, context
    assert len([line for line in err.splitlines() if "interrupt" in line]) == 1, context


def test_every_command_has_an_interrupt_case():
    assert sorted(commands()) == sorted(INVOCATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(INVOCATIONS), ids=" ".join)
def test_ctrl_c_at_a_random_point_stops_cleanly(command, inputs, scratch, tmp_path, capfd):
    count = Interrupter()
    (tmp_path / "done").mkdir()  # an output file goes into a directory that exists
    assert _run(INVOCATIONS[command](inputs, tmp_path / "done"), count) == 0, capfd.readouterr().err
    capfd.readouterr()
    assert scratch_entries(scratch) == []

    rng = random.Random(f"{SEED} {' '.join(command)}")
    for draw in range(DRAWS):
        at = rng.randint(1, int(count.calls * SPAN))
        out = tmp_path / f"cut{draw}"
        out.mkdir()  # an output file goes into a directory that exists
        hook = Interrupter(at, before=capfd.readouterr)  # what was printed before the interrupt is not checked
        code = _run(INVOCATIONS[command](inputs, out), hook)
        err = capfd.readouterr().err
        context = f"interrupted at call {at} of {count.calls}; stderr after it: {err!r}"
        assert hook.fired, context
        assert code == 130, context
        assert_one_interrupt_line(err, context)
        line = next(line for line in err.splitlines() if "interrupt" in line)
        # Only a training loop's own handler (train, det-train, search, the studies' runs) words it otherwise.
        assert line.startswith(f"repghost {' '.join(command)}: interrupted") or command in IN_LOOP_COMMANDS, context
        assert scratch_entries(scratch) == [], context
        if out.exists():
            assert_complete(out)


IN_LOOP_COMMANDS = {("train",), ("det-train",), ("search",), ("study", "ablation"), ("study", "detection"),
                    ("study", "fidelity")}
#: Commands that stop at a safe point themselves: Ctrl-C in their loop, at the first call of the named function.
IN_LOOP = [
    pytest.param(("search",), "train_weights", id="search"),
    pytest.param(("train",), "_train_step", id="train"),
    pytest.param(("det-train",), "_train_step", id="det-train"),
    pytest.param(("study", "ablation"), "_train_step", id="study ablation"),
    pytest.param(("study", "detection"), "_train_step", id="study detection"),
    pytest.param(("study", "fidelity"), "_train_step", id="study fidelity"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "function"), IN_LOOP)
def test_ctrl_c_in_a_training_loop_saves_and_stops_cleanly(command, function, inputs, scratch, tmp_path, capfd):
    out = tmp_path / "cut"
    out.mkdir()
    hook = Interrupter(1, before=capfd.readouterr, name=function)
    code = _run(INVOCATIONS[command](inputs, out), hook)
    err = capfd.readouterr().err
    assert hook.fired and code == 130, err
    assert_one_interrupt_line(err, err)
    assert scratch_entries(scratch) == []
    assert_complete(out)
    assert list(out.rglob("last.pt")) or list(out.rglob("search.pt")), "no resumable checkpoint"


@pytest.mark.slow
def test_ctrl_c_in_the_last_training_step_is_not_lost(inputs, tmp_path, capfd):
    """The loop has no step left to stop at: the run stops before its finishing work, resumably."""
    argv = INVOCATIONS[("train",)](inputs, tmp_path)
    steps = 3  # 12 images, batch 4, 1 epoch
    assert _run(argv, Interrupter(steps, name="_train_step")) == 130
    run = tmp_path / "run"
    assert (run / "last.pt").is_file() and not (run / "best_deploy.safetensors").exists()
    assert main(["train", "--resume", str(run / "last.pt")]) == 0
    assert (run / "best_deploy.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("step", ["compare_onnx", "compare_int8"])
def test_an_export_cut_before_its_check_is_done_leaves_no_file(step, inputs, scratch, tmp_path, capfd):
    """The ONNX file is on disk, whole, but not yet checked (or its int8 model not yet measured):
    Ctrl-C then leaves neither."""
    out = tmp_path / "cut"
    out.mkdir()
    hook = Interrupter(1, name=step)
    assert _run(INVOCATIONS[("export",)](inputs, out), hook) == 130 and hook.fired
    assert_one_interrupt_line(capfd.readouterr().err, step)
    assert not out.exists() or list(out.iterdir()) == []
    assert scratch_entries(scratch) == []


# -- a real Ctrl-C: SIGINT to a repghost process group, while its scratch files are on disk -----------
REAL = {
    "costmodel sample": lambda out: ["costmodel", "sample", "--out", str(out / "samples"), "--n", "6", *SAMPLE],
    # Rounds enough (tens of seconds) that the signal, sent within a second of the export, lands while it times.
    "bench onnxruntime": lambda out: ["bench", "repghostnet_050@deploy", "--runtimes", "onnxruntime", "--img-size",
                                      "32", "--warmup", "1", "--runs", "100000", "--out", str(out)],
    "export litert": lambda out: ["export", "repghostnet_050", str(out / "model.tflite"), "--format", "litert",
                                  "--img-size", "32"],
}


def _repghost(argv: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(SRC).parent) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "repghost", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(REAL))
def test_real_ctrl_c_while_scratch_files_exist(case, scratch, tmp_path):
    if case == "export litert":
        from repghost.deploy.edge import MissingRuntimeError, edge_runtime

        try:
            edge_runtime("litert").require(export=True)
        except MissingRuntimeError as err:
            pytest.skip(str(err))
    out = tmp_path / "out"
    out.mkdir()  # an output file goes into a directory that exists
    proc = _repghost(REAL[case](out))
    deadline = time.monotonic() + 300
    while not scratch_entries(scratch):
        assert proc.poll() is None, f"ended before its scratch files appeared: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, "no scratch files after 300 s"
        time.sleep(0.02)
    time.sleep(random.Random(f"{SEED} {case}").uniform(0.0, 1.0))
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group gets it
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err, err
    assert scratch_entries(scratch) == []
    if out.exists():
        assert_complete(out)
    if case == "costmodel sample":  # the same command continues where it stopped
        from repghost.costmodel.sampling import read_records

        done = _repghost(REAL[case](out))
        assert done.wait(timeout=300) == 0, done.communicate()[1]
        archs = [tuple(r["arch"]) for r in read_records(out / "samples")]
        assert len(archs) == len(set(archs)) == 6
        assert scratch_entries(scratch) == []


# -- scratch space is removed when the work fails half-way ---------------------------------------------
class Refused(RuntimeError):
    pass


@pytest.fixture
def refusing_onnxruntime(monkeypatch):
    """onnxruntime refuses every model: the work fails after its exports are on disk."""
    import repghost.deploy.onnx_export
    import repghost.study.concat_add

    def refuse(*args, **kwargs):
        raise Refused("onnxruntime refused the model")

    monkeypatch.setattr(repghost.deploy.onnx_export, "session", refuse)
    monkeypatch.setattr(repghost.study.concat_add, "session", refuse)


def _tiny_model():
    from repghost import create_model, reparameterize

    return reparameterize(create_model("repghostnet_050", num_classes=10).eval())


def _time_modules():
    from repghost.bench import time_modules

    return time_modules({"m": _tiny_model()}, "onnxruntime", (1, 3, 32, 32), warmup=0, runs=1, progress=False)


def _concat_add():
    from repghost.study.concat_add import run_study

    return run_study((1,), img_size=32, runs=1, warmup=0, progress=False)


def _sample(out: Path):
    from repghost.costmodel.sampling import TimingSettings, sample
    from repghost.costmodel.space import SearchSpace

    settings = TimingSettings(img_size=32, warmup=0, runs=1, chunk=2, reference=None)
    return sample(SearchSpace(), out / "samples", 2, settings=settings, progress=False)


def _search_measure():
    from repghost.costmodel.space import SearchSpace
    from repghost.search.engine import measure

    space = SearchSpace()
    return measure(space, space.load_arch("mobiledet_cpu"), dict(runtime="onnxruntime", img_size=32))


SCRATCH_USERS = {"time_modules (study ablation)": lambda out: _time_modules(),
                 "concat-add study": lambda out: _concat_add(),
                 "costmodel sample": _sample,
                 "search's latency measurement": lambda out: _search_measure()}


@pytest.mark.parametrize("work", sorted(SCRATCH_USERS))
def test_scratch_space_is_removed_when_the_work_fails_half_way(work, scratch, tmp_path, refusing_onnxruntime):
    with pytest.raises(Refused):
        SCRATCH_USERS[work](tmp_path)
    assert scratch_entries(scratch) == []


def test_a_benchmark_whose_runtime_fails_records_it_and_leaves_no_scratch(scratch, refusing_onnxruntime):
    from repghost.bench import BenchConfig, run_benchmark

    (result,) = run_benchmark(BenchConfig(models=["repghostnet_050@deploy"], runtimes=["onnxruntime"],
                                          img_sizes=[32], warmup=0, runs=1, progress=False))
    assert result.median_ms is None and "refused" in result.error
    assert scratch_entries(scratch) == []


@pytest.mark.slow
def test_a_runner_without_a_cache_path_loads_its_export_and_removes_it(scratch):
    from repghost.bench import make_runner

    run = make_runner(_tiny_model(), "onnxruntime", (1, 3, 32, 32), 1, torch.device("cpu"))
    assert scratch_entries(scratch) == []
    assert run()[0].shape == (1, 10)  # the runtime holds the model; the file is not needed any more


@pytest.mark.slow
def test_sigterm_stops_a_command_as_ctrl_c_does_and_leaves_no_scratch(scratch, tmp_path):
    """``timeout`` or a scheduler sends SIGTERM: the same one line, exit 130, no scratch files left."""
    out = tmp_path / "out"
    out.mkdir()
    proc = _repghost(REAL["bench onnxruntime"](out))
    deadline = time.monotonic() + 300
    while not scratch_entries(scratch):
        assert proc.poll() is None, f"ended before its scratch files appeared: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, "no scratch files after 300 s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err, err
    assert scratch_entries(scratch) == []



def test_a_ctrl_c_that_torchs_exporter_wraps_stays_a_ctrl_c(tmp_path, monkeypatch):
    """torch.onnx may re-raise a KeyboardInterrupt as another error (``AssertionError`` from it): the
    export must stop as Ctrl-C, not fall back to the other exporter or fail with a traceback."""
    import torch

    from repghost import create_model
    from repghost.deploy.onnx_export import ExportError, export_for_runtime

    def wrapped(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise AssertionError("KeyboardInterrupt") from err

    monkeypatch.setattr(torch.onnx, "export", wrapped)
    with pytest.raises(KeyboardInterrupt):
        export_for_runtime(create_model("repghostnet_050").eval(), tmp_path / "m.onnx", (1, 3, 32, 32))
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(AssertionError("a bug")))
    with pytest.raises(ExportError):  # any other failure is still an export error
        export_for_runtime(create_model("repghostnet_050").eval(), tmp_path / "m.onnx", (1, 3, 32, 32))
    assert list(tmp_path.iterdir()) == []


def test_an_error_a_library_raises_from_a_ctrl_c_ends_the_command_as_a_ctrl_c(monkeypatch, capsys):
    """onnxruntime's import, cut by a Ctrl-C in its initialisation, raises ``ImportError: initialization
    failed`` from the KeyboardInterrupt (seen in a real Ctrl-C test): the command must still end as an
    interrupted one — exit 130, one line — not as a failure with a traceback. An error without a Ctrl-C
    behind it is left alone."""
    from repghost.cli import models as cli_models

    def import_cut_by_ctrl_c(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise ImportError("initialization failed") from err

    monkeypatch.setattr(cli_models, "_cmd_models", import_cut_by_ctrl_c)
    assert main(["models"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "repghost models: interrupted", err

    def plain_import_error(args):
        raise ImportError("a bug")

    monkeypatch.setattr(cli_models, "_cmd_models", plain_import_error)
    with pytest.raises(ImportError, match="a bug"):  # no table knows it: a bug's traceback still shows
        main(["models"])


class _Pids(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return os.getpid()


def test_data_loader_workers_outlive_a_stop_signal_sent_to_the_process_group():
    """A machine or scheduler that stops a job signals every process of it, workers included: the loop must
    be the one that stops (and saves), not die because a worker did."""
    import time

    from repghost.data import worker_ignores_stop

    loader = torch.utils.data.DataLoader(_Pids(), batch_size=1, num_workers=1, worker_init_fn=worker_ignores_stop)
    batches = iter(loader)
    worker = int(next(batches)[0])
    assert worker != os.getpid()
    os.kill(worker, signal.SIGTERM)
    time.sleep(0.5)
    assert len(list(batches)) == 63  # the worker is alive and the epoch ends normally
