"""The command line answers without the heavy libraries: building the parser, ``--help``, usage
errors and ``repghost models`` import neither torch nor timm nor torchvision (their start-up time is
measured in benchmarks/startup.py, not here). And the light name tables agree with the library."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import repghost
from repghost import names

SRC = str(Path(repghost.__file__).resolve().parents[1])
HEAVY = ("torch", "timm", "torchvision", "numpy", "onnx", "onnxruntime")

#: (argv, exit code): help, listings and usage errors of every command.
LIGHT_COMMANDS = [
    (["--help"], 0), (["--version"], 0), ([], 2), (["models"], 0), (["models", "repghostnet_*"], 0),
    (["models", "zzz*"], 2), (["bench", "--threads", "0"], 2), (["bench", "--runtimes", "bogus"], 2),
    (["train", "--help"], 0), (["train", "--epochs", "0"], 2), (["train", "--model", "repghostnet_10"], 2),
    (["eval", "--help"], 0), (["eval", "missing.pt"], 2), (["convert", "--help"], 0), (["export", "--help"], 0),
    (["export"], 2), (["export", "repghostnet_100", "m.onnx", "--recipe", "int4"], 2),
    (["det-train", "--help"], 0), (["det-train", "--backbone", "typo"], 2), (["det-eval", "--help"], 0),
    (["costmodel", "sample", "--help"], 0), (["costmodel", "fit", "--help"], 0), (["search", "--help"], 0),
    (["search"], 2), (["study", "res50", "--help"], 0), (["study", "ablation", "--help"], 0),
    (["study", "figure1", "--help"], 0), (["study", "concat-add", "--help"], 0),
    (["study", "figure1", "--runs", "0"], 2), (["study", "detection", "--help"], 0),
    (["study", "detection", "--archs", "repghostnet_050", "--seeds", "-1"], 2),
]

_PROBE = """
import contextlib, io, json, sys
from repghost.cli import main
results = []
for argv, _ in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    results.append([argv, code, [m for m in json.loads(sys.argv[2]) if m in sys.modules], err.getvalue()])
print(json.dumps(results))
"""


def test_help_usage_errors_and_models_import_no_heavy_library():
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(LIGHT_COMMANDS), json.dumps(HEAVY)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for (argv, code, heavy, err), (_, expected) in zip(json.loads(proc.stdout), LIGHT_COMMANDS, strict=True):
        assert (code, heavy) == (expected, []), (argv, err)
        assert expected == 0 or not argv or err.startswith(f"repghost {argv[0]}"), (argv, err)  # one error line


def test_import_repghost_loads_its_api_on_first_use():
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = ("import sys, repghost; light = 'torch' not in sys.modules; "
            "model = repghost.create_model('repghostnet_050').eval(); "
            "print(light, repghost.is_deploy(repghost.reparameterize(model)))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["True", "True"], proc.stderr


def test_lazy_packages_keep_their_names():
    import repghost.deploy.pipeline  # noqa: F401  (imports the quantize submodule)
    import repghost.train.evaluate  # noqa: F401
    from repghost.deploy import quantize
    from repghost.train import evaluate

    # A function exported under its own submodule's name stays the package's attribute.
    assert callable(quantize) and quantize is sys.modules["repghost.deploy.quantize"].quantize
    assert evaluate is sys.modules["repghost.train.evaluate"].evaluate and repghost.train.evaluate is evaluate
    assert repghost.profile is sys.modules["repghost.profile"].profile
    assert {"create_model", "reparameterize", "profile"} <= set(dir(repghost)) and repghost.layers.fuse
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        repghost.nothing  # noqa: B018


def test_name_tables_agree_with_the_library():
    from repghost.bench.runtimes import RUNTIMES
    from repghost.deploy.edge import EDGE_RUNTIMES
    from repghost.deploy.pipeline import FORMATS
    from repghost.detection.backbone import backbone_name
    from repghost.models.registry import _MODELS

    ours = sorted(name for name, builder in _MODELS.items() if builder.__module__.startswith("repghost."))
    assert names.MODEL_NAMES == tuple(ours)
    assert tuple(EDGE_RUNTIMES) == names.EDGE_RUNTIME_NAMES
    assert RUNTIMES is names.RUNTIMES and FORMATS is names.EXPORT_FORMATS
    # DetectorConfig keeps a registered backbone without resolving it: each is a backbone as it is.
    assert all(backbone_name(name) == name for name in names.MODEL_NAMES)


def test_unknown_model_reads_the_same_from_the_command_line_and_the_registry():
    from repghost.cli.args import model_name
    from repghost.models import UnknownModelError, resolve_model_name

    with pytest.raises(UnknownModelError) as library:
        resolve_model_name("repghostnet_10")
    with pytest.raises(argparse.ArgumentTypeError) as cli:
        model_name("repghostnet_10")
    assert str(cli.value) == str(library.value)
