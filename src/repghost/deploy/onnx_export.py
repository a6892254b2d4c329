"""ONNX export, onnxruntime sessions, and the check that ONNX and PyTorch agree.

The export uses torch's dynamo exporter at opset 18 (its native opset; asking it for 17 makes it
down-convert and fail on ReduceMean's axes input) with a dynamic batch axis and the names
``input`` / ``logits``. It gives a graph of plain ``Conv`` / ``Relu`` / ``Add`` … nodes with no
``Identity`` padding; the legacy TorchScript-based exporter is kept as ``exporter="legacy"`` for
models dynamo cannot trace.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_path, ctrl_c_behind
from ..names import ORT_OPT_LEVELS

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18
#: float32 ONNX vs PyTorch: max abs error ≤ RTOL × max abs PyTorch output (kernel order differs).
RTOL = 1e-4


class ExportError(RuntimeError):
    """The export failed or its output does not match PyTorch."""


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int] = (1, 3, 224, 224),
                opset: int = DEFAULT_OPSET, exporter: str = "dynamo", dynamic_batch: bool = True,
                output_name: str = OUTPUT_NAME) -> Path:
    """Write ``model`` (eval mode) to ``path`` as ONNX with a dynamic batch axis; return the path.
    ``output_name`` names the one output (a classifier's ``logits`` by default).

    The file is written to a temporary name and renamed, so a failed export leaves nothing behind.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    if exporter not in ("dynamo", "legacy"):
        raise ValueError(f"exporter must be 'dynamo' or 'legacy', got {exporter!r}")
    path = Path(path)
    model = model.eval()
    example = torch.randn(tuple(input_size))
    kwargs: dict = dict(input_names=[INPUT_NAME], output_names=[output_name], opset_version=opset)
    if exporter == "dynamo":
        kwargs.update(dynamo=True, external_data=False, verbose=False)
        if dynamic_batch:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    else:
        kwargs.update(dynamo=False)
        if dynamic_batch:
            kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}}
    try:
        # The dynamo exporter prints progress lines; keep the CLI output ours.
        with atomic_path(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(tmp), **kwargs)
    except Exception as err:
        if ctrl_c_behind(err):  # torch's exporter re-raises a Ctrl-C as its own error: keep it a Ctrl-C
            raise KeyboardInterrupt from err
        raise ExportError(f"ONNX export ({exporter}) failed: {type(err).__name__}: {err}") from err
    return path


def export_for_runtime(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int],
                       dynamic_batch: bool = True) -> Path:
    """The ONNX file a runtime times or converts (``bench``, the cost model's timings, the edge
    converters), as opposed to the user's own ``export``, which takes ``--exporter``. One policy for
    all of them, so they time and convert the same graph: torch's TorchScript-based exporter first —
    for a deploy model it gives the dynamo exporter's Conv / Relu / Add / … graph plus ``Identity``
    nodes that onnxruntime's optimizer and every converter drop, 3–4× faster — and the dynamo
    exporter for the models it cannot trace."""
    try:
        return export_onnx(model, path, input_size, exporter="legacy", dynamic_batch=dynamic_batch)
    except ExportError:
        return export_onnx(model, path, input_size, exporter="dynamo", dynamic_batch=dynamic_batch)


def op_counts(path: str | os.PathLike) -> dict[str, int]:
    """How many nodes of each op type the ONNX graph at ``path`` has (main graph)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(collections.Counter(node.op_type for node in graph.node))


def session(path: str | os.PathLike, threads: int = 1, opt_level: str = "all", providers: Sequence[str] | None = None,
            profile_prefix: str | None = None):
    """An onnxruntime ``InferenceSession`` with ``threads`` intra-op threads and one inter-op thread.

    ``opt_level`` is onnxruntime's graph optimization level: ``"disable"``, ``"basic"``,
    ``"extended"`` or ``"all"`` (the default; includes the NCHWc layout transform on x86).
    ``profile_prefix`` turns on onnxruntime's per-node profiler.
    """
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    levels = dict(zip(ORT_OPT_LEVELS, (level.ORT_DISABLE_ALL, level.ORT_ENABLE_BASIC, level.ORT_ENABLE_EXTENDED,
                                       level.ORT_ENABLE_ALL), strict=True))
    if opt_level not in levels:
        raise ValueError(f"opt_level must be one of {list(levels)}, got {opt_level!r}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = levels[opt_level]
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))


@dataclass(frozen=True)
class Comparison:
    max_abs: float
    scale: float
    rtol: float

    @property
    def max_rel(self) -> float:
        return self.max_abs / self.scale if self.scale > 0 else self.max_abs

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.rtol

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "FAIL"
        return (f"max abs error {self.max_abs:.3g} (relative {self.max_rel:.3g} of output scale {self.scale:.3g}; "
                f"tolerance {self.rtol:g}) {verdict}")


def compare_onnx(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int] = (2, 3, 224, 224),
                 rtol: float = RTOL, seed: int = 0) -> Comparison:
    """Run ``model`` and the ONNX file (opened by :func:`repghost.deploy.runner.open_model`, as eval,
    bench and predict open it) on the same random input; the default batch of 2 also exercises the
    dynamic batch axis."""
    from .runner import compare_with_torch, open_model

    return compare_with_torch(open_model(path, runtime="onnxruntime", threads=1), model, input_size, rtol, seed)


def set_onnx_metadata(path: str | os.PathLike, props: dict[str, str]) -> Path:
    """Add ``props`` to the ONNX file's ``metadata_props`` (rewritten atomically)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        entry = existing.get(key) or model.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


def onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (what :func:`set_onnx_metadata` wrote)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise ExportError(f"cannot read {path} as ONNX: {type(err).__name__}: {err}") from None
    return {p.key: p.value for p in model.metadata_props}


def export_torchscript(model: nn.Module, path: str | os.PathLike,
                       input_size: Sequence[int] = (1, 3, 224, 224), extra_files: dict[str, str] | None = None) -> Path:
    """Trace ``model``, freeze it (weights become constants) and save with ``extra_files``
    (e.g. the preprocessing contract); returns the path.

    ``torch.jit.optimize_for_inference`` is left to load time (see :func:`load_torchscript`): its
    rewrites are tied to the machine that runs the model.
    """
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.freeze(torch.jit.trace(model.eval(), torch.randn(tuple(input_size))))
    with atomic_path(path) as tmp:
        frozen.save(str(tmp), _extra_files=dict(extra_files or {}))
    return path


def load_torchscript(path: str | os.PathLike, optimize: bool = True) -> torch.jit.ScriptModule:
    module = torch.jit.load(str(path), map_location="cpu").eval()
    return torch.jit.optimize_for_inference(module) if optimize else module
