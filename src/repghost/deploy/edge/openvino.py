"""OpenVINO (Intel).

Export: the static-shape ONNX file, read by the runtime's own ONNX frontend (``Core.read_model``;
the ``ovc`` / ``convert_model`` path would also send usage telemetry from a forked process) → IR:
``OUT`` (the ``.xml`` graph)
and ``OUT`` with suffix ``.bin`` (weights, fp32: ``serialize`` writes the model as it is, without
``save_model``'s fp16 compression). Run: the CPU plugin with ``INFERENCE_PRECISION_HINT f32``
(on CPUs with bf16 support the plugin's default is bf16, which would neither match PyTorch nor
compare like with like), one stream, the latency hint and ``INFERENCE_NUM_THREADS`` threads.

int8: NNCF's post-training quantization (``nncf.quantize``, its default preset: int8 weights and
activations, calibrated on the given images) of the IR, written as another IR. NNCF sends usage
telemetry unless the user opts out (``opt_in_out --opt_out``); nothing leaves a machine without
network access.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from ...io import atomic_paths, scratch_dir
from ..onnx_export import ExportError
from .base import EdgeRuntime, MissingRuntimeError, Runner, captured_output, static_onnx


class OpenVINORuntime(EdgeRuntime):
    name = "openvino"
    label = "OpenVINO"
    extra = "openvino"
    suffix = ".xml"
    run_modules = ("openvino",)
    distributions = ("openvino", "nncf")
    int8_tool = "NNCF"

    def files(self, path: str | os.PathLike) -> list[Path]:
        return [Path(path), Path(path).with_suffix(".bin")]

    def export(self, model: nn.Module, path: str | os.PathLike,
               input_size: Sequence[int] = (1, 3, 224, 224)) -> Path:
        self.require(export=True)
        import openvino as ov

        xml, weights = self.files(path)
        if xml.suffix != ".xml":
            raise ValueError(f"an OpenVINO IR file must end in .xml (its weights go beside it in .bin): {path}")
        with scratch_dir("openvino") as tmp, atomic_paths(xml, weights) as (staged_xml, staged_bin):
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

    def quantize(self, path: str | os.PathLike, out: str | os.PathLike, calib_images: np.ndarray,
                 keep_float: Sequence[str] = ()) -> Path:
        self.require()
        try:
            with captured_output():
                import nncf
        except ImportError as err:
            raise MissingRuntimeError(f"OpenVINO int8 needs NNCF ({err}); install it with: "
                                      f"pip install 'repghost[{self.extra}]'") from None
        import openvino as ov

        xml, weights = self.files(out)
        model = ov.Core().read_model(str(path))
        calibration = nncf.Dataset([np.ascontiguousarray(image[None], dtype=np.float32) for image in calib_images])
        with captured_output() as log, scratch_dir("openvino") as tmp, \
                atomic_paths(xml, weights) as (staged_xml, staged_bin):
            try:
                ignored = nncf.IgnoredScope(names=list(keep_float), validate=False) if keep_float else None
                quantized = nncf.quantize(model, calibration, subset_size=len(calib_images), ignored_scope=ignored)
            except Exception as err:
                raise ExportError(f"NNCF quantization failed: {type(err).__name__}: {err} {log.tail()}") from err
            ir_xml, ir_bin = Path(tmp) / "model.xml", Path(tmp) / "model.bin"
            ov.serialize(quantized, str(ir_xml), str(ir_bin))
            shutil.move(ir_xml, staged_xml)
            shutil.move(ir_bin, staged_bin)
        return xml

    def rank_changing_nodes(self, path: str | os.PathLike, rank: int = 4) -> list[str]:
        """Names of the operations of the IR at ``path`` whose output is not of ``rank`` (for
        :meth:`quantize`'s ``keep_float``)."""
        import openvino as ov

        model = ov.Core().read_model(str(path))
        return [op.get_friendly_name() for op in model.get_ordered_ops()
                if op.get_type_name() not in ("Parameter", "Constant", "Result") and op.get_output_size()
                and op.get_output_partial_shape(0).rank.get_length() != rank]

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
