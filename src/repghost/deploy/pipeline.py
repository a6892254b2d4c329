"""The export flow behind ``repghost export``: source → deploy model → file(s) → checks.

A source is a checkpoint (anything :func:`repghost.checkpoint.open_model` reads) or a model name —
registered, or a searched architecture's file or inline name — (random weights; for measuring speed).
The format follows the output's extension unless given. Train-form models are re-parameterized first
and the fold verified. The preprocessing contract the source records sets the graph's input size
and the int8 calibration, and is written into every exported file. Each step reports through
``log`` so the CLI only prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..checkpoint import (
    LoadedModel,
    export_props,
    is_checkpoint_path,
    sidecar_path,
    torchscript_extra_files,
    write_sidecar,
)
from ..io import discard_on_failure
from ..models import UnknownModelError, create_model, is_architecture_file, list_models
from ..names import EXPORT_FORMATS, EXPORT_SUFFIXES
from ..preprocess import Preprocess
from .calib import ImageSplit, describe, load_split
from .conversion import ConvertError, fold_checked, load_any
from .edge import EDGE_RUNTIMES, edge_runtime
from .onnx_export import (
    RTOL,
    Comparison,
    ExportError,
    compare_onnx,
    export_onnx,
    export_torchscript,
    op_counts,
    set_onnx_metadata,
)
from .quantize import DEFAULT_RECIPE, Int8Report, compare_int8, int8_report, quantize

#: ``repghost export --format`` choices: ONNX, TorchScript and every edge runtime.
FORMATS = EXPORT_FORMATS
#: The output name endings that mean each format (the first is the usual one).
SUFFIXES = EXPORT_SUFFIXES
#: Ops a deploy graph must not hold: every BatchNorm is folded (any model), and a RepGhostNet merges
#: its features with Add, never Concat.
LEFTOVER_OPS = {"BatchNormalization": "", "Concat": "repghostnet"}


@dataclass
class ExportReport:
    path: Path
    preprocess: Preprocess
    comparison: Comparison | None = None
    runtime_version: str = ""
    files: list[Path] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)
    int8_path: Path | None = None
    int8: Int8Report | None = None
    sidecar: Path | None = None     # edge formats: the contract, in a JSON file beside the model


def format_of(path: str | os.PathLike) -> str | None:
    """The format an output name's extension means (:data:`SUFFIXES`), or ``None``."""
    name = Path(path).name.lower()
    found = [(len(suffix), fmt) for fmt, suffixes in SUFFIXES.items() for suffix in suffixes if name.endswith(suffix)]
    return max(found)[1] if found else None


def resolve_format(out: str | os.PathLike, fmt: str | None = None) -> str:
    """The export format for ``out``: ``fmt`` when given, else the one its extension means.

    Raises :class:`ValueError` when ``fmt`` is unknown, when the extension means another format than
    ``fmt``, or when there is no ``fmt`` and the extension means none.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    implied = format_of(out)
    if fmt is None and implied is None:
        known = "; ".join(f"{' '.join(suffixes)} {name}" for name, suffixes in SUFFIXES.items())
        raise ValueError(f"cannot tell the format from the name {os.fspath(out)!r}: end it in one of the extensions "
                         f"({known}) or pass --format")
    if fmt is not None and implied is not None and implied != fmt:
        raise ValueError(f"{os.fspath(out)!r} is named like a {implied} file but the format is {fmt}: name it "
                         f"*{SUFFIXES[fmt][0]} or drop --format")
    return fmt or implied


def leftover_ops(ops: dict[str, int], model_name: str) -> dict[str, int]:
    """The ops of :data:`LEFTOVER_OPS` that a deploy graph of ``model_name`` still holds, with their counts."""
    return {op: ops[op] for op, family in LEFTOVER_OPS.items() if ops.get(op) and model_name.startswith(family)}


def int8_formats() -> list[str]:
    """The export formats ``--int8`` works with: onnx, and the edge runtimes with an int8 tool."""
    return ["onnx", *(name for name, rt in EDGE_RUNTIMES.items() if rt.int8_tool)]


def open_source(source: str, model_name: str | None = None, num_classes: int | None = None,
                use_ema: bool = False, log: Callable[[str], None] = print) -> LoadedModel:
    """A checkpoint file, or a model name — registered, or a searched architecture's file or inline
    name — (random weights, the model's default contract)."""
    if is_checkpoint_path(source):
        return load_any(source, model_name, num_classes, use_ema)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        model = create_model(source, **kwargs).eval()
    except UnknownModelError as err:
        if ":" in source or is_architecture_file(source):  # a searched architecture: the resolver says what is wrong
            raise ConvertError(str(err)) from None
        raise ConvertError(f"{source!r} is neither a checkpoint file nor a model name; "
                           f"models: {', '.join(list_models())}") from None
    log(f"{source}: no checkpoint given, exporting random weights (fine for speed, not for accuracy)")
    return LoadedModel(model, Preprocess.model_default(model), kind="model name")


def resolve_preprocess(loaded: LoadedModel, name: str, log: Callable[[str], None] = print, **overrides) -> Preprocess:
    """The source's recorded contract (or, with a one-line note, the model's default), then the flags."""
    base = loaded.preprocess
    if base is None:
        base = Preprocess.model_default(loaded.model)
        log(f"note: {name} records no preprocessing; using the model's default ({base.describe()}) — "
            "override with --img-size / --mean / --std")
    return base.override(**overrides)


def export(source: str, out: str | os.PathLike, fmt: str | None = None, img_size: int | None = None,
           mean=None, std=None, opset: int = 18, exporter: str = "dynamo", int8: bool = False,
           recipe: str = DEFAULT_RECIPE, calib: str | None = None, num_calib: int = 64,
           num_held_out: int | None = None, model_name: str | None = None, num_classes: int | None = None,
           use_ema: bool = False, rtol: float = RTOL, log: Callable[[str], None] = print) -> ExportReport:
    """Export ``source`` to ``out`` (ONNX, TorchScript or an edge runtime's format: ``fmt``, by default
    the one ``out``'s extension means), check it, optionally quantize to int8.

    Raises :class:`ExportError` when the exported model's output differs from PyTorch beyond
    ``rtol``, or when the ONNX graph still holds a BatchNormalization (or, for a RepGhostNet, a
    Concat) — the file is removed then — and, before any work, :class:`ValueError` when the format
    and ``out`` disagree (:func:`resolve_format`) and a missing-runtime error when an edge runtime is
    not installed. ``calib`` defaults to the data the source was trained on (else the built-in digits).
    """
    fmt = resolve_format(out, fmt)
    if int8 and fmt not in int8_formats():
        raise ValueError(f"--int8 is available for --format {' / '.join(int8_formats())}, not {fmt}")
    if fmt in EDGE_RUNTIMES:
        edge_runtime(fmt).require(export=True)
    loaded = open_source(source, model_name, num_classes, use_ema, log)
    for note in loaded.notes:
        log(f"note: {note}")
    preprocess = resolve_preprocess(loaded, source, log, input_size=img_size, mean=mean, std=std)
    log(f"preprocessing: {preprocess.describe()}")
    model, _ = fold_checked(loaded, preprocess.input_size, log)
    # The calibration data is read before anything is written: a bad folder leaves no files.
    split = load_split(calib or loaded.data or "digits", preprocess, num_calib, num_held_out) if int8 else None
    props = export_metadata(model, loaded, preprocess)
    out = Path(out)
    # Written, then checked, then given its metadata: an export that does not get to the end
    # (a failed check, an error, Ctrl-C) takes the files it wrote with it.
    with discard_on_failure(output_files(out, fmt)):
        size = (1, 3, preprocess.input_size, preprocess.input_size)
        if fmt in EDGE_RUNTIMES:
            report = export_edge(model, out, fmt, size, preprocess, rtol, log)
            # These formats hold no metadata of ours: the contract goes in a file beside the model.
            report.sidecar = write_sidecar(report.path, props)
            log(f"wrote {report.sidecar} (model name, preprocessing, classes)")
            if split is not None:
                quantize_edge(report, model, fmt, split, loaded.classes, log)
                write_sidecar(report.int8_path, props)  # the int8 model is opened like its fp32 one
            return report
        if fmt == "torchscript":
            path = export_torchscript(model, out, size, extra_files=torchscript_extra_files(props))
            log(f"wrote {path} (traced, frozen)")
            return ExportReport(path, preprocess)

        path = export_onnx(model, out, size, opset=opset, exporter=exporter)
        report = ExportReport(path, preprocess, comparison=compare_onnx(model, path, (2, *size[1:]), rtol=rtol),
                              ops=op_counts(path))
        log(f"wrote {path}: {sum(report.ops.values())} nodes: " +
            ", ".join(f"{k} {v}" for k, v in sorted(report.ops.items(), key=lambda kv: -kv[1])))
        log(f"onnxruntime vs PyTorch (batch 2): {report.comparison}")
        if not report.comparison.ok:
            path.unlink(missing_ok=True)
            raise ExportError(f"ONNX output differs from PyTorch: {report.comparison}; file removed")
        leftover = leftover_ops(report.ops, getattr(model, "model_name", ""))
        if leftover:
            path.unlink(missing_ok=True)
            raise ExportError(f"the deploy graph still holds {', '.join(f'{n} {op}' for op, n in leftover.items())} "
                              "node(s), which a deploy form of this model must not have; file removed")
        set_onnx_metadata(path, props)
        if split is not None:
            _add_int8(report, loaded, props, split, recipe, log)
        return report


def output_files(out: str | os.PathLike, fmt: str) -> list[Path]:
    """Every file ``export(..., out, fmt)`` may write, int8 model included."""
    out = Path(out)
    if fmt in EDGE_RUNTIMES:
        rt = edge_runtime(fmt)
        return [*rt.files(out), sidecar_path(out), *rt.files(rt.int8_path(out)), sidecar_path(rt.int8_path(out))]
    return [out, onnx_int8_path(out)] if fmt == "onnx" else [out]



def onnx_int8_path(path: Path) -> Path:
    return path.with_name(path.stem + ".int8.onnx")


def export_metadata(model: nn.Module, loaded: LoadedModel, preprocess: Preprocess) -> dict[str, str]:
    """What an exported file carries: model name, the preprocessing contract, class names and data."""
    return export_props(getattr(model, "model_name", ""), preprocess, loaded.classes, loaded.data)


def _add_int8(report: ExportReport, loaded: LoadedModel, props: dict, split: ImageSplit, recipe: str,
              log: Callable[[str], None]) -> None:
    """Quantize the exported ONNX file next to it and measure what int8 changes."""
    for path in split.skipped:
        log(f"skipped unreadable image: {path}")
    int8_path = onnx_int8_path(report.path)
    quantize(report.path, int8_path, split.calib, recipe)
    set_onnx_metadata(int8_path, props)
    report.int8_path, report.int8 = int8_path, compare_int8(report.path, int8_path, split, recipe, loaded.classes)
    log(f"wrote {int8_path}: calibrated on {describe(split)}")
    log(str(report.int8))


def export_edge(model: nn.Module, out: Path, runtime: str, input_size: tuple[int, ...], preprocess: Preprocess,
                rtol: float = RTOL, log: Callable[[str], None] = print) -> ExportReport:
    """Export the deploy ``model`` for an edge ``runtime``, run it there on random input and compare
    with PyTorch; above ``rtol`` every file it wrote is removed and :class:`ExportError` raised."""
    rt = edge_runtime(runtime)
    path = rt.export(model, out, input_size)
    report = ExportReport(path, preprocess, runtime_version=rt.version(), files=rt.files(path))
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


def quantize_edge(report: ExportReport, model: nn.Module, runtime: str, split: ImageSplit,
                  model_classes: list[str] | None = None, log: Callable[[str], None] = print) -> ExportReport:
    """int8 by the runtime's own tool, calibrated on ``split.calib``; the top-1 change on
    ``split.held_out`` as for onnxruntime's int8."""
    rt = edge_runtime(runtime)
    report.int8_path = rt.quantize(report.path, rt.int8_path(report.path), split.calib)
    fp32, quantized = rt.predict(report.path, split.held_out), rt.predict(report.int8_path, split.held_out)
    report.int8 = int8_report(fp32, quantized, split, rt.int8_tool, getattr(model, "num_classes", -1),
                              model_classes)
    log(f"wrote {', '.join(map(str, rt.files(report.int8_path)))}: {rt.int8_tool}, calibrated on {describe(split)}")
    log(str(report.int8))
    return report
