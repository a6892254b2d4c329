"""What every study returns (:class:`StudyResult`) and the one place its files are written.

A study fills a table (``rows`` under ``columns``), answers the paper's claims (``claims``) and
names a plot function; :func:`write_report` writes ``<name>.md``, ``.json``, ``.csv`` and the PNG(s)
into the output directory, each file atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_path, atomic_write_json, atomic_write_text


@dataclass
class Column:
    key: str
    header: str
    fmt: str = ""  # format spec for numbers, e.g. ".2f"; "" = str()


@dataclass
class Claim:
    """A claim of the paper and what this machine says about it."""
    claim: str
    paper: str
    measured: str
    holds: bool | None  # None: cannot be decided here


@dataclass
class StudyResult:
    name: str                 # file stem, e.g. "res50"
    title: str
    columns: list[Column]
    rows: list[dict]
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # settings and environment
    #: ``plot(result, out_dir) -> {label: png path}``; called by :func:`write_report`.
    plot: Callable[[StudyResult, Path], dict[str, Path]] | None = None


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if fmt and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return str(value)


def format_table(result: StudyResult) -> str:
    lines = ["| " + " | ".join(c.header for c in result.columns) + " |", "|" + "---|" * len(result.columns)]
    for row in result.rows:
        lines.append("| " + " | ".join(_cell(row.get(c.key), c.fmt) for c in result.columns) + " |")
    return "\n".join(lines)


def format_report(result: StudyResult) -> str:
    """The Markdown the study prints and writes: title, table, claims, notes."""
    parts = [f"## {result.title}", "", format_table(result)]
    if result.claims:
        parts += ["", "| paper's claim | paper | here | holds here? |", "|---|---|---|---|"]
        verdict = {True: "yes", False: "**no**", None: "undecided"}
        parts += [f"| {c.claim} | {c.paper} | {c.measured} | {verdict[c.holds]} |" for c in result.claims]
    if result.notes:
        parts += [""] + [f"- {n}" for n in result.notes]
    return "\n".join(parts)


def _csv_text(result: StudyResult) -> str:
    keys = list(dict.fromkeys(k for row in result.rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for row in result.rows:  # nested values (lists, dicts) as JSON text in one cell
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict, tuple)) else v for k, v in row.items()})
    return buf.getvalue()


def write_report(result: StudyResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<name>.md``, ``<name>.json``, ``<name>.csv`` and the plot(s); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / result.name
    paths = {"md": atomic_write_text(stem.with_suffix(".md"), format_report(result) + "\n")}
    body = dict(study=result.name, title=result.title, meta=result.meta, rows=result.rows,
                claims=[c.__dict__ for c in result.claims], notes=result.notes)
    paths["json"] = atomic_write_json(stem.with_suffix(".json"), body, indent=1)
    paths["csv"] = atomic_write_text(stem.with_suffix(".csv"), _csv_text(result))
    if result.plot is not None:
        paths.update(result.plot(result, out_dir))
    return paths


def faster_or_slower(gain: float) -> str:
    """``1 − t_a / t_b`` as words: ``"20.8% faster"`` or ``"6.3% slower"`` (the paper's "% faster")."""
    return f"{gain:.1%} faster" if gain >= 0 else f"{-gain:.1%} slower"


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return Path(path)
