"""The paper's experiments, one module each: ``res50``, ``ablation``, ``figure1``, ``concat_add``.

Each ``run(...)`` checks its input, measures, and returns a :class:`StudyResult`;
:func:`write_report` writes its Markdown table, JSON, CSV and plot.
"""

from .report import Claim, Column, StudyResult, format_report, write_report

STUDIES = ("res50", "ablation", "figure1", "concat-add")

__all__ = ["STUDIES", "Claim", "Column", "StudyResult", "format_report", "write_report"]
