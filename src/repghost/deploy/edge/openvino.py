"""OpenVINO (Intel).

Export: the static-shape ONNX file, read by the runtime's own ONNX frontend (``Core.read_model``;
the ``ovc`` / ``convert_model`` path would also send usage telemetry from a forked process) → IR:
``OUT`` (the ``.xml`` graph)
and ``OUT`` with suffix ``.bin`` (weights, fp32: ``serialize`` writes the model as it is, without
``save_model``'s fp16 compression). Run: the CPU plugin with ``INFERENCE_PRECISION_HINT f32``
(on CPUs with bf16 support the plugin's default is bf16, which would neither match PyTorch nor
compare like with like), one stream, the latency hint and ``INFERENCE_NUM_THREADS`` threads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from ...io import atomic_paths
from ..onnx_export import ExportError
from .base import EdgeRuntime, Runner, captured_output, static_onnx


class OpenVINORuntime(EdgeRuntime):
    name = "openvino"
    label = "OpenVINO"
    extra = "openvino"
    suffix = ".xml"
    run_modules = ("openvino",)
    distributions = ("openvino",)

    def files(self, path: str | os.PathLike) -> list[Path]:
        return [Path(path), Path(path).with_suffix(".bin")]

    def export(self, model: nn.Module, path: str | os.PathLike,
               input_size: Sequence[int] = (1, 3, 224, 224)) -> Path:
        self.require(export=True)
        import openvino as ov

        xml, weights = self.files(path)
        if xml.suffix != ".xml":
            raise ValueError(f"an OpenVINO IR file must end in .xml (its weights go beside it in .bin): {path}")
        with tempfile.TemporaryDirectory() as tmp, atomic_paths(xml, weights) as (staged_xml, staged_bin):
            onnx_path = static_onnx(model, tmp, input_size)
            ir_xml, ir_bin = Path(tmp) / "model.xml", Path(tmp) / "model.bin"  # OpenVINO insists on .xml
            with captured_output() as log:
                try:
                    ov.serialize(ov.Core().read_model(str(onnx_path)), str(ir_xml), str(ir_bin))
                except Exception as err:
                    raise ExportError(f"OpenVINO conversion failed: {type(err).__name__}: {err} {log.tail()}") from err
            shutil.move(ir_xml, staged_xml)
            shutil.move(ir_bin, staged_bin)
        return xml

    def runner(self, path: str | os.PathLike, threads: int = 1) -> Runner:
        self.require()
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1,
                  "PERFORMANCE_HINT": "LATENCY"}
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        request, output = compiled.create_infer_request(), compiled.output(0)

        def run(images: np.ndarray) -> np.ndarray:
            return np.array(request.infer({0: np.ascontiguousarray(images, dtype=np.float32)})[output])

        return run
