"""LiteRT (Google's TensorFlow Lite runtime), with its PyTorch converter litert-torch.

Export: ``litert_torch.convert`` (``torch.export`` → StableHLO → a ``.tflite`` flatbuffer, fp32,
NCHW input as in PyTorch), in a child interpreter so JAX never loads into the caller's.
Run: ``ai_edge_litert``'s ``Interpreter`` with its default XNNPACK CPU delegate and
``num_threads`` threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...io import atomic_path, scratch_dir
from ..onnx_export import ExportError
from .base import EdgeRuntime, Runner, captured_output


def _convert_main(argv: Sequence[str]) -> None:
    """``python -m repghost.deploy.edge.litert PROGRAM_FILE OUT N C H W`` (run by :meth:`LiteRTRuntime.export`)."""
    program_file, out, *shape = argv
    # torch.export's own format (graph + weights), not a pickle: nothing in it runs on loading.
    model = torch.export.load(program_file).module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import litert_torch

        litert_torch.convert(model, (torch.randn(tuple(int(d) for d in shape)),)).export(out)


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
        # litert-torch brings JAX, whose threads make any later fork() in this process unsafe
        # (DataLoader workers, for one): convert in a child interpreter instead.
        with scratch_dir("litert") as tmp, atomic_path(path) as staged:
            program_file = Path(tmp) / "model.pt2"
            example = torch.randn(tuple(input_size))
            torch.export.save(torch.export.export(model.eval(), (example,)), program_file)
            # The converter's own temporary files go to the scratch directory too: removed with it,
            # even when the child is killed.
            done = subprocess.run([sys.executable, "-m", __name__, str(program_file), str(staged),
                                   *map(str, input_size)], capture_output=True, text=True,
                                  env={**os.environ, "TMPDIR": str(tmp)})
            if done.returncode != 0 or staged.stat().st_size == 0:
                tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-2:])
                raise ExportError(f"LiteRT conversion failed (exit {done.returncode}): {tail[-400:]}")
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


if __name__ == "__main__":
    _convert_main(sys.argv[1:])
