"""The package's import graph: no cycles, edges point down the floors, no sibling's private names.

Read from the source with :mod:`ast` (every ``import`` statement, lazy ones inside functions included),
so an upward import hidden in a function body counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "repghost"

#: The floors, bottom first: a unit may import from its own floor's other units (siblings, public
#: names only) and from floors below it, never from a floor above.
FLOORS = [
    {"limits", "io", "progress", "preprocess", "data", "layers", "names", "lazy"},
    {"models", "profile"},
    {"reparam", "checkpoint"},
    {"run", "deploy", "train", "detection"},
    {"bench", "costmodel", "study", "search"},
    # The package's face (``repghost/__init__.py``) re-exports from the floors below; nothing under it
    # imports through it.
    {"cli", "__init__", "__main__"},
]
FLOOR_OF = {unit: i for i, floor in enumerate(FLOORS) for unit in floor}


def _unit(module: str) -> str:
    """``repghost.a.b`` -> ``a``: the top-level package or module a module belongs to."""
    return module.split(".")[1] if module.count(".") else "__init__"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges() -> list[tuple[str, str, str, int]]:
    """(importer module, imported module, imported name or '', line) for every repghost import."""
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        importer = _module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges += [(importer, a.name, "", node.lineno) for a in node.names if a.name.startswith("repghost")]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(importer, path.name == "__init__.py", node)
                if target.split(".")[0] == "repghost":
                    edges += [(importer, target, a.name, node.lineno) for a in node.names]
    return edges


def _target_unit(target: str, name: str) -> str:
    """The unit an import reaches: ``from repghost import cli`` reaches ``cli``, not the face."""
    if target == "repghost" and ((SRC / name / "__init__.py").exists() or (SRC / f"{name}.py").exists()):
        return name
    return _unit(target)


def unit_graph(edges) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for importer, target, name, _ in edges:
        a, b = _unit(importer), _target_unit(target, name)
        if a != b:
            graph.setdefault(a, set()).add(b)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_unit_has_a_floor():
    units = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert units - set(FLOOR_OF) == set(), "give each new package a floor in FLOORS"


def test_the_package_graph_has_no_cycle():
    assert find_cycle(unit_graph(import_edges())) is None


def test_imports_point_down_the_floors():
    upward = []
    for importer, target, name, line in import_edges():
        a, b = _unit(importer), _target_unit(target, name)
        if a == b:
            continue
        if FLOOR_OF[b] > FLOOR_OF[a]:
            upward.append(f"{importer}:{line} imports {target}.{name} (floor {FLOOR_OF[a]} -> {FLOOR_OF[b]})")
    assert upward == []


def test_no_unit_imports_another_units_private_names():
    private = []
    for importer, target, name, line in import_edges():
        if _unit(importer) == _target_unit(target, name):
            continue
        names = [name] + target.split(".")[1:]  # a private module counts as much as a private name
        if any(n.startswith("_") and not n.startswith("__") for n in names):
            private.append(f"{importer}:{line} imports {target}.{name}")
    assert private == []


#: Imports that the floors allow but the design does not: what long runs share (distributed set-up, the stop
#: flag, resumable state, schedules) lives in ``run``, so run imports none of its siblings and the engines
#: borrow nothing from each other. (importer unit, imported module prefix)
SIDEWAYS = [("run", "repghost.train"), ("run", "repghost.detection"), ("run", "repghost.deploy"),
            ("run", "repghost.search"), ("detection", "repghost.train"), ("train", "repghost.detection"),
            ("search", "repghost.train"), ("search", "repghost.detection.engine")]


def sideways_imports(edges) -> list[str]:
    found = []
    for importer, target, name, line in edges:
        reached = f"{target}.{name}" if target == "repghost" else target
        for unit, prefix in SIDEWAYS:
            if _unit(importer) == unit and (reached == prefix or reached.startswith(prefix + ".")):
                found.append(f"{importer}:{line} imports {target}.{name}")
    return found


def test_long_runs_share_through_run_not_each_other():
    assert sideways_imports(import_edges()) == []


def test_the_sideways_check_sees_an_engine_borrowing_from_another():
    edges = [("repghost.search.engine", "repghost.detection.engine", "DataConfig", 3),
             ("repghost.search.engine", "repghost.detection.data", "DataConfig", 4),
             ("repghost.run.state", "repghost", "train", 5)]
    assert sideways_imports(edges) == ["repghost.search.engine:3 imports repghost.detection.engine.DataConfig",
                                       "repghost.run.state:5 imports repghost.train"]


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": set()}, None),
])
def test_the_cycle_finder_sees_a_cycle_and_no_false_one(graph, cycle):
    assert find_cycle(graph) == cycle


def test_the_edge_reader_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "repghost"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "models" / "registry.py").write_text("def f():\n    from ..costmodel.space import thing\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", pkg)
    edges = import_edges()
    assert ("repghost.models.registry", "repghost.costmodel.space", "thing", 2) in edges
    assert unit_graph(edges) == {"models": {"costmodel"}}


def test_moved_names_still_import_from_their_old_modules():
    """The engines were split by concern and homonyms renamed; code written against the old paths still runs."""
    from repghost.detection import config, data, detectors, engine, models
    from repghost.search import config as search_config
    from repghost.search import data as search_data
    from repghost.search import engine as search_engine
    from repghost.search import report as search_report

    assert engine.TrainConfig is config.DetTrainConfig is config.TrainConfig
    assert engine.DataConfig is data.DataConfig
    assert models.build_detector is detectors.build_detector and models.DetectorConfig is detectors.DetectorConfig
    assert search_engine.SearchConfig is search_config.SearchConfig
    assert search_engine.StepBatches is search_data.StepBatches
    assert search_engine.measure is search_report.measure and search_engine.short_choice is search_report.short_choice
