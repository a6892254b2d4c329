"""Exported detector files: what they carry, how they are opened and run, and their COCO evaluation.

``repghost export DETECTOR_CHECKPOINT out.onnx`` (or ``--format openvino`` / ``litert`` / ``mnn`` /
``ncnn``, :mod:`.detector_export`) writes the fixed-size graph of :mod:`repghost.detection.graph`:
normalized ``(N, 3, S, S)`` in, ``(N, A, 4 + C)`` out — decoded boxes in network-input pixels, then
the class scores. Preprocessing (resize, normalize) and post-processing (threshold, top-k, NMS,
boxes back to the original image) run in Python, the same code for every format, so each format
gives the detections of the PyTorch model (see that module for why NMS is not in the graph).

Every file carries its contract: ONNX in its ``metadata_props``, the other formats in the
``OUT.repghost.json`` file beside them — ``repghost_task`` = ``detection``, the detector (model,
backbone, its whole config), the classes (and their COCO category ids), the input size and
preprocessing, the score threshold / NMS IoU / detection cap / top-k, and the data it was trained on.

:func:`open_detector_file` returns a :class:`DetectorFile`: ``task``, ``format``, ``runtime``,
``preprocess``, ``class_names`` (indexed by label, ``class_names[0]`` the background, as torchvision
names its categories), ``input_size``, and ``__call__(images)`` → per image ``{boxes (xyxy, original
pixels), scores, labels}`` — torchvision's detector interface, so :mod:`repghost.detection.evaluate`
scores a file as it scores a model.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CheckpointError, WrongTaskError, read_sidecar
from ..checkpoint.contract import (
    BACKBONE_KEY,
    CATEGORIES_KEY,
    CLASSES_KEY,
    DETECTION_DATA_KEY,
    DETECTION_PREPROCESS_KEY,
    DETECTION_TASK,
    DETECTOR_KEY,
    INPUT_SIZE_KEY,
    LAYOUT_KEY,
    MODEL_KEY,
    POSTPROCESS_KEY,
    TASK_KEY,
)
from ..detection.config import DataConfig, DetectorConfig
from ..detection.graph import DetectionPreprocess, PostProcess, postprocess, prepare
from ..names import EXPORT_SUFFIXES
from .graph_runner import GRAPH_FORMATS, GraphRunner, choose_runtime, exported_format, open_graph
from .onnx_export import onnx_metadata

DETECTION = DETECTION_TASK
PREPROCESS_KEY, DATA_KEY = DETECTION_PREPROCESS_KEY, DETECTION_DATA_KEY
#: What the graph's output holds, in words (written into every file).
LAYOUT = "(N, anchors, 4 + classes): x1 y1 x2 y2 in network-input pixels, then the score of each class " \
         "(class 0 is the background)"
#: Formats a detector exports to: every exported graph format (the runtimes each runs on:
#: :data:`repghost.names.FORMAT_RUNTIMES`).
DETECTOR_FORMATS = GRAPH_FORMATS


def detector_format_of(path: str | os.PathLike) -> str | None:
    """The exported-detector format a file name means, or ``None`` (a checkpoint, a TorchScript file...)."""
    return exported_format(path)


def detector_props(config: DetectorConfig, categories: list[dict], preprocess: DetectionPreprocess,
                   post: PostProcess, data: dict | None = None) -> dict[str, str]:
    """The contract an exported detector carries, as string properties."""
    props = {TASK_KEY: DETECTION, MODEL_KEY: config.model, BACKBONE_KEY: config.backbone,
             DETECTOR_KEY: json.dumps(config.to_dict()), CLASSES_KEY: json.dumps([c["name"] for c in categories]),
             CATEGORIES_KEY: json.dumps(categories), INPUT_SIZE_KEY: str(preprocess.input_size),
             PREPROCESS_KEY: json.dumps(preprocess.to_dict()), POSTPROCESS_KEY: json.dumps(post.to_dict()),
             LAYOUT_KEY: LAYOUT}
    if data is not None:
        props[DATA_KEY] = json.dumps(data)
    return props


def read_props(path: str | os.PathLike) -> dict[str, str]:
    """The properties an exported file carries (ONNX metadata, else the sidecar), ``{}`` for none."""
    fmt = detector_format_of(path)
    if fmt == "onnx":
        try:
            return onnx_metadata(path)
        except Exception as err:  # ExportError: not ONNX
            raise CheckpointError(str(err)) from None
    if fmt is None:
        raise CheckpointError(f"{path}: not an exported detector file (expected one of "
                              f"{', '.join(s for f in DETECTOR_FORMATS for s in EXPORT_SUFFIXES[f])})")
    return read_sidecar(path)


def is_detector_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an exported file that says it holds a detector."""
    try:
        return detector_format_of(path) is not None and read_props(path).get(TASK_KEY) == DETECTION
    except CheckpointError:
        return False


@dataclass
class DetectorFile:
    """An exported detector, ready to run (see the module docstring)."""

    path: Path
    format: str
    runtime: str
    preprocess: DetectionPreprocess
    postprocess: PostProcess
    categories: list[dict]
    detector_config: DetectorConfig
    props: dict = field(repr=False, default_factory=dict)
    # ``(N, 3, S, S)`` float32 array -> one row per image: the file's graph on its runtime (a
    # :class:`~repghost.deploy.graph_runner.GraphRunner`; bench's eager stand-in: the PyTorch graph).
    run_graph: GraphRunner | Callable[[np.ndarray], np.ndarray] = field(repr=False, default=None)
    task: str = DETECTION

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size

    @property
    def class_names(self) -> list[str]:
        return ["__background__", *(c["name"] for c in self.categories)]

    @property
    def num_outputs(self) -> int:
        return 4 + self.detector_config.num_classes

    @property
    def data(self) -> dict | None:
        return json.loads(self.props[DATA_KEY]) if DATA_KEY in self.props else None

    def eval(self) -> DetectorFile:  # the torch detector interface that evaluation calls
        return self

    def graph(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The graph alone: normalized ``(N, 3, S, S)`` → ``(N, A, 4 + C)``."""
        x = np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
        out = np.asarray(self.run_graph(x), dtype=np.float32)
        return torch.from_numpy(out.reshape(len(x), -1, self.num_outputs))

    def detect_in_input(self, batch: torch.Tensor) -> list[dict]:
        """Detections for a batch already prepared by :class:`DetectorInput`, boxes in input pixels
        (:class:`~repghost.deploy.runner.ModelRunner`'s call)."""
        size = (self.input_size, self.input_size)
        sizes = [size] * len(batch)
        return postprocess(self.graph(batch), self.postprocess, sizes, sizes, self.preprocess.transform())

    def __call__(self, images: Sequence) -> list[dict]:
        """Detections for a list of images: ``(3, H, W)`` tensors in [0, 1] (what the COCO loader
        yields) or PIL images; boxes in each image's own pixels."""
        tensors = [_as_tensor(image) for image in images]
        transform = self.preprocess.transform()
        batch, sizes, original = prepare(tensors, transform)
        return postprocess(self.graph(batch), self.postprocess, sizes, original, transform)


@dataclass(frozen=True)
class DetectorInput:
    """An exported detector's preprocessing as :class:`~repghost.deploy.runner.ModelRunner`'s callers use
    it: ``transform()`` takes a PIL image to the graph's normalized ``(3, S, S)`` input, ``to_image``
    takes boxes in input pixels back to the image — the geometry of torchvision's detection transform
    (stretched, or long side to ``S`` and padded bottom / right)."""

    contract: DetectionPreprocess

    @property
    def input_size(self) -> int:
        return self.contract.input_size

    def describe(self) -> str:
        return self.contract.describe()

    def transform(self) -> Callable:
        rcnn = self.contract.transform()
        return lambda image: prepare([_as_tensor(image)], rcnn)[0][0]

    def to_image(self, boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
        size = self.input_size
        if self.contract.resize == "stretch":
            sx, sy = size / width, size / height
        else:  # torchvision scales by S / long side and floors the resized size
            scale = size / max(width, height)
            sx, sy = math.floor(width * scale) / width, math.floor(height * scale) / height
        out = boxes.clone().float()
        out[:, 0::2] = (out[:, 0::2] / sx).clamp(0, width)
        out[:, 1::2] = (out[:, 1::2] / sy).clamp(0, height)
        return out


def _as_tensor(image) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().float()
    from torchvision.transforms.functional import to_tensor

    return to_tensor(image.convert("RGB"))


def open_detector_file(path: str | os.PathLike, runtime: str | None = None, threads: int = 1,
                       device: str | torch.device = "cpu") -> DetectorFile:
    """Open an exported detector on ``runtime`` (default: the one its format belongs to) with
    ``threads`` CPU threads (``device`` ``cuda``: an ONNX file on onnxruntime's CUDA provider). A file
    of another task raises :class:`WrongTaskError`; a runtime its format does not run on
    :class:`~repghost.deploy.graph_runner.RuntimeChoiceError`; one that is not an exported model, lacks
    its contract, or that its runtime cannot load (or is not installed)
    :class:`~repghost.checkpoint.CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    fmt = detector_format_of(path)
    props = read_props(path)
    if props.get(TASK_KEY) != DETECTION:
        raise WrongTaskError(f"{path} is not a detector (it holds {props.get(MODEL_KEY) or 'no repghost model'}, "
                             "a classifier): use `repghost eval` / `repghost predict` for it")
    runtime = choose_runtime(path, fmt, runtime)
    try:
        config = DetectorConfig.from_dict(json.loads(props[DETECTOR_KEY]))
        preprocess = DetectionPreprocess.from_dict(json.loads(props[PREPROCESS_KEY]))
        post = PostProcess.from_dict(json.loads(props[POSTPROCESS_KEY]))
        categories = json.loads(props[CATEGORIES_KEY])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: incomplete or malformed detector metadata ({type(err).__name__}: {err})") \
            from None
    return DetectorFile(path, fmt, runtime, preprocess, post, categories, config, props,
                        open_graph(path, runtime, threads, device))


def evaluate_detector_file(path: str | os.PathLike, data: DataConfig | None = None, runtime: str | None = None,
                           threads: int = 1, batch_size: int = 2, workers: int = 0, limit: int | None = None,
                           progress: bool = True) -> dict:
    """COCO metrics of an exported detector on ``data``'s val split (default: the data it was trained
    on; ``limit``: its first images only), through :func:`repghost.detection.evaluate.evaluate`: the
    same scoring as ``det-eval`` of a checkpoint."""
    from torch.utils.data import DataLoader

    from ..detection.data import collate
    from ..detection.evaluate import evaluate
    from ..detection.files import check_categories

    detector = open_detector_file(path, runtime, threads)
    if data is None:
        if detector.data is None:
            raise ValueError(f"{path} does not record its data; pass the dataset to evaluate on")
        data = DataConfig(**detector.data)
    dataset = data.dataset(data.val_split, train=False, masks=False)
    check_categories(detector.categories, dataset, str(path))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=range(min(limit or len(dataset), len(dataset))),
                        num_workers=workers,
                        collate_fn=collate)
    metrics = evaluate(detector, loader, torch.device("cpu"), progress=progress)
    metrics.update(checkpoint=str(path), form=f"{detector.format} on {detector.runtime}")
    return metrics
