"""An exported graph file on its runtime: :func:`open_graph`, the one place that opens an ONNX (fp32 or
int8), OpenVINO IR, LiteRT, MNN or ncnn file and runs it on numpy arrays.

Both kinds of model files go through it: a classifier's graph (``(N, 3, S, S)`` → logits, wrapped by
:func:`repghost.deploy.runner.open_model`) and a detector's (``(N, 3, S, S)`` → ``(N, A, 4 + C)``,
wrapped by :func:`repghost.deploy.detector_files.open_detector_file`). Which runtimes a format runs on
is :data:`repghost.names.FORMAT_RUNTIMES`; a runtime outside it is refused here with
:class:`RuntimeChoiceError`, a missing runtime or a file it cannot load with :class:`RunnerError`,
each in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CheckpointError
from ..names import EXPORT_SUFFIXES, FORMAT_RUNTIMES
from . import onnx_export
from .edge import EDGE_RUNTIMES, edge_runtime

#: The formats of exported graph files (what :func:`open_graph` opens).
GRAPH_FORMATS = ("onnx", *EDGE_RUNTIMES)
#: How a message names a file of each format of :data:`~repghost.names.FORMAT_RUNTIMES` (article included).
FORMAT_NOUNS = {"checkpoint": "a training checkpoint", "safetensors": "a safetensors file",
                "torchscript": "a TorchScript file", "onnx": "an ONNX file", "openvino": "an OpenVINO IR file",
                "litert": "a LiteRT file", "mnn": "an MNN file", "ncnn": "an ncnn file"}


class RunnerError(CheckpointError):
    """A model file that cannot be opened or run as asked (its one-line message says why)."""


class RuntimeChoiceError(RunnerError):
    """A runtime the file's format does not run on: the command line must change (exit code 2)."""


def choose_runtime(path: str | os.PathLike, fmt: str, runtime: str | None) -> str:
    """``runtime``, or the format's own where it is ``None``; :class:`RuntimeChoiceError` where the format
    does not run on it (:data:`~repghost.names.FORMAT_RUNTIMES`)."""
    allowed = FORMAT_RUNTIMES[fmt]
    if runtime is None:
        return allowed[0]
    if runtime not in allowed:
        raise RuntimeChoiceError(f"{Path(path).name} is {FORMAT_NOUNS[fmt]}: it runs on {' or '.join(allowed)}, "
                                 f"not {runtime}")
    return runtime


def exported_format(path: str | os.PathLike) -> str | None:
    """The exported-graph format a file name means (the longest suffix of :data:`~repghost.names.EXPORT_SUFFIXES`
    that it ends with), or ``None`` (a checkpoint, a TorchScript file...)."""
    name = Path(path).name.lower()
    found = [(len(s), fmt) for fmt in GRAPH_FORMATS for s in EXPORT_SUFFIXES[fmt] if name.endswith(s)]
    return max(found)[1] if found else None


@dataclass
class GraphRunner:
    """An exported graph, loaded on a runtime. Call it on an ``(N, 3, H, W)`` float32 array of any ``N``:
    it returns the graph's (first) output as an ``(N, K)`` float32 array, one flattened row per image
    (a classifier's logits as they are; a detector reshapes its rows to ``(A, 4 + C)``). A graph with a
    static batch is run in slices of that batch."""

    path: Path
    format: str
    runtime: str
    input_size: int | None      # the spatial size the graph fixes, where the file says (ONNX)
    static_batch: int | None    # None: any batch size in one call
    files: list[Path]           # the files the graph is made of (a graph file may come with a weights file)
    run: Callable[[np.ndarray], np.ndarray] = field(repr=False, default=None)

    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        images = np.ascontiguousarray(images, dtype=np.float32)
        if self.static_batch is None or len(images) == self.static_batch:
            return self._run(images)
        step = self.static_batch
        return np.concatenate([self._run(images[i:i + step]) for i in range(0, len(images), step)])

    def _run(self, images: np.ndarray) -> np.ndarray:
        """One call of the graph; a short last slice is padded to the static batch (with copies of its last
        image) and the padding's rows dropped."""
        count = len(images)
        if self.static_batch is not None and count < self.static_batch:
            images = np.concatenate([images, np.repeat(images[-1:], self.static_batch - count, axis=0)])
        return np.asarray(self.run(images), dtype=np.float32).reshape(len(images), -1)[:count]


def open_graph(path: str | os.PathLike, runtime: str | None = None, threads: int = 1,
               device: str | torch.device = "cpu") -> GraphRunner:
    """Load the exported graph in ``path`` (its format from its name: :func:`exported_format`) on
    ``runtime`` (default: the format's own) with ``threads`` CPU threads; ``device`` ``cuda`` runs an ONNX
    file on onnxruntime's CUDA provider (the edge runtimes run on the CPU).

    Raises :class:`RuntimeChoiceError` for a runtime the format does not run on, :class:`RunnerError` for a
    runtime that is not installed or a file it cannot load.
    """
    path = Path(path)
    fmt = exported_format(path)
    if fmt is None:
        raise RunnerError(f"{path.name} is not an exported graph file (expected one of "
                          f"{', '.join(s for f in GRAPH_FORMATS for s in EXPORT_SUFFIXES[f])})")
    runtime = choose_runtime(path, fmt, runtime)
    if fmt == "onnx" and runtime == "onnxruntime":
        run = _onnxruntime(path, threads, torch.device(device))
    else:
        run = _edge(path, runtime, threads)
    if fmt == "onnx":  # the batch and size the file declares (its dynamic axes stay dynamic on either runtime)
        batch, size = _onnx_input_dims(path)
        return GraphRunner(path, fmt, runtime, size, batch, [path], run)
    # The edge exports have a static batch of 1 (repghost writes them so; ncnn has no batch axis).
    return GraphRunner(path, fmt, runtime, None, 1, edge_runtime(fmt).files(path), run)


def _onnxruntime(path: Path, threads: int, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    providers = ["CUDAExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
    try:
        sess = onnx_export.session(path, threads=threads, providers=providers)
    except Exception as err:
        if not type(err).__module__.startswith("onnxruntime"):
            raise
        # onnxruntime's own errors (a file it cannot read) derive from Exception only: say what failed.
        raise RunnerError(f"onnxruntime cannot load {path}: {type(err).__name__}: {_first_line(err)}") from err
    feed_name = sess.get_inputs()[0].name
    return lambda images: sess.run(None, {feed_name: images})[0]


def _edge(path: Path, runtime: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """An edge runtime's runner (OpenVINO also reads ONNX files directly)."""
    rt = edge_runtime(runtime)
    try:
        rt.require()
    except Exception as err:  # MissingRuntimeError: its message names the extra to install
        raise RunnerError(str(err)) from None
    try:
        return rt.runner(path, threads)
    except Exception as err:  # each runtime raises its own types for a file it cannot load
        raise RunnerError(f"{rt.label} cannot load {path}: {type(err).__name__}: {_last_line(err)}") from None


def _onnx_input_dims(path: Path) -> tuple[int | None, int | None]:
    """(static batch, static spatial size) of an ONNX file's first input; ``None`` where dynamic."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as err:
        raise RunnerError(f"cannot read {path} as ONNX: {type(err).__name__}: {_first_line(err)}") from None
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in graph.input[0].type.tensor_type.shape.dim]
    return (dims[0], dims[-1]) if len(dims) == 4 else (None, None)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""


def _last_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[-1][:200] if text else ""
