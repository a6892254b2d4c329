"""MNN (Alibaba), the runtime the paper measured every latency with.

Export: the static-shape ONNX file → MNN's converter (``mnnconvert -f ONNX``), called through the
converter's C extension directly: the ``mnnconvert`` script's logger would try to ``pip install``
a telemetry SDK. Run: MNN's module API on the CPU backend, fp32 (``precision: high``), with
``numThread`` threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from ...io import atomic_path, scratch_dir
from ..onnx_export import INPUT_NAME, OUTPUT_NAME, ExportError
from .base import EdgeRuntime, Runner, captured_output, static_onnx


class MNNRuntime(EdgeRuntime):
    name = "mnn"
    label = "MNN"
    extra = "mnn"
    suffix = ".mnn"
    run_modules = ("MNN",)
    export_modules = ("_tools",)
    distributions = ("mnn",)

    def export(self, model: nn.Module, path: str | os.PathLike,
               input_size: Sequence[int] = (1, 3, 224, 224)) -> Path:
        self.require(export=True)
        import _tools  # MNN's converter extension, shipped in the mnn wheel

        path = Path(path)
        with scratch_dir("mnn") as tmp, atomic_path(path) as staged:
            onnx_path = static_onnx(model, tmp, input_size)
            args = ["mnnconvert", "-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(staged),
                    "--bizCode", "repghost"]
            with captured_output() as log:
                ok = _tools.mnnconvert(args)
            if not ok or staged.stat().st_size == 0:
                raise ExportError(f"MNN conversion failed: {log.tail()}")
        return path

    def runner(self, path: str | os.PathLike, threads: int = 1) -> Runner:
        self.require()
        with captured_output():
            import MNN

            config = {"backend": "CPU", "numThread": threads, "precision": "high"}
            manager = MNN.nn.create_runtime_manager((config,))
            net = MNN.nn.load_module_from_file(str(path), [INPUT_NAME], [OUTPUT_NAME], runtime_manager=manager)
        if net is None:
            raise ExportError(f"MNN cannot load {path}")

        def run(images: np.ndarray) -> np.ndarray:
            x = MNN.expr.const(np.ascontiguousarray(images, dtype=np.float32), list(images.shape), MNN.expr.NCHW)
            return np.array(net.forward([x])[0].read())

        return run
