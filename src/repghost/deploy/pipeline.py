"""The export flow behind ``repghost export``: source → deploy model → file(s) → checks.

A source is a checkpoint (anything :func:`repghost.deploy.load_any` reads) or a registered model
name (random weights; for measuring speed). Train-form models are re-parameterized first. Each
step reports through ``log`` so the CLI only prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..models import create_model, list_models
from ..reparam import check_equivalence, is_deploy, reparameterize
from .calib import load_split
from .conversion import RTOL as REPARAM_RTOL
from .conversion import ConvertError, load_any
from .edge import EDGE_RUNTIMES, edge_runtime
from .onnx_export import RTOL, Comparison, ExportError, compare_onnx, export_onnx, export_torchscript, op_counts
from .quantize import DEFAULT_RECIPE, Int8Report, compare_int8, int8_report, quantize

#: ``repghost export --format`` choices: ONNX, TorchScript and every edge runtime.
FORMATS = ("onnx", "torchscript", *EDGE_RUNTIMES)


@dataclass
class ExportReport:
    path: Path
    comparison: Comparison | None = None
    runtime_version: str = ""
    files: list[Path] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)
    int8_path: Path | None = None
    int8: Int8Report | None = None


def deploy_model(source: str, model_name: str | None = None, num_classes: int | None = None,
                 img_size: int = 224, log: Callable[[str], None] = print) -> nn.Module:
    """The deploy form of ``source`` (checkpoint path or registered model name), in eval mode."""
    if not os.path.exists(source) and source in list_models():
        log(f"{source}: no checkpoint given, exporting random weights (fine for speed, not for accuracy)")
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        model = create_model(source, **kwargs).eval()
    else:
        model = load_any(source, model_name, num_classes)
    if is_deploy(model):
        return model
    deployed = reparameterize(model)
    err = check_equivalence(model, deployed, (1, 3, img_size, img_size))
    log(f"re-parameterized to the deploy form (max relative error {err['max_rel']:.2g})")
    if not err["max_rel"] <= REPARAM_RTOL:
        raise ConvertError(f"deploy form disagrees with the source: relative error {err['max_rel']:.3g}")
    return deployed


def export(source: str, out: str | os.PathLike, fmt: str = "onnx", img_size: int = 224, opset: int = 18,
           exporter: str = "dynamo", int8: bool = False, recipe: str = DEFAULT_RECIPE, calib: str = "digits",
           num_calib: int = 64, num_held_out: int = 256, model_name: str | None = None,
           num_classes: int | None = None, rtol: float = RTOL, log: Callable[[str], None] = print) -> ExportReport:
    """Export ``source`` to ``out`` (ONNX, TorchScript or an edge runtime's format), check it,
    optionally quantize to int8.

    Raises :class:`ExportError` when the exported model's output differs from PyTorch beyond
    ``rtol`` (the file is removed then), when the graph of a RepGhostNet still holds
    BatchNormalization or Concat, and — before any work — when an edge runtime is not installed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if int8 and fmt != "onnx" and not (fmt in EDGE_RUNTIMES and edge_runtime(fmt).int8_tool):
        int8_formats = ["onnx", *(name for name, rt in EDGE_RUNTIMES.items() if rt.int8_tool)]
        raise ValueError(f"--int8 is available for --format {' / '.join(int8_formats)}, not {fmt}")
    if fmt in EDGE_RUNTIMES:
        edge_runtime(fmt).require(export=True)
    model = deploy_model(source, model_name, num_classes, img_size, log)
    out = Path(out)
    size = (1, 3, img_size, img_size)
    if fmt in EDGE_RUNTIMES:
        report = export_edge(model, out, fmt, size, rtol, log)
        if int8:
            quantize_edge(report, model, fmt, load_split(calib, num_calib, num_held_out, img_size), calib, log)
        return report
    if fmt == "torchscript":
        path = export_torchscript(model, out, size)
        log(f"wrote {path} (traced, frozen)")
        return ExportReport(path)

    path = export_onnx(model, out, size, opset=opset, exporter=exporter)
    report = ExportReport(path, compare_onnx(model, path, (2, 3, img_size, img_size), rtol=rtol), op_counts(path))
    log(f"wrote {path}: {sum(report.ops.values())} nodes " +
        ", ".join(f"{k} {v}" for k, v in sorted(report.ops.items(), key=lambda kv: -kv[1])))
    log(f"onnxruntime vs PyTorch (batch 2): {report.comparison}")
    if not report.comparison.ok:
        path.unlink(missing_ok=True)
        raise ExportError(f"ONNX output differs from PyTorch: {report.comparison}; file removed")
    leftover = {op: report.ops.get(op, 0) for op in ("BatchNormalization", "Concat")}
    if getattr(model, "model_name", "").startswith("repghostnet") and any(leftover.values()):
        path.unlink(missing_ok=True)
        raise ExportError(f"the deploy graph still holds {leftover}; file removed")
    if int8:
        split = load_split(calib, num_calib, num_held_out, img_size)
        report.int8_path = quantize(path, path.with_name(path.stem + ".int8.onnx"), split.calib, recipe)
        report.int8 = compare_int8(path, report.int8_path, split, recipe)
        log(f"wrote {report.int8_path}: calibrated on {len(split.calib)} images from {calib}")
        log(str(report.int8))
    return report


def export_edge(model: nn.Module, out: Path, runtime: str, input_size: tuple[int, ...], rtol: float = RTOL,
                log: Callable[[str], None] = print) -> ExportReport:
    """Export the deploy ``model`` for an edge ``runtime``, run it there on random input and compare
    with PyTorch; above ``rtol`` every file it wrote is removed and :class:`ExportError` raised."""
    rt = edge_runtime(runtime)
    path = rt.export(model, out, input_size)
    report = ExportReport(path, runtime_version=rt.version(), files=rt.files(path))
    try:
        report.comparison = rt.check(path, model, input_size, rtol=rtol)
    except ExportError as err:
        rt.remove(path)
        raise ExportError(f"{err}; file removed") from err
    log(f"wrote {', '.join(str(f) for f in report.files)} (static input {'x'.join(map(str, input_size))})")
    log(f"{rt.label} ({report.runtime_version}) vs PyTorch (batch {input_size[0]}): {report.comparison}")
    if not report.comparison.ok:
        rt.remove(path)
        raise ExportError(f"{rt.label} output differs from PyTorch: {report.comparison}; file removed")
    return report


def quantize_edge(report: ExportReport, model: nn.Module, runtime: str, split, calib: str,
                  log: Callable[[str], None] = print) -> ExportReport:
    """int8 by the runtime's own tool, calibrated on ``split.calib``; the top-1 change on
    ``split.held_out`` as for onnxruntime's int8."""
    rt = edge_runtime(runtime)
    report.int8_path = rt.quantize(report.path, rt.int8_path(report.path), split.calib)
    fp32, quantized = rt.predict(report.path, split.held_out), rt.predict(report.int8_path, split.held_out)
    report.int8 = int8_report(fp32, quantized, split, rt.int8_tool, getattr(model, "num_classes", -1))
    log(f"wrote {', '.join(map(str, rt.files(report.int8_path)))}: {rt.int8_tool}, calibrated on "
        f"{len(split.calib)} images from {calib}")
    log(str(report.int8))
    return report
