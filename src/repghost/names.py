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


def is_architecture_file(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a searched architecture's file (``.json``): a model without weights, where a
    path would otherwise be a checkpoint."""
    return Path(os.fspath(spec)).suffix.lower() == ".json"


def is_checkpoint_path(spec: str | os.PathLike) -> bool:
    """Whether a command's model argument names a checkpoint rather than a model: a file or directory that
    exists, or a path that looks like one (a directory part or an extension) — except an architecture
    file (``.json``), and a name with ``:`` (a searched architecture's inline name), which are models."""
    text = os.fspath(spec)
    exists = os.path.exists(text)  # False, not an error, for a name too long to be a path
    if is_architecture_file(text) or (":" in text and not exists):
        return False
    return exists or os.sep in text or bool(Path(text).suffix)


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
#: onnxruntime graph optimization levels, from none to all (:func:`repghost.deploy.session`).
ORT_OPT_LEVELS = ("disable", "basic", "extended", "all")

#: torchvision detectors ``repghost det-train --model`` builds (:mod:`repghost.detection.models`).
DETECTORS = ("retinanet", "maskrcnn", "ssdlite")
