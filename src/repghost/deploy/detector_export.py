"""``repghost export DETECTOR_CHECKPOINT OUT``: SSDLite (any backbone) and RetinaNet to ONNX, OpenVINO,
LiteRT, MNN or ncnn, re-parameterized, checked on real photos, optionally int8.

Where each part runs (the same for every format; why: :mod:`repghost.detection.graph`): the file
holds backbone + neck + heads + box decoding + score activation at a fixed input size; resizing,
normalization, score threshold, top-k, NMS and the scaling back to the image run in Python
(:mod:`.detector_files`). The steps, nothing left behind when one fails:

1. the checkpoint's detector, its backbone folded and the fold verified
   (:func:`repghost.reparam.fold_and_verify`, float64);
2. the graph written for the format, with the contract (:func:`.detector_files.detector_props`) in its
   metadata or the sidecar beside it;
3. the file opened as a user opens it (:func:`.detector_files.open_detector_file`) and run on real
   photographs (scikit-learn's and matplotlib's, through the detector's own preprocessing) against
   the PyTorch graph: boxes and scores each within :data:`RTOL` of their scale, else every file is
   removed and :class:`ExportError` raised;
4. ``int8`` (ONNX by onnxruntime's static quantization, OpenVINO by NNCF): calibrated on images of the
   data the detector was trained on, its AP on the held-out (val) images reported beside fp32's.

Mask R-CNN is refused before anything is written (:func:`repghost.detection.graph.exportable`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import sidecar_path, write_sidecar
from ..data.photos import sample_photos
from ..detection.config import DataConfig
from ..detection.detectors import detector_body, reparameterize_detector
from ..detection.files import load_detector
from ..detection.graph import (
    OUTPUT_NAME,
    DetectorGraph,
    NotExportableError,
    exportable,
    postprocess_of,
    prepare,
    preprocess_of,
)
from ..io import discard_on_failure
from ..reparam import FoldError, fold_and_verify, is_deploy
from .detector_files import (
    DETECTOR_FORMATS,
    detector_props,
    evaluate_detector_file,
    open_detector_file,
)
from .edge import EDGE_RUNTIMES, edge_runtime
from .onnx_export import Comparison, ExportError, export_onnx, set_onnx_metadata
from .quantize import DEFAULT_RECIPE, quantize

#: Exported vs PyTorch graph on the photos: the max error of the boxes and of the scores, each over
#: its own scale (largest box coordinate, largest score), as the classifier export's tolerance.
RTOL = 1e-4


@dataclass(frozen=True)
class DetectionComparison:
    boxes: Comparison
    scores: Comparison
    images: int

    @property
    def ok(self) -> bool:
        return self.boxes.ok and self.scores.ok

    def __str__(self) -> str:
        return f"on {self.images} photos: boxes {self.boxes}; scores {self.scores}"


@dataclass
class Int8DetectionReport:
    path: Path
    tool: str
    fp32_ap: float
    int8_ap: float
    fp32_ap50: float
    int8_ap50: float
    num_calib: int
    num_held_out: int

    def __str__(self) -> str:
        return (f"int8 ({self.tool}) on {self.num_held_out} held-out images: AP {self.int8_ap:.2f} vs fp32 "
                f"{self.fp32_ap:.2f} (change {self.int8_ap - self.fp32_ap:+.2f} points), AP50 {self.int8_ap50:.2f} "
                f"vs {self.fp32_ap50:.2f}; calibrated on {self.num_calib} training images")


@dataclass
class DetectorExportReport:
    path: Path
    files: list[Path]
    comparison: DetectionComparison
    props: dict = field(repr=False, default_factory=dict)
    int8: Int8DetectionReport | None = None


def output_files(out: str | os.PathLike, fmt: str) -> list[Path]:
    """Every file a detector export to ``out`` may write (int8 model included)."""
    out = Path(out)
    if fmt == "onnx":
        return [out, int8_path(out, fmt)]
    rt = edge_runtime(fmt)
    int8 = rt.int8_path(out)
    return [*rt.files(out), sidecar_path(out), *rt.files(int8), sidecar_path(int8)]


def int8_path(out: Path, fmt: str) -> Path:
    return out.with_name(out.stem + ".int8.onnx") if fmt == "onnx" else edge_runtime(fmt).int8_path(out)


def deploy_detector(model: nn.Module, input_size: int, log: Callable[[str], None] = print) -> nn.Module:
    """The detector with its backbone in deploy form, the fold verified (already folded: as it is)."""
    if is_deploy(detector_body(model)):
        return model
    try:
        deployed, check = fold_and_verify(model, (1, 3, input_size, input_size), fold=reparameterize_detector,
                                          part=detector_body)
    except FoldError as err:
        raise ExportError(f"{err}; nothing written") from None
    log(f"backbone re-parameterized: {check}")
    return deployed


def photo_batch(graph_preprocess) -> torch.Tensor:
    """The bundled photographs through the detector's preprocessing: ``(3, 3, S, S)``."""
    from torchvision.transforms.functional import to_tensor

    batch, _, _ = prepare([to_tensor(p) for p in sample_photos()], graph_preprocess.transform())
    return batch


@torch.no_grad()
def compare_with_graph(path: str | os.PathLike, graph: nn.Module, x: torch.Tensor, runtime: str | None = None,
                       rtol: float = RTOL) -> DetectionComparison:
    """Run the exported file (opened as a user opens it) and the PyTorch ``graph`` on ``x``."""
    expected = graph.eval()(x)
    try:
        got = open_detector_file(path, runtime).graph(x)
    except ExportError:
        raise
    except Exception as err:  # each runtime raises its own types for a file it cannot run
        raise ExportError(f"cannot run {path}: {type(err).__name__}: {str(err).strip()[:200]}") from err
    if got.shape != expected.shape:
        raise ExportError(f"the exported output has shape {tuple(got.shape)}, PyTorch {tuple(expected.shape)}")

    def part(a, b):
        return Comparison(max_abs=float((a - b).abs().max()), scale=float(b.abs().max()), rtol=rtol)

    return DetectionComparison(part(got[..., :4], expected[..., :4]), part(got[..., 4:], expected[..., 4:]), len(x))


def check_or_remove(path: Path, files: list[Path], graph: nn.Module, x: torch.Tensor, label: str,
                    rtol: float = RTOL) -> DetectionComparison:
    """:func:`compare_with_graph`; when it disagrees (or cannot run), ``files`` are removed and
    :class:`ExportError` raised."""
    try:
        comparison = compare_with_graph(path, graph, x, rtol=rtol)
    except ExportError as err:
        _remove(files)
        raise ExportError(f"{err}; file removed") from err
    if not comparison.ok:
        _remove(files)
        raise ExportError(f"{label} output differs from PyTorch {comparison}; file removed")
    return comparison


def _remove(files: list[Path]) -> None:
    for file in files:
        file.unlink(missing_ok=True)


def write_graph(graph: nn.Module, out: Path, fmt: str, input_size: int, props: dict[str, str], opset: int = 18,
                exporter: str = "dynamo") -> list[Path]:
    """Write ``graph`` as ``fmt`` with its contract; the files written."""
    size = (1, 3, input_size, input_size)
    if fmt == "onnx":
        export_onnx(graph, out, size, opset=opset, exporter=exporter, output_name=OUTPUT_NAME)
        set_onnx_metadata(out, props)
        return [out]
    rt = edge_runtime(fmt)
    rt.export(graph, out, size)
    return [*rt.files(out), write_sidecar(out, props)]


def export_detector(source: str | os.PathLike, out: str | os.PathLike, fmt: str, img_size: int | None = None,
                    opset: int = 18, exporter: str = "dynamo", int8: bool = False, recipe: str = DEFAULT_RECIPE,
                    num_calib: int = 32, num_held_out: int | None = None, rtol: float = RTOL,
                    log: Callable[[str], None] = print) -> DetectorExportReport:
    """Export the detector checkpoint ``source`` to ``out`` as ``fmt`` (see the module docstring)."""
    if fmt not in DETECTOR_FORMATS:
        raise NotExportableError(f"a detector exports to {', '.join(DETECTOR_FORMATS)}, not {fmt} (its checkpoint "
                                 "already runs in PyTorch: det-eval and bench take it as it is)")
    if int8 and fmt not in ("onnx", "openvino"):
        raise NotExportableError(f"--int8 for a detector is available for onnx and openvino, not {fmt}")
    if fmt in EDGE_RUNTIMES:
        edge_runtime(fmt).require(export=True)
    model, state = load_detector(source)
    exportable(model.detector_config.model)
    data = state.get("train", {}).get("data")
    if int8 and data is None:
        raise NotExportableError(f"{source} does not record the data it was trained on, which --int8 calibrates "
                                 "and measures on (export the det-train checkpoint, last.pt)")
    size = img_size or int(model.detector_config.min_size)
    deployed = deploy_detector(model, size, log)
    graph = DetectorGraph(deployed, size).eval()
    preprocess = preprocess_of(deployed, size)
    props = detector_props(deployed.detector_config, state["categories"], preprocess,
                           postprocess_of(deployed, graph), data)
    out = Path(out)
    photos = photo_batch(preprocess)
    with discard_on_failure(output_files(out, fmt)):
        files = write_graph(graph, out, fmt, size, props, opset, exporter)
        comparison = check_or_remove(out, files, graph, photos, fmt, rtol)
        log(f"wrote {', '.join(map(str, files))} ({deployed.detector_config.model} on "
            f"{deployed.detector_config.backbone}, input {size}², output {OUTPUT_NAME} {graph.anchors.shape[0]} "
            f"anchors x {4 + deployed.detector_config.num_classes})")
        log(f"{fmt} vs PyTorch {comparison}")
        report = DetectorExportReport(out, files, comparison, props)
        if int8:
            report.int8 = add_int8(out, fmt, props, DataConfig(**data), preprocess, recipe, num_calib,
                                   num_held_out, log)
        return report


def decoding_nodes(path: str | os.PathLike) -> list[str]:
    """The nodes after the heads' convolutions (every node whose output is not a 4-D feature map: the
    heads' reshapes, their concatenation, the box decoding and the score activation). Left in float by
    int8: 8 bits over a box's pixel range, or through exp and softmax, cost most of the AP (measured:
    SSDLite on the synthetic set, AP 13.2 fp32 → 2.4 with them quantized)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             [*model.graph.input, *model.graph.value_info, *model.graph.output] if v.type.tensor_type.HasField("shape")}
    return [node.name for node in model.graph.node if node.output and ranks.get(node.output[0], 4) != 4]


def calibration_images(data: DataConfig, preprocess, count: int) -> np.ndarray:
    """The first ``count`` readable training images through the detector's preprocessing."""
    dataset = data.dataset(data.train_split, train=False, masks=False)
    transform, images = preprocess.transform(), []
    for index in range(len(dataset)):
        if len(images) >= count:
            break
        try:
            image = dataset[index][0]
        except OSError:  # unreadable: skipped, as in training
            continue
        if image is None:
            continue
        batch, _, _ = prepare([image], transform)
        images.append(batch[0].numpy())
    if not images:
        raise ValueError(f"no readable calibration image in {data.train_split}")
    return np.stack(images).astype(np.float32)


def add_int8(out: Path, fmt: str, props: dict[str, str], data: DataConfig, preprocess, recipe: str, num_calib: int,
             num_held_out: int | None, log: Callable[[str], None]) -> Int8DetectionReport:
    """Quantize the exported detector beside it and report the AP change on the val split."""
    calib = calibration_images(data, preprocess, num_calib)
    target = int8_path(out, fmt)
    if fmt == "onnx":
        quantize(out, target, calib, recipe, keep_float=decoding_nodes)
        set_onnx_metadata(target, props)
        tool = f"onnxruntime {recipe}, box decoding and scores in float"
    else:
        rt = edge_runtime(fmt)
        rt.quantize(out, target, calib, keep_float=rt.rank_changing_nodes(out))
        write_sidecar(target, props)
        tool = f"{rt.int8_tool}, box decoding and scores in float"
    fp32 = evaluate_detector_file(out, data, limit=num_held_out, progress=False)
    try:
        quantized = evaluate_detector_file(target, data, limit=num_held_out, progress=False)
    except Exception as err:  # the runtime's own error types, for an int8 model it cannot compile or run
        raise ExportError(f"the int8 model does not run: {type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0][:200]}; files removed") from err
    report = Int8DetectionReport(target, tool, fp32["bbox"]["AP"], quantized["bbox"]["AP"], fp32["bbox"]["AP50"],
                                 quantized["bbox"]["AP50"], len(calib), fp32["num_images"])
    log(f"wrote {target}")
    log(str(report))
    return report
