"""One runner for every model file repghost writes: :func:`open_model` (``repghost.open_model``).

It opens a training checkpoint (``last.pt`` / ``best.pt``), a train or deploy safetensors file, a
detector checkpoint (``det-train``'s ``last.pt``, ``det-eval --save-deploy``), TorchScript, ONNX and
int8 ONNX, OpenVINO IR (fp32 / int8), LiteRT ``.tflite``, MNN and ncnn, and returns a
:class:`ModelRunner`: what the file holds (``task``, ``format``, the ``runtime`` that runs it, the
:class:`~repghost.preprocess.Preprocess` contract its inputs need, ``class_names``, ``input_size``)
and a ``__call__(batch)`` on a preprocessed NCHW float batch:

- a classifier returns its logits, an ``(N, classes)`` float tensor;
- a detector returns one dict per image: ``boxes`` (``(K, 4)`` xyxy in input pixels), ``scores``,
  ``labels`` (``class_names[label]`` names it; label 0 is torchvision's background) and, for Mask
  R-CNN, ``masks`` (``(K, 1, H, W)`` probabilities).

Where a file can run on several runtimes (an ONNX file: onnxruntime or OpenVINO's ONNX frontend;
a torch checkpoint: eager PyTorch) ``runtime`` picks one; by default a file runs on the runtime it
was written for. ``eval``, ``det-eval``, ``bench``, ``predict`` and the checks after ``export`` all
open files here. An exported graph (ONNX, OpenVINO, LiteRT, MNN, ncnn; classifier or detector) is
loaded on its runtime by :func:`~repghost.deploy.graph_runner.open_graph`, the one back end of both.

A torchvision detector checkpoint is fed as its exported form would be: the whole image stretched
to ``min_size``² (``Preprocess(resize="stretch")``), scaled to [0, 1], *not* normalized — the model
normalizes (and, being given its own size, does not resize again) inside its forward, and returns
boxes in the pixels of the batch it was given. Exported detector files are opened by
:mod:`repghost.deploy.detector_files`: the graph on its runtime, then torchvision's post-processing.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import (
    DETECTION_FORMAT,
    LoadedModel,
    Recorded,
    WrongTaskError,  # noqa: F401  (re-exported: eval / det-eval raise it)
    file_kind,
    props_record,
    read_checkpoint_file,
    read_sidecar,
    read_torchscript_props,
    sidecar_path,
)
from ..checkpoint import open_model as open_checkpoint
from ..preprocess import Preprocess
from . import onnx_export
from .graph_runner import (
    RunnerError,
    RuntimeChoiceError,  # noqa: F401  (re-exported: open_model raises it)
    choose_runtime,
    exported_format,
    open_graph,
)


@dataclass
class ModelRunner:
    """A model file, opened: what it is and a call that runs it (see the module's docstring);
    ``task`` is one of :data:`~repghost.checkpoint.TASKS`."""

    path: Path
    task: str
    format: str                       # checkpoint | safetensors | torchscript | onnx | openvino | litert | mnn | ncnn
    runtime: str
    preprocess: Preprocess | None     # None: the file records none (not written by repghost)
    class_names: list[str] | None
    input_size: int | None
    call: Callable = field(repr=False, default=None)
    int8: bool = False
    model_name: str = ""
    data: str | None = None           # the data the model was trained on, where the file records it
    module: nn.Module | None = field(repr=False, default=None)   # the PyTorch model of a torch file
    categories: list[dict] | None = None   # detectors: [{"id", "name"}] per label 1, 2, ... (COCO ids)
    notes: tuple[str, ...] = ()
    files: list[Path] = field(default_factory=list)   # every file the model is made of

    def __call__(self, batch):
        batch = torch.as_tensor(batch, dtype=torch.float32)
        if batch.ndim != 4 or batch.shape[1] != 3 or (self.input_size and tuple(batch.shape[2:]) !=
                                                       (self.input_size, self.input_size)):
            size = f"{self.input_size}x{self.input_size}" if self.input_size else "HxW"
            raise ValueError(f"{self.path.name} takes an Nx3x{size} batch, got {'x'.join(map(str, batch.shape))}")
        return self.call(batch)

    @property
    def label(self) -> str:
        """How tables name it: the format, with int8 where it is."""
        return f"{self.format}{' int8' if self.int8 else ''}"

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names is not None else None

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files if f.is_file())


def file_format(path: str | os.PathLike) -> str:
    """The format of a model file, from its name and (for ``.pt``) its contents."""
    path = Path(path)
    fmt = exported_format(path)
    if fmt is not None:
        return fmt
    if path.is_file() and file_kind(path) == "safetensors":
        return "safetensors"
    if path.is_file() and _is_torchscript(path):
        return "torchscript"
    return "checkpoint"


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive holds its code (``*/code/``); a ``torch.save`` zip does not."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def is_int8(path: str | os.PathLike) -> bool:
    """An int8 file: ``repghost export --int8`` names them ``NAME.int8<suffix>``."""
    return ".int8." in Path(path).name.lower()


def open_model(path: str | os.PathLike, runtime: str | None = None, threads: int | None = None,
               device: str | torch.device = "cpu", model_name: str | None = None, use_ema: bool = False
               ) -> ModelRunner:
    """Open any model file repghost writes (see the module's docstring) on ``runtime`` (default: the
    file's own) with ``threads`` CPU threads (default: torch's setting). ``device`` places a torch
    file's model (``cuda`` for a GPU); ``model_name`` and ``use_ema`` are for checkpoints (a file without
    repghost metadata, a training checkpoint's EMA weights).

    Raises :class:`RunnerError` (a :class:`~repghost.checkpoint.CheckpointError`) for a file that is
    not a model or a runtime that is not installed, and its :class:`RuntimeChoiceError` for a runtime
    the format does not run on.
    """
    path = Path(path)
    if path.is_dir():
        raise RunnerError(f"{path} is a directory; expected a model file")
    if not path.is_file():
        raise RunnerError(f"model file not found: {path}")
    fmt = file_format(path)
    runtime = choose_runtime(path, fmt, runtime)
    threads = threads or torch.get_num_threads()
    if fmt in ("checkpoint", "safetensors"):
        return _open_torch_file(path, fmt, threads, torch.device(device), model_name, use_ema)
    record = _exported_record(path, fmt)
    if record.task == "detection":
        return _open_detector_file(path, runtime, threads, torch.device(device))
    if fmt == "torchscript":
        return _open_torchscript(path, record, threads, torch.device(device))
    graph = open_graph(path, runtime, threads, device)
    runner = ModelRunner(path, "classification", fmt, runtime, record.preprocess, record.classes,
                         record.preprocess.input_size if record.preprocess else graph.input_size,
                         lambda batch: torch.from_numpy(graph(batch)), is_int8(path), record.model_name, record.data,
                         files=graph.files)
    if fmt not in ("onnx",) and record.preprocess is None and not sidecar_path(path).is_file():
        runner.notes = (f"{path.name} has no {sidecar_path(path).name} beside it: no preprocessing or classes "
                        "recorded",)
    return runner


# -- torch files -----------------------------------------------------------------------------------
def _open_torch_file(path: Path, fmt: str, threads: int, device: torch.device, model_name, use_ema) -> ModelRunner:
    torch.set_num_threads(threads)
    raw = read_checkpoint_file(path) if fmt == "checkpoint" else None
    if isinstance(raw, dict) and raw.get("format") == DETECTION_FORMAT:
        return _open_detector_checkpoint(path, device)
    loaded: LoadedModel = open_checkpoint(path, model_name=model_name, use_ema=use_ema)
    return torch_runner(loaded.model, path, fmt, loaded.preprocess, loaded.classes, device,
                        model_name=getattr(loaded.model, "model_name", ""), data=loaded.data, notes=loaded.notes)


def torch_runner(model: nn.Module, path: str | os.PathLike, fmt: str, preprocess: Preprocess | None,
                 classes: list[str] | None, device: torch.device | str = "cpu", runtime: str = "eager",
                 **info) -> ModelRunner:
    """A :class:`ModelRunner` around a PyTorch classifier already in memory (a checkpoint's model, or
    its re-parameterized form)."""
    device = torch.device(device)
    model = model.eval().to(device)

    @torch.inference_mode()
    def call(batch: torch.Tensor) -> torch.Tensor:
        return model(batch.to(device)).float().cpu()

    size = preprocess.input_size if preprocess else None
    return ModelRunner(Path(path), "classification", fmt, runtime, preprocess, classes, size, call, module=model,
                       files=[Path(path)], **info)


def _open_detector_checkpoint(path: Path, device: torch.device) -> ModelRunner:
    from ..detection.files import load_detector

    model, state = load_detector(path)
    model.to(device)
    config = model.detector_config
    size = config.min_size
    # The model normalizes inside; given an image of its own size it does not resize it again.
    preprocess = Preprocess(input_size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=1.0,
                            resize="stretch")
    categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in state["categories"]]

    @torch.inference_mode()
    def call(batch: torch.Tensor) -> list[dict]:
        outputs = model(list(batch.to(device)))
        return [{k: v.cpu() for k, v in out.items()} for out in outputs]

    return ModelRunner(path, "detection", "checkpoint", "eager", preprocess,
                       ["__background__", *(c["name"] for c in categories)], size, call,
                       model_name=f"{config.model}/{config.backbone}", module=model, categories=categories,
                       files=[path])


# -- exported files --------------------------------------------------------------------------------
def _exported_record(path: Path, fmt: str) -> Recorded:
    """What an exported file records; an empty record for a file written elsewhere (or an export
    checked before its metadata is written)."""
    if fmt == "onnx":
        try:
            props = onnx_export.onnx_metadata(path)
        except onnx_export.ExportError as err:
            raise RunnerError(str(err)) from None
    elif fmt == "torchscript":
        props = read_torchscript_props(path)
    else:
        props = read_sidecar(path) if sidecar_path(path).is_file() else {}
    return props_record(props, path)


def _open_detector_file(path: Path, runtime: str, threads: int, device: torch.device) -> ModelRunner:
    """An exported detector as a :class:`ModelRunner`: its preprocessing as the runner's callers use
    it (a PIL image in, boxes back to the image), and a call that gives detections in input pixels."""
    from .detector_files import DetectorInput, open_detector_file

    detector = open_detector_file(path, runtime, threads, device)
    files = [*detector.run_graph.files, *([] if detector.format == "onnx" else [sidecar_path(path)])]
    return ModelRunner(path, "detection", detector.format, detector.runtime, DetectorInput(detector.preprocess),
                       detector.class_names, detector.input_size, call=detector.detect_in_input,
                       model_name=detector.detector_config.backbone, categories=detector.categories, files=files)


def _open_torchscript(path: Path, record: Recorded, threads: int, device: torch.device) -> ModelRunner:
    torch.set_num_threads(threads)
    try:
        module = onnx_export.load_torchscript(path).to(device)
    except Exception as err:
        raise RunnerError(f"cannot run {path} as TorchScript: {type(err).__name__}: {err}") from None
    runner = torch_runner(module, path, "torchscript", record.preprocess, record.classes, device,
                          runtime="torchscript", model_name=record.model_name, data=record.data)
    runner.module = None  # a ScriptModule: not a model to fold or profile
    return runner


# -- the check after an export ---------------------------------------------------------------------
@torch.no_grad()
def compare_with_torch(runner: ModelRunner, model: nn.Module, input_size, rtol: float = onnx_export.RTOL,
                       seed: int = 0, images: torch.Tensor | None = None) -> onnx_export.Comparison:
    """Run the opened file and the PyTorch ``model`` on the same input (random of ``input_size``, or
    ``images``); the max error against the tolerance policy of the exports."""
    x = images if images is not None else torch.randn(tuple(input_size), generator=torch.Generator().manual_seed(seed))
    expected = model.eval()(x).float()
    got = runner(x)
    if tuple(got.shape) != tuple(expected.shape):
        raise onnx_export.ExportError(f"{runner.runtime} output shape {tuple(got.shape)} differs from PyTorch "
                                      f"{tuple(expected.shape)}")
    return onnx_export.Comparison(max_abs=float((got - expected).abs().max()), scale=float(expected.abs().max()),
                                  rtol=rtol)
