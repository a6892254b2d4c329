"""Deployment: checkpoint conversion, ONNX / TorchScript export, onnxruntime sessions, int8, the one
runner that opens every model file, and predict.

Names load on first use (:mod:`repghost.lazy`): the command line reads :mod:`.recipe` without torch.
"""

from ..lazy import lazy_exports

__all__ = lazy_exports(__name__, {
    "calib": ("ImageSplit", "load_split"),
    "conversion": ("ConvertError", "ConvertResult", "convert", "fold_checked", "load_any"),
    "onnx_export": ("Comparison", "ExportError", "compare_onnx", "export_onnx", "export_torchscript",
                    "load_torchscript", "onnx_metadata", "op_counts", "session", "set_onnx_metadata"),
    "predict": ("PredictInputError", "PredictReport", "predict"),
    "quantize": ("Int8Report", "compare_int8", "quantize"),
    "recipe": ("DEFAULT_RECIPE", "RECIPES", "Recipe"),
    "graph_runner": ("GraphRunner", "RunnerError", "RuntimeChoiceError", "open_graph"),
    "runner": ("ModelRunner", "open_model"),
})
