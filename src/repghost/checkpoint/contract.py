"""The file contract, both ways: what every file repghost writes carries about its model, and how
each kind of file is read back.

A model file names its model and carries the :class:`~repghost.preprocess.Preprocess` its inputs
need and, when known, its class names and the data it was trained on — so that ``eval``,
``export``, int8 calibration and ``bench`` read them instead of guessing. Where each kind keeps
them, and the one writer and one reader of each:

=====================  ===========================================================  ==================================
file                   where                                                        writer / reader
=====================  ===========================================================  ==================================
safetensors            header metadata: ``format`` ``"repghost"``, ``model_name``,  :func:`save_checkpoint` /
                       ``model_kwargs``, ``form``, ``extra`` (classes, data, ...),  :func:`read_safetensors_record`
                       ``repghost_preprocess``                                      (:func:`read_metadata`: the header)
training checkpoint    the ``torch.save`` dict: ``kind`` ``"repghost-train"``,      :func:`training_checkpoint` /
(``last.pt``)          ``version``, ``config`` (the run's resolved config),         :func:`read_training_checkpoint`,
                       ``model_kwargs``, ``num_classes``, ``classes``, ``best``,    :func:`training_record`
                       ``state_dict`` (``state_dict_ema``), the resumable rest
ONNX                   ``metadata_props``: :func:`export_props` (``TASK_KEY`` for   :func:`export_props` /
                       a detector; a file without it holds a classifier)            :func:`props_record`
TorchScript            the same, as extra files ``<key>.json``                      :func:`torchscript_extra_files` /
                                                                                    :func:`read_torchscript_props`
edge runtimes          the same, in ``OUT.repghost.json`` beside the files          :func:`write_sidecar` /
                                                                                    :func:`read_sidecar`
detector, search       the ``torch.save`` dict's ``format`` tag                     :func:`other_file_message` (what
                                                                                    it is, where a model is expected)
=====================  ===========================================================  ==================================
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..io import atomic_path, atomic_write_json
from ..preprocess import METADATA_KEY as PREPROCESS_KEY
from ..preprocess import Preprocess, PreprocessError
from .layouts import model_form
from .safe import CheckpointError, file_kind, read_checkpoint_file

#: The ``format`` of a safetensors file repghost wrote.
FORMAT = "repghost"
#: A training checkpoint's ``kind`` and layout ``version``.
TRAINING_KIND = "repghost-train"
TRAINING_VERSION = 1
#: The format tags of the other files repghost writes with ``torch.save``.
DETECTION_FORMAT = "repghost-detection"
SEARCH_FORMAT = "repghost-search/1"
#: What each tagged file is, said when one is given where a classification model is expected.
_OTHER_FILES = {
    DETECTION_FORMAT: "{path} is a repghost detector checkpoint (from det-train or det-eval --save-deploy), not a "
                      "classification model: evaluate it with `repghost det-eval {path}`, export it with `repghost "
                      "export {path} det.onnx`, time it with `repghost bench {path}`",
    SEARCH_FORMAT: "{path} is a repghost search checkpoint, not a model: continue the search with `repghost search "
                   "--resume --output <its directory> ...`; the architecture it ends with (arch.json beside it) is "
                   "a model name for train, export and bench",
}
#: The keys of an exported file's contract (ONNX metadata, TorchScript extra files, the sidecar JSON).
MODEL_KEY, CLASSES_KEY, DATA_KEY = "repghost_model", "repghost_classes", "repghost_data"
EXPORT_KEYS = (MODEL_KEY, PREPROCESS_KEY, CLASSES_KEY, DATA_KEY)
#: What the model in an exported file does: ``classification`` (the default, and what a file without
#: the key holds: classifiers' files do not spell it) or ``detection``.
TASK_KEY = "repghost_task"
TASKS = ("classification", "detection")
DETECTION_TASK = "detection"
#: An exported detector's contract (:mod:`repghost.deploy.detector_files`): the keys it carries besides the
#: task, the model name and the classes.
BACKBONE_KEY, DETECTOR_KEY, CATEGORIES_KEY = "repghost_backbone", "repghost_detector", "repghost_categories"
DETECTION_PREPROCESS_KEY, POSTPROCESS_KEY = "repghost_detection_preprocess", "repghost_postprocess"
INPUT_SIZE_KEY, LAYOUT_KEY, DETECTION_DATA_KEY = "repghost_input_size", "repghost_output_layout", \
    "repghost_detection_data"
DETECTION_KEYS = (TASK_KEY, BACKBONE_KEY, DETECTOR_KEY, CATEGORIES_KEY, DETECTION_PREPROCESS_KEY, POSTPROCESS_KEY,
                  INPUT_SIZE_KEY, LAYOUT_KEY, DETECTION_DATA_KEY)
#: The name ending of the contract's file beside an edge runtime's files (``OUT`` + this).
SIDECAR_SUFFIX = ".repghost.json"


@dataclass(frozen=True)
class Recorded:
    """What a file says about the model in it, besides the weights."""
    model_name: str
    preprocess: Preprocess | None = None    # None: not recorded
    classes: list[str] | None = None
    data: str | None = None                 # the data it was trained on
    model_kwargs: dict = field(default_factory=dict)
    form: str | None = None                 # "train" / "deploy" where the file says
    extra: dict = field(default_factory=dict)   # safetensors: its JSON extras; training checkpoint: {"best": ...}
    task: str = "classification"            # exported files: TASK_KEY


# -- safetensors ------------------------------------------------------------------------------------
def save_checkpoint(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None,
                    preprocess: Preprocess | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors, atomically) with metadata that lets
    :func:`~repghost.checkpoint.load_model` rebuild it: model name, kwargs and form, and the
    :class:`Preprocess` its inputs need when known. ``metadata`` adds JSON-able extras (``classes``,
    ``data``, ...)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_checkpoint writes safetensors; use a .safetensors path, not {path.name!r}")
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    kwargs = {k: v for k, v in getattr(model, "model_kwargs", {}).items() if k != "deploy"}
    header = {
        "format": FORMAT,
        "model_name": getattr(model, "model_name", ""),
        "model_kwargs": json.dumps(kwargs),
        "form": model_form(model),
        "extra": json.dumps(metadata or {}),
    }
    if preprocess is not None:
        header[PREPROCESS_KEY] = preprocess.to_json()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata :func:`save_checkpoint` wrote (``model_kwargs`` and ``extra`` decoded)."""
    meta = _safetensors_header(Path(path))
    if not _is_ours(meta):
        raise CheckpointError(f"{path} has no repghost metadata (model name); build the model with "
                              "create_model() and use load_checkpoint() instead")
    return _decoded(meta, path)


def read_safetensors_record(path: str | os.PathLike) -> Recorded | None:
    """What a safetensors file records (``None`` for one repghost did not write)."""
    meta = _safetensors_header(Path(path))
    if not _is_ours(meta):
        return None
    meta = _decoded(meta, path)
    extra = meta["extra"]
    return Recorded(meta["model_name"], _recorded_preprocess(path, meta), extra.get("classes"),
                    extra.get("data", extra.get("data_config", {}).get("data")), meta["model_kwargs"],
                    meta.get("form"), extra)


def _safetensors_header(path: Path) -> dict[str, str]:
    if path.is_dir() or not path.is_file():
        read_checkpoint_file(path)  # raises the not-found / directory message
    if file_kind(path) != "safetensors":
        raise CheckpointError(f"{path} is not a safetensors file, so it carries no repghost metadata")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:
        raise CheckpointError(f"cannot read {path} as safetensors: {err}") from None


def _is_ours(meta: dict) -> bool:
    return meta.get("format") == FORMAT and bool(meta.get("model_name"))


def _decoded(meta: dict[str, str], path) -> dict:
    try:
        decoded = {**meta, "model_kwargs": json.loads(meta.get("model_kwargs", "{}")),
                   "extra": json.loads(meta.get("extra", "{}"))}
        if not isinstance(decoded["model_kwargs"], dict) or not isinstance(decoded["extra"], dict):
            raise ValueError("model_kwargs and extra must be JSON objects")
    except ValueError as err:
        raise CheckpointError(f"{path}: malformed repghost metadata ({err})") from None
    return decoded


def _recorded_preprocess(path, meta: dict) -> Preprocess | None:
    try:
        if PREPROCESS_KEY in meta:
            return Preprocess.from_json(meta[PREPROCESS_KEY])
        legacy = meta["extra"].get("data_config")  # files written before the contract had a name
        if legacy:
            return Preprocess(input_size=legacy["img_size"], mean=legacy["mean"], std=legacy["std"],
                              interpolation=legacy.get("val_interpolation", "bilinear"),
                              crop_pct=legacy.get("crop_pct", 0.875))
    except (PreprocessError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: malformed preprocessing metadata ({err})") from None
    return None


# -- training checkpoints ---------------------------------------------------------------------------
def training_checkpoint(weights: dict, config: dict, model_kwargs: dict, num_classes: int, classes: list[str],
                        best: dict, ema_weights: dict | None = None, **resumable) -> dict:
    """The dict a training checkpoint holds: what :func:`training_record` reads — the weights (and
    EMA weights), the run's resolved ``config`` (model, img_size, mean, std, val_interpolation,
    crop_pct, data, ...), the model's kwargs, classes and best result — plus ``resumable``, the state
    the trainer alone reads back (optimizer, scheduler, position, RNG, ...)."""
    state = {"kind": TRAINING_KIND, "version": TRAINING_VERSION, "state_dict": weights, **resumable,
             "best": best, "config": config, "num_classes": num_classes, "classes": classes,
             "model_kwargs": model_kwargs}
    if ema_weights is not None:
        state["state_dict_ema"] = ema_weights
    return state


def is_training_checkpoint(obj) -> bool:
    """Whether ``obj`` (a file's raw contents) is a training checkpoint."""
    return isinstance(obj, dict) and obj.get("kind") == TRAINING_KIND


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    """Read a training checkpoint (tensors and plain containers only; nothing is executed)."""
    state = read_checkpoint_file(path)
    if not is_training_checkpoint(state):
        raise CheckpointError(f"{path} is not a repghost training checkpoint (no resumable state); "
                              "use --pretrained to start from plain weights")
    return state


def training_record(state: dict, path) -> Recorded:
    """What a training checkpoint records about its model (its ``config`` read once, here)."""
    cfg = state.get("config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), str):
        raise CheckpointError(f"{path}: training checkpoint without its config")
    kwargs = state.get("model_kwargs") or {"num_classes": state["num_classes"], "drop_rate": cfg["drop_rate"],
                                           **cfg.get("model_kwargs", {})}   # files from before it was recorded
    try:
        preprocess = Preprocess.from_train_config(SimpleNamespace(**cfg))
    except (ValueError, AttributeError, TypeError) as err:  # PreprocessError is a ValueError
        raise CheckpointError(f"{path}: malformed preprocessing settings in its config ({err})") from None
    return Recorded(cfg["model"], preprocess, state.get("classes"), cfg.get("data"), kwargs, "train",
                    {"best": state.get("best") or {}})


# -- exported files: ONNX, TorchScript, edge runtimes ----------------------------------------------
def export_props(model_name: str, preprocess: Preprocess, classes: list[str] | None = None,
                 data: str | None = None, task: str = "classification") -> dict[str, str]:
    """The contract of an exported file as string properties: ONNX ``metadata_props``, TorchScript
    extra files (:func:`torchscript_extra_files`), an edge runtime's sidecar (:func:`write_sidecar`)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    props = {MODEL_KEY: model_name, PREPROCESS_KEY: preprocess.to_json()}
    if task != TASKS[0]:
        props[TASK_KEY] = task
    props.update({key: json.dumps(value) for key, value in ((CLASSES_KEY, classes), (DATA_KEY, data))
                  if value is not None})
    return props


def props_record(props: dict[str, str], path) -> Recorded:
    """What :func:`export_props` wrote, read back (``path`` is for messages)."""
    try:
        preprocess = Preprocess.from_json(props[PREPROCESS_KEY]) if PREPROCESS_KEY in props else None
        classes = json.loads(props[CLASSES_KEY]) if CLASSES_KEY in props else None
        data = json.loads(props[DATA_KEY]) if DATA_KEY in props else None
    except (PreprocessError, ValueError) as err:
        raise CheckpointError(f"{path}: malformed repghost metadata ({err})") from None
    task = props.get(TASK_KEY, "classification")
    if task not in TASKS:
        raise CheckpointError(f"{path}: malformed repghost metadata (task {task!r}, expected one of {TASKS})")
    return Recorded(props.get(MODEL_KEY, ""), preprocess, classes, data, form="deploy", task=task)


def torchscript_extra_files(props: dict[str, str]) -> dict[str, str]:
    """``props`` as TorchScript extra files: one ``<key>.json`` each."""
    return {f"{key}.json": value for key, value in props.items()}


def read_torchscript_props(path: str | os.PathLike) -> dict[str, str]:
    """The contract's properties a TorchScript file carries (:func:`torchscript_extra_files`)."""
    import torch

    files = dict.fromkeys(torchscript_extra_files(dict.fromkeys((*EXPORT_KEYS, TASK_KEY))), "")
    try:
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    except Exception as err:
        raise CheckpointError(f"cannot read {path} as TorchScript: {type(err).__name__}: {err}") from None
    # torch hands back the bytes of each extra file it found (and leaves the others as given).
    return {name.removesuffix(".json"): value.decode() if isinstance(value, bytes) else value
            for name, value in files.items() if value}


def sidecar_path(path: str | os.PathLike) -> Path:
    """The contract's file beside an edge runtime's model ``path``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: str | os.PathLike, props: dict[str, str]) -> Path:
    """Write ``props`` beside the edge runtime's model ``path`` (atomically); returns the sidecar's path."""
    return atomic_write_json(sidecar_path(path), props)


def read_sidecar(path: str | os.PathLike) -> dict[str, str]:
    """The properties :func:`write_sidecar` wrote beside ``path``."""
    side = sidecar_path(path)
    try:
        props = json.loads(side.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} has no {side.name} beside it (the contract repghost export writes)") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {side}: {err}") from None
    if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
        raise CheckpointError(f"{side}: malformed repghost metadata (expected an object of strings)")
    return props


# -- other files ------------------------------------------------------------------------------------
def other_file_message(raw, path) -> str | None:
    """What a detector or search checkpoint is, for a caller that expected a model (``None`` for
    any other contents)."""
    tag = raw.get("format") if isinstance(raw, dict) else None
    return _OTHER_FILES[tag].format(path=path) if tag in _OTHER_FILES else None


class WrongTaskError(CheckpointError):
    """A model file of another task than the command's (a classifier given to ``det-eval``, a detector to
    ``eval``): the command line must change (exit code 2); the message names the command that takes it."""
