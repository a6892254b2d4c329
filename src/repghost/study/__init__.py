"""The paper's experiments, one module each: ``res50``, ``ablation``, ``figure1``, ``concat_add``; and
``detection``, architectures × seeds on the detection benchmark; ``fidelity``, the super-network's
ranking against stand-alone training.

Each ``run(...)`` checks its input, measures, and returns a :class:`StudyResult`;
:func:`write_report` writes its Markdown table, JSON, CSV and plot. Each module's ``claims(rows)``
answers the paper's claims from the table's rows, so :func:`rerender` can judge a recorded study again.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text
from .report import Claim, Column, StudyResult, format_report, judge, report_json, write_report

STUDIES = ("res50", "ablation", "detection", "fidelity", "figure1", "concat-add")


def rerender(json_path: str | Path) -> dict[str, Path]:
    """Judge a recorded study's claims again from the rows in its JSON file, with the current rules, and
    rewrite that JSON and the Markdown beside it (same stem). Nothing is measured again."""
    json_path = Path(json_path)
    data = json.loads(json_path.read_text())
    module = importlib.import_module(f".{data['study']}", __name__)
    result = StudyResult(name=data["study"], title=data["title"], columns=module.COLUMNS, rows=data["rows"],
                         claims=module.claims(data["rows"]), notes=data["notes"], meta=data["meta"])
    return {"md": atomic_write_text(json_path.with_suffix(".md"), format_report(result) + "\n"),
            "json": atomic_write_json(json_path, report_json(result), indent=1)}


__all__ = ["STUDIES", "Claim", "Column", "StudyResult", "format_report", "judge", "rerender", "write_report"]
