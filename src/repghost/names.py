"""The names a user types — models, runtimes, export formats, detectors, the built-in data set — as
plain constants that import nothing, and the rule that tells a model name from a checkpoint path.

The command line builds its parser (``choices``, ``--help``, usage errors) and lists ``repghost
models`` from here, so it answers without loading torch. The modules that implement each name
take it from here; model names, which the families register as they are imported, are checked
against :data:`MODEL_NAMES` by a test, so the two cannot drift.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Every model the families register (``repghost.list_models()``).
MODEL_NAMES = (
    "ghost_resnet50", "ghost_resnet50_s2", "ghost_resnet50_s4",
    "ghostnet_050", "ghostnet_100", "ghostnet_130", "ghostnet_add_050", "ghostnet_add_100", "ghostnet_add_130",
    "mobiledet_cpu", "mobiledet_dsp", "mobiledet_edgetpu", "mobiledet_gpu",
    "repghost_resnet50", "repghost_resnet50_s2", "repghost_resnet50_s4",
    "repghostnet_050", "repghostnet_058", "repghostnet_080", "repghostnet_100", "repghostnet_111",
    "repghostnet_130", "repghostnet_150", "repghostnet_200",
)
#: A searched architecture's inline model name is ``<prefix>:<fingerprint>:<choice>,<choice>,...``, the prefix
#: naming its space: this one MobileDet-CPU's skeleton (``mobiledet_cpu_skeleton/v1``) …
SEARCHED_MODEL_PREFIX = "mobiledet_search"
#: … this one RepGhostNet's (``repghostnet_skeleton/v1``).
REPGHOSTNET_SEARCH_PREFIX = "repghostnet_search"
SEARCHED_MODEL_PREFIXES = (SEARCHED_MODEL_PREFIX, REPGHOSTNET_SEARCH_PREFIX)
#: The search spaces (:mod:`repghost.models.space`): MobileDet-CPU's skeleton (the cost model's and the
#: search's default) and RepGhostNet's.
MOBILEDET_SPACE_ID = "mobiledet_cpu_skeleton/v1"
REPGHOSTNET_SPACE_ID = "repghostnet_skeleton/v1"
SPACE_IDS = (MOBILEDET_SPACE_ID, REPGHOSTNET_SPACE_ID)
#: What a cost model fits (``costmodel fit --clock``): wall-clock or CPU time of the same timed runs.
COSTMODEL_CLOCKS = ("wall", "cpu")


def is_architecture_file(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a searched architecture's file (``.json``): a model without weights, where a
    path would otherwise be a checkpoint."""
    return Path(os.fspath(spec)).suffix.lower() == ".json"


def is_searched_architecture(spec: str | os.PathLike) -> bool:
    """Whether a model argument names a searched architecture: its file (``.json``) or its inline name
    (``<space>:<fingerprint>:<choices>``; registered names never hold a ``:``)."""
    text = os.fspath(spec)
    return is_architecture_file(text) or (":" in text and not os.path.exists(text))


def is_checkpoint_path(spec: str | os.PathLike) -> bool:
    """Whether a command's model argument names a checkpoint rather than a model: a file or directory that
    exists, or a path that looks like one (a directory part or an extension) — except an architecture
    file (``.json``), and a name with ``:`` (a searched architecture's inline name), which are models."""
    text = os.fspath(spec)
    if is_searched_architecture(text):
        return False
    return os.path.exists(text) or os.sep in text or bool(Path(text).suffix)


#: Ghost-Res50 / RepGhost-Res50 ratios ``s`` with a registered model (``ghost_resnet50_s<s>``).
RESNET_RATIOS = (2, 4)

#: ``--data digits``: scikit-learn's bundled handwritten digits, the built-in classification set.
DIGITS = "digits"

#: Edge runtimes, one module each in :mod:`repghost.deploy.edge` (export formats and bench runtimes).
EDGE_RUNTIME_NAMES = ("mnn", "ncnn", "openvino", "litert")
#: ``repghost bench --runtimes`` (:mod:`repghost.bench.runtimes`).
RUNTIMES = ("eager", "channels_last", "torchscript", "compile", "onnxruntime", *EDGE_RUNTIME_NAMES)
#: ``repghost export --format`` (:mod:`repghost.deploy.pipeline`).
EXPORT_FORMATS = ("onnx", "torchscript", *EDGE_RUNTIME_NAMES)
#: The output name endings that mean each format (the first is the usual one): ``repghost export``
#: infers ``--format`` from them; each edge runtime's ``suffixes`` are these.
EXPORT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "onnx": (".onnx",), "torchscript": (".pt",), "mnn": (".mnn",), "ncnn": (".ncnn.param", ".param"),
    "openvino": (".xml",), "litert": (".tflite",),
}


def is_exported_file(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a file ``repghost export`` writes for a runtime (ONNX or an edge format; a
    TorchScript ``.pt`` is told from a checkpoint by its contents, not its name)."""
    name = os.fspath(spec).lower()
    return any(name.endswith(s) for fmt, suffixes in EXPORT_SUFFIXES.items() if fmt != "torchscript"
               for s in suffixes)


#: The formats :func:`repghost.open_model` opens and the runtimes each runs on (the first is its default):
#: ``--runtime`` of eval / predict picks among them.
FORMAT_RUNTIMES: dict[str, tuple[str, ...]] = {
    "checkpoint": ("eager",), "safetensors": ("eager",), "torchscript": ("torchscript",),
    "onnx": ("onnxruntime", "openvino"), "openvino": ("openvino",), "litert": ("litert",), "mnn": ("mnn",),
    "ncnn": ("ncnn",),
}
FILE_RUNTIMES = tuple(dict.fromkeys(rt for runtimes in FORMAT_RUNTIMES.values() for rt in runtimes))
#: onnxruntime graph optimization levels, from none to all (:func:`repghost.deploy.session`).
ORT_OPT_LEVELS = ("disable", "basic", "extended", "all")

#: torchvision detectors ``repghost det-train --model`` builds (:mod:`repghost.detection.models`).
DETECTORS = ("retinanet", "maskrcnn", "ssdlite")
