"""Benchmarks: the latency harness, the Concat-vs-Add study, plots and reports."""

from .concat_add import StudyRow, format_study, run_study, write_study
from .latency import (
    BenchConfig,
    Result,
    environment,
    format_table,
    run_benchmark,
    time_interleaved,
    time_modules,
    write_results,
)
from .runtimes import RUNTIMES, make_runner
from .specs import PAPER_TOP1, ModelSpec

__all__ = [
    "PAPER_TOP1", "RUNTIMES", "BenchConfig", "ModelSpec", "Result", "StudyRow", "environment", "format_study",
    "format_table", "make_runner", "run_benchmark", "run_study", "time_interleaved", "time_modules", "write_results",
    "write_study",
]
