"""One callable per (model, runtime): each call runs one forward pass and waits for its result.

Runtimes:

- ``eager``: plain PyTorch, ``torch.inference_mode``.
- ``channels_last``: PyTorch eager with the model and input in channels-last memory format.
- ``torchscript``: traced, frozen, then ``torch.jit.optimize_for_inference`` (folds conv + BN,
  fuses conv + ReLU, may switch to oneDNN layouts).
- ``compile``: ``torch.compile`` (inductor), where it works on this machine.
- ``onnxruntime``: ONNX export (:func:`repghost.deploy.onnx_export.export_for_runtime`) run by onnxruntime with full
  graph optimization.
- ``mnn``, ``ncnn``, ``openvino``, ``litert``: the edge runtimes of :mod:`repghost.deploy.edge`
  (CPU, fp32, ``threads`` threads), each from its own export with a static input shape; the export
  is checked against PyTorch before it is timed, so a wrong model never gets a time.

The exported files (and a file given to ``bench`` as it is: ``bench model.onnx model.tflite``) are
opened and run by :func:`repghost.deploy.runner.open_model`, the runner ``eval`` and ``predict`` use:
what is timed is what they run.

On CUDA every PyTorch call is bracketed by ``torch.cuda.synchronize()`` so the time is the
kernels' time, not the launch's; onnxruntime's ``run`` returns host arrays, which already waits.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..deploy.edge import EDGE_RUNTIMES, edge_runtime
from ..io import scratch_dir
from ..names import RUNTIMES


def _synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    if device.type != "cuda":
        return fn

    def call():
        torch.cuda.synchronize(device)
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return call


def _torch_runner(module, x) -> Callable[[], object]:
    def call():
        with torch.inference_mode():
            return module(x)

    return call


def make_runner(model: nn.Module, runtime: str, input_size: tuple[int, ...], threads: int,
                device: torch.device, onnx_path: str | Path | None = None) -> Callable[[], object]:
    """A zero-argument callable that runs ``model`` once under ``runtime`` on a fixed random input.

    ``onnx_path`` caches the export: an existing file there is reused (its batch axis is dynamic);
    an edge runtime's export goes beside it, named after the batch size (its shape is static).
    Without one, the export goes to a scratch directory that is removed once the runtime has
    loaded it.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if onnx_path is None and runtime in ("onnxruntime", *EDGE_RUNTIMES):
        with scratch_dir("bench") as tmp:
            return make_runner(model, runtime, input_size, threads, device, tmp / "model.onnx")
    x = torch.randn(input_size)
    if runtime == "onnxruntime":
        return _onnxruntime_runner(model, x, threads, device, onnx_path)
    if runtime in EDGE_RUNTIMES:
        return _edge_runner(model, runtime, x, threads, device, onnx_path)
    model, x = model.to(device).eval(), x.to(device)
    if runtime == "eager":
        return _synced(_torch_runner(model, x), device)
    if runtime == "channels_last":
        # .to() converts in place; copy so the eager runner on the same model keeps its layout.
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        return _synced(_torch_runner(model, x), device)
    if runtime == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
        return _synced(_torch_runner(scripted, x), device)
    compiled = torch.compile(model)
    return _synced(_torch_runner(compiled, x), device)


def _onnxruntime_runner(model, x, threads, device, path):
    from ..deploy.onnx_export import export_for_runtime
    from ..deploy.runner import open_model

    path = Path(path)
    if not path.is_file():
        model = copy.deepcopy(model).cpu().eval()  # leave the caller's model on its device
        export_for_runtime(model, path, tuple(x.shape))
    return file_runner(open_model(path, runtime="onnxruntime", threads=threads, device=device), x)


def file_runner(runner, x: torch.Tensor) -> Callable[[], object]:
    """The zero-argument call the timing loop takes, for a model file opened by
    :func:`repghost.deploy.runner.open_model`: one run on ``x``; it returns the list of the model's
    outputs, as onnxruntime's ``run`` does."""
    x = x.cpu()
    return lambda: [runner(x)]


def edge_export_path(onnx_path: str | Path, runtime: str, batch: int) -> Path:
    """Where the benchmark keeps ``runtime``'s static-shape export beside the ONNX cache file
    (distinct for every runtime, weights files included)."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}_b{batch}{edge_runtime(runtime).suffix}")


def _edge_runner(model, runtime, x, threads, device, onnx_path):
    from ..deploy.onnx_export import ExportError
    from ..deploy.runner import compare_with_torch, open_model

    if device.type != "cpu":
        raise ValueError(f"{runtime} runs on the CPU here, not {device}")
    rt = edge_runtime(runtime)
    path = edge_export_path(onnx_path, runtime, x.shape[0])
    model = copy.deepcopy(model).cpu().eval()
    if not path.is_file():
        rt.export(model, path, tuple(x.shape))
    runner = open_model(path, runtime=runtime, threads=threads)
    comparison = compare_with_torch(runner, model, tuple(x.shape))
    if not comparison.ok:
        raise ExportError(f"{rt.label} output differs from PyTorch: {comparison}")
    return file_runner(runner, x)
