"""LiteRT (Google's TensorFlow Lite runtime), with its PyTorch converter litert-torch.

Export: ``litert_torch.convert`` (``torch.export`` → StableHLO → a ``.tflite`` flatbuffer, fp32,
NCHW input as in PyTorch). Run: ``ai_edge_litert``'s ``Interpreter`` with its default XNNPACK CPU
delegate and ``num_threads`` threads.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...io import atomic_path
from ..onnx_export import ExportError
from .base import EdgeRuntime, Runner, captured_output


class LiteRTRuntime(EdgeRuntime):
    name = "litert"
    label = "LiteRT"
    extra = "litert"
    suffix = ".tflite"
    run_modules = ("ai_edge_litert.interpreter",)
    export_modules = ("litert_torch",)
    distributions = ("ai-edge-litert", "litert-torch")

    def export(self, model: nn.Module, path: str | os.PathLike,
               input_size: Sequence[int] = (1, 3, 224, 224)) -> Path:
        self.require(export=True)
        path = Path(path)
        with captured_output() as log, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import litert_torch

            try:
                edge_model = litert_torch.convert(model.eval(), (torch.randn(tuple(input_size)),))
                with atomic_path(path) as staged:
                    edge_model.export(str(staged))
            except Exception as err:
                raise ExportError(f"LiteRT conversion failed: {type(err).__name__}: "
                                  f"{str(err).strip().splitlines()[-1][:300]} {log.tail(2)}") from err
        return path

    def runner(self, path: str | os.PathLike, threads: int = 1) -> Runner:
        self.require()
        from ai_edge_litert.interpreter import Interpreter

        with captured_output():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]

        def run(images: np.ndarray) -> np.ndarray:
            interpreter.set_tensor(input_index, np.ascontiguousarray(images, dtype=np.float32))
            interpreter.invoke()
            return interpreter.get_tensor(output_index).copy()

        return run
