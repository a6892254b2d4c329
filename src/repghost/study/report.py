"""What every study returns (:class:`StudyResult`), the one rule that answers the paper's claims
(:func:`judge`), and the one place a study's files are written.

A study fills a table (``rows`` under ``columns``), answers the paper's claims (``claims``, each
judged by :func:`judge`) and names a plot function; :func:`write_report` writes ``<name>.md``,
``.json``, ``.csv`` and the PNG(s) into the output directory, each file atomically.
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


#: A measured effect reproduces the paper's magnitude when it lies within ±25 % of the paper's figure
#: (13.6 % faster in the paper: 10.2 % to 17.0 % faster here).
MAGNITUDE_TOLERANCE = 0.25
#: A "comparable latency" claim holds when the two latencies differ by at most 5 % (|1 − t_a / t_b| ≤ 0.05).
COMPARABLE_TOLERANCE = 0.05

MAGNITUDE_HOLDS = "magnitude holds"
DIRECTION_HOLDS = "direction holds"
HOLDS = "holds"  # a comparable claim within COMPARABLE_TOLERANCE
DOES_NOT_HOLD = "does not hold"
UNDECIDED = "undecided"
VERDICTS = (MAGNITUDE_HOLDS, DIRECTION_HOLDS, HOLDS, DOES_NOT_HOLD, UNDECIDED)

VERDICT_RULES = (
    f"Verdicts: *{MAGNITUDE_HOLDS}*: the measured effect has the paper's direction and lies within "
    f"±{MAGNITUDE_TOLERANCE:.0%} of the paper's figure; *{DIRECTION_HOLDS}*: the paper's direction, outside that band "
    f"(or the paper gives no figure for this setting); *{HOLDS}* (a comparable-latency claim): the two latencies "
    f"differ by at most {COMPARABLE_TOLERANCE:.0%}; *{DOES_NOT_HOLD}*: the opposite direction, or a comparable claim "
    f"beyond {COMPARABLE_TOLERANCE:.0%}; *{UNDECIDED}*: not measured, or a difference within the run-to-run spread.")


def faster_or_slower(gain: float) -> str:
    """``1 − t_a / t_b`` as words: ``"20.8% faster"`` or ``"6.3% slower"`` (the paper's "% faster")."""
    return f"{gain:.1%} faster" if gain >= 0 else f"{-gain:.1%} slower"


def judge(paper: float | None, measured: float | None, describe: Callable[[float], str] = faster_or_slower,
          comparable: bool = False, noise: float | None = None) -> tuple[str, str]:
    """``(verdict, reason)`` for one claim; the reason names both figures and the threshold used.

    Figures are signed effects, positive in the claim's direction (``1 − t_a / t_b`` for "a is faster
    than b"); ``describe`` words one. ``paper`` is the paper's figure (``None``: the paper gives none for
    this setting, so only the direction can hold). ``comparable``: the claim is that the two are about
    equal, judged on ``|measured| ≤`` :data:`COMPARABLE_TOLERANCE`. ``noise``: a measured ``|effect|`` at
    most this (e.g. the seeds' standard deviation) is undecided rather than counted either way.
    """
    if measured is None or math.isnan(measured):
        return UNDECIDED, "not measured"
    here = describe(measured)
    if comparable:
        band = f"±{COMPARABLE_TOLERANCE:.0%}"
        if abs(measured) <= COMPARABLE_TOLERANCE:
            return HOLDS, f"{here}: within {band}"
        return DOES_NOT_HOLD, f"{here}: beyond {band}, not comparable"
    if noise is not None and abs(measured) <= noise:
        return UNDECIDED, f"{here}: within ±{noise:.2f}, the spread between runs"
    if measured <= 0:
        return DOES_NOT_HOLD, f"{here}: the opposite of the paper's direction"
    if paper is None:
        return DIRECTION_HOLDS, f"{here}: the paper's direction (it gives no figure to compare the magnitude with)"
    if paper <= 0:
        raise ValueError(f"the paper's figure must be positive in the claim's direction, got {paper}")
    low, high = paper * (1 - MAGNITUDE_TOLERANCE), paper * (1 + MAGNITUDE_TOLERANCE)
    band = (f"the band ±{MAGNITUDE_TOLERANCE:.0%} around the paper's {describe(paper)} ({describe(low)} to "
            f"{describe(high)})")
    if low <= measured <= high:
        return MAGNITUDE_HOLDS, f"{here}: within {band}"
    return DIRECTION_HOLDS, f"{here}: {'below' if measured < low else 'above'} {band}"


@dataclass
class Claim:
    """A claim of the paper and what this machine says about it (``verdict``: one of :data:`VERDICTS`,
    ``reason``: the figures compared and the threshold, from :func:`judge`)."""
    claim: str
    paper: str
    measured: str
    verdict: str
    reason: str

    @classmethod
    def judged(cls, claim: str, paper: str, measured: str, paper_figure: float | None,
               measured_figure: float | None, **rule) -> Claim:
        """The claim with its verdict from :func:`judge` (``rule``: its keyword arguments)."""
        return cls(claim, paper, measured, *judge(paper_figure, measured_figure, **rule))


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
        parts += ["", "| paper's claim | paper | here | verdict | why |", "|---|---|---|---|---|"]
        parts += [f"| {c.claim} | {c.paper} | {c.measured} | {_bold_if_not(c.verdict)} | {c.reason} |"
                  for c in result.claims]
        parts += ["", VERDICT_RULES]
    if result.notes:
        parts += [""] + [f"- {n}" for n in result.notes]
    return "\n".join(parts)


def _bold_if_not(verdict: str) -> str:
    return f"**{verdict}**" if verdict == DOES_NOT_HOLD else verdict


def _csv_text(result: StudyResult) -> str:
    keys = list(dict.fromkeys(k for row in result.rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for row in result.rows:  # nested values (lists, dicts) as JSON text in one cell
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict, tuple)) else v for k, v in row.items()})
    return buf.getvalue()


def report_json(result: StudyResult) -> dict:
    """What ``<name>.json`` holds: the table's rows, the judged claims and the rules that judged them."""
    body = dict(study=result.name, title=result.title, meta=result.meta, rows=result.rows,
                claims=[c.__dict__ for c in result.claims], notes=result.notes)
    if result.claims:
        body["verdict_rules"] = dict(magnitude_tolerance=MAGNITUDE_TOLERANCE, comparable_tolerance=COMPARABLE_TOLERANCE,
                                     text=VERDICT_RULES)
    return body


def write_report(result: StudyResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<name>.md``, ``<name>.json``, ``<name>.csv`` and the plot(s); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / result.name
    paths = {"md": atomic_write_text(stem.with_suffix(".md"), format_report(result) + "\n")}
    paths["json"] = atomic_write_json(stem.with_suffix(".json"), report_json(result), indent=1)
    paths["csv"] = atomic_write_text(stem.with_suffix(".csv"), _csv_text(result))
    if result.plot is not None:
        paths.update(result.plot(result, out_dir))
    return paths


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return Path(path)
