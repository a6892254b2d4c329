"""The CLI turns errors into exit codes in one place (repghost.cli.errors), and only there."""

import ast
import importlib
from pathlib import Path

import pytest

import repghost.cli as cli
from repghost.cli import errors
from repghost.cli.args import RUNTIME_ERROR, USAGE_ERROR

CLI_DIR = Path(cli.__file__).parent


@pytest.mark.parametrize("name", errors.USAGE + errors.WORK + tuple(errors.REPORTED))
def test_every_error_the_table_names_exists(name):
    module, _, cls = name.partition(":")
    assert isinstance(getattr(importlib.import_module(module), cls), type), name


def test_library_errors_keep_their_meaning_in_every_phase():
    from repghost.data import DataError
    from repghost.models import UnknownModelError

    with pytest.raises(DataError) as caught, errors.usage_errors(ValueError):
        raise DataError("unreadable folder")  # a ValueError, but failed work wherever it is raised
    assert errors.exit_code(caught.value) == RUNTIME_ERROR
    with pytest.raises(UnknownModelError) as caught, errors.work_errors(ValueError):
        raise UnknownModelError("no model 'x'")
    assert errors.exit_code(caught.value) == USAGE_ERROR


def test_a_phase_decides_what_a_builtin_error_means():
    with pytest.raises(errors.CommandError) as caught, errors.usage_errors(ValueError):
        raise ValueError("bad recipe value")
    assert errors.exit_code(caught.value) == USAGE_ERROR and str(caught.value) == "bad recipe value"
    assert errors.exit_code(ValueError("outside any phase")) == RUNTIME_ERROR
    assert errors.exit_code(OSError("disk full")) == RUNTIME_ERROR


def test_an_error_no_table_knows_keeps_its_traceback(monkeypatch):
    """A bug is not dressed up as a one-line error with an exit code: main lets it through."""
    assert errors.exit_code(KeyError("x")) is None and errors.exit_code(AttributeError("x")) is None

    def buggy(args):
        raise KeyError("a bug")

    monkeypatch.setattr("repghost.cli.models._cmd_models", buggy)
    with pytest.raises(KeyError):
        cli.main(["models"])


def test_main_prints_one_line_with_the_code(monkeypatch, capsys):
    from repghost.checkpoint import CheckpointError

    def failing(args):
        raise CheckpointError("model.pt: not a checkpoint\n(second line kept whole)")

    monkeypatch.setattr("repghost.cli.models._cmd_models", failing)
    assert cli.main(["models"]) == RUNTIME_ERROR
    err = capsys.readouterr().err
    assert err.startswith("repghost models: error: model.pt: not a checkpoint")


def _is_exit_code(value) -> bool:
    return (isinstance(value, ast.Constant) and type(value.value) is int) or \
        (isinstance(value, ast.Name) and value.id in ("USAGE_ERROR", "RUNTIME_ERROR", "INTERRUPTED"))


def _handlers_that_pick_an_exit_code(path: Path) -> list[str]:
    """``except`` clauses in ``path`` that print an error and return (an exit code chosen outside errors.py)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ExceptHandler):
            calls = [n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
            if "fail" in calls or any(isinstance(n, ast.Return) and _is_exit_code(n.value) for n in ast.walk(node)):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_command_maps_errors_itself():
    offenders = [h for p in sorted(CLI_DIR.glob("*.py")) if p.name not in ("__init__.py", "errors.py")
                 for h in _handlers_that_pick_an_exit_code(p)]
    assert offenders == []


def test_the_structural_check_sees_a_command_that_maps_errors_itself(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def cmd(args):\n    try:\n        run()\n    except ValueError as err:\n"
                   "        return fail('x', err, 2)\n")
    assert _handlers_that_pick_an_exit_code(bad) == ["bad.py:4"]
    bad.write_text("def cmd(args):\n    try:\n        run()\n    except ValueError:\n        return 130\n")
    assert _handlers_that_pick_an_exit_code(bad) == ["bad.py:4"]


def test_every_config_refuses_a_value_outside_its_limit():
    """One validation style: the limited fields of each config are checked where the config is made."""
    from repghost.bench import BenchConfig
    from repghost.costmodel.sampling import TimingSettings
    from repghost.search import SearchConfig, SearchError

    with pytest.raises(ValueError, match="runs expected an integer >= 1, got 0"):
        BenchConfig(models=["repghostnet_050"], runs=0)
    with pytest.raises(ValueError, match="batch_sizes expected an integer >= 1, got 0"):
        BenchConfig(models=["repghostnet_050"], batch_sizes=(1, 0))
    with pytest.raises(ValueError, match="img_size expected an integer >= 32, got 16"):
        TimingSettings(img_size=16)
    with pytest.raises(SearchError, match="steps expected an integer >= 1, got 0; lr expected a number > 0"):
        SearchConfig(output="o", costmodel="c.json", steps=0, lr=-1.0)
