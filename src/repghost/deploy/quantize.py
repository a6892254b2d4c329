"""int8 static quantization with onnxruntime, and the top-1 change it costs.

A recipe is ``FORMAT[-nodw][-sSTRIDE]`` (weights always int8 per channel, activations uint8
calibrated by MinMax on the calibration images):

- ``FORMAT``: ``qdq`` (QuantizeLinear / DequantizeLinear pairs around each op; onnxruntime fuses
  them into int8 kernels) or ``qop`` (the operator format: ``QLinearConv``, ``QLinearAdd``, …).
- ``-nodw``: depthwise convs stay in float32.
- ``-sSTRIDE``: only ops whose output is at stride ≥ STRIDE (e.g. 14×14 and smaller for ``-s16`` at
  224²) are quantized; the high-resolution start of the network stays in float32.

Plain ``qdq`` is the naive recipe. On an AVX-512-VNNI CPU it is *slower* than float32: int8
depthwise convs and the int8 stem at 112² cost more than their float32 NCHWc kernels, while int8
pays off in the channel-heavy, low-resolution end. ``benchmarks/int8.py`` measures the recipes;
:data:`DEFAULT_RECIPE` is the fastest measured here. The model first goes through onnxruntime's
quantization pre-processing (shape inference and graph optimization).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_path, scratch_dir
from ..progress import progress
from .calib import ImageSplit
from .onnx_export import INPUT_NAME, OUTPUT_NAME, session
from .recipe import DEFAULT_RECIPE, RECIPES, Recipe  # noqa: F401  (re-exported)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an array of images, a few at a time."""

    def __init__(self, images: np.ndarray, batch: int = 8):
        batches = [images[i:i + batch] for i in range(0, len(images), batch)]
        self.batches = iter(progress(batches, desc="int8 calibration", leave=False, line=True, unit="batch"))

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def depthwise_conv_names(path: str | os.PathLike) -> list[str]:
    """Names of the Conv nodes whose ``group`` equals their input channels (depthwise)."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {init.name: init.dims for init in graph.initializer}
    names = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        dims = weights.get(node.input[1])
        # A depthwise weight is (C, 1, k, k) with group == C (> 1).
        if group > 1 and dims is not None and dims[1] == 1 and dims[0] == group:
            names.append(node.name)
    return names


def high_resolution_nodes(path: str | os.PathLike, min_stride: int) -> list[str]:
    """Names of the nodes whose output is at a stride below ``min_stride`` (from inferred shapes)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    values = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    input_hw = dims[model.graph.input[0].name][2]
    names = []
    for node in model.graph.node:
        shape = dims.get(node.output[0]) if node.output else None
        if shape and len(shape) == 4 and shape[2] and shape[2] * min_stride > input_hw:
            names.append(node.name)
    return names


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(fp32_path: str | os.PathLike, out_path: str | os.PathLike, calib_images: np.ndarray,
             recipe: str = DEFAULT_RECIPE, keep_float: Callable[[str | os.PathLike], list[str]] | None = None) -> Path:
    """Write an int8 model of the ONNX file ``fp32_path`` to ``out_path``; returns the path.
    ``keep_float(prepared_path)`` names more nodes to leave in float (beside the recipe's)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    plan = Recipe.parse(recipe)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with scratch_dir("int8") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        with _quiet_root_logger():  # onnxruntime.quantization logs advice through the root logger
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        exclude = set(depthwise_conv_names(prepared)) if plan.skip_depthwise else set()
        if plan.min_stride > 1:
            exclude |= set(high_resolution_nodes(prepared, plan.min_stride))
        if keep_float is not None:
            exclude |= set(keep_float(prepared))
        with atomic_path(out_path) as staged, _quiet_root_logger():
            quantize_static(
                str(prepared), str(staged), _Reader(calib_images),
                quant_format=QuantFormat.QDQ if plan.fmt == "qdq" else QuantFormat.QOperator,
                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=sorted(exclude),
            )
    return out_path


@dataclass(frozen=True)
class Int8Report:
    recipe: str
    agreement: float            # share of held-out images whose int8 top-1 equals the fp32 top-1
    fp32_top1: float | None     # accuracy against the labels, when the model's classes are the labels'
    int8_top1: float | None
    num_images: int
    note: str = ""              # why accuracy is not reported, or what it assumes

    @property
    def top1_change(self) -> float | None:
        return None if self.fp32_top1 is None else self.int8_top1 - self.fp32_top1

    def __str__(self) -> str:
        text = (f"int8 ({self.recipe}) top-1 agrees with fp32 on {self.agreement:.1%} "
                f"of {self.num_images} held-out images")
        if self.fp32_top1 is not None:
            text += (f"; top-1 fp32 {self.fp32_top1:.2%}, int8 {self.int8_top1:.2%} "
                     f"(change {100 * self.top1_change:+.2f} points)")
        return text + (f"; {self.note}" if self.note else "")


def _predict(path, images: np.ndarray, batch: int = 32) -> np.ndarray:
    sess = session(path, threads=os.cpu_count() or 1)
    out = [sess.run([OUTPUT_NAME], {INPUT_NAME: images[i:i + batch]})[0] for i in range(0, len(images), batch)]
    return np.concatenate(out).argmax(1)


def compare_int8(fp32_path, int8_path, split: ImageSplit, recipe: str = DEFAULT_RECIPE,
                 model_classes: list[str] | None = None) -> Int8Report:
    """Top-1 of the fp32 and int8 models on the held-out images: agreement, and accuracy against
    the labels when the model's classes are the data's (by name when the model records them,
    else by count, which the report then says it assumed)."""
    fp32, int8 = _predict(fp32_path, split.held_out), _predict(int8_path, split.held_out)
    num_outputs = session(fp32_path).get_outputs()[0].shape[-1]
    return int8_report(fp32, int8, split, recipe, num_outputs, model_classes)


def int8_report(fp32: np.ndarray, int8: np.ndarray, split: ImageSplit, recipe: str, num_outputs: int,
                model_classes: list[str] | None = None) -> Int8Report:
    """The report from the fp32 and int8 top-1 predictions on ``split.held_out`` (any runtime)."""
    if model_classes is not None:
        labelled = list(model_classes) == list(split.classes)
        note = "" if labelled else "the model's classes are not the data's: accuracy not reported"
    else:
        labelled = num_outputs == split.num_classes
        note = ("the model records no class names: accuracy assumes its outputs follow the data's class order"
                if labelled else f"the model has {num_outputs} outputs, the data {split.num_classes} classes: "
                "accuracy not reported")
    return Int8Report(
        recipe=recipe, agreement=float((fp32 == int8).mean()),
        fp32_top1=float((fp32 == split.held_out_labels).mean()) if labelled else None,
        int8_top1=float((int8 == split.held_out_labels).mean()) if labelled else None,
        num_images=len(split.held_out), note=note,
    )
