"""Deployment: checkpoint conversion, ONNX / TorchScript export, onnxruntime sessions, int8."""

from .calib import ImageSplit, load_split
from .conversion import ConvertError, ConvertResult, convert, fold_checked, load_any
from .onnx_export import (
    Comparison,
    ExportError,
    OnnxModel,
    compare_onnx,
    export_onnx,
    export_torchscript,
    load_torchscript,
    onnx_metadata,
    op_counts,
    session,
    set_onnx_metadata,
)
from .quantize import DEFAULT_RECIPE, RECIPES, Int8Report, Recipe, compare_int8, quantize

__all__ = [
    "DEFAULT_RECIPE", "RECIPES", "Comparison", "ConvertError", "ConvertResult", "ExportError", "ImageSplit",
    "Int8Report", "OnnxModel", "Recipe", "compare_int8", "compare_onnx", "convert", "export_onnx",
    "export_torchscript", "fold_checked", "load_any", "load_split", "load_torchscript", "onnx_metadata", "op_counts",
    "quantize", "session", "set_onnx_metadata",
]
