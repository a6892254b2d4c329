"""Benchmarks: the latency harness, runtimes, plots and reports (the Concat-vs-Add study: repghost.study)."""

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
    "PAPER_TOP1", "RUNTIMES", "BenchConfig", "ModelSpec", "Result", "environment", "format_table", "make_runner",
    "run_benchmark", "time_interleaved", "time_modules", "write_results",
]
