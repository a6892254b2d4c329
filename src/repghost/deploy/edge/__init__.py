"""Edge runtimes behind one interface (:class:`EdgeRuntime`): MNN, ncnn, OpenVINO, LiteRT.

``repghost export --format NAME`` and ``repghost bench --runtimes NAME`` take their names from
:data:`EDGE_RUNTIMES`; adding a runtime is one module here and one entry below.
"""

from __future__ import annotations

from .base import Captured, EdgeRuntime, MissingRuntimeError, Runner, captured_output
from .litert import LiteRTRuntime
from .mnn import MNNRuntime
from .ncnn import NCNNRuntime
from .openvino import OpenVINORuntime

EDGE_RUNTIMES: dict[str, EdgeRuntime] = {rt.name: rt for rt in
                                         (MNNRuntime(), NCNNRuntime(), OpenVINORuntime(), LiteRTRuntime())}


def edge_runtime(name: str) -> EdgeRuntime:
    if name not in EDGE_RUNTIMES:
        raise ValueError(f"edge runtime must be one of {list(EDGE_RUNTIMES)}, got {name!r}")
    return EDGE_RUNTIMES[name]


def edge_versions() -> dict[str, str]:
    """Installed edge runtime packages and their versions (from package metadata; imports nothing)."""
    return {rt.name: rt.version() for rt in EDGE_RUNTIMES.values() if rt.version() != "not installed"}


__all__ = ["EDGE_RUNTIMES", "Captured", "EdgeRuntime", "MissingRuntimeError", "Runner", "captured_output",
           "edge_runtime", "edge_versions"]
