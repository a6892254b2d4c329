"""Safe checkpoint I/O: tensors only, three key layouts, train vs deploy form told apart.

Reads safetensors files and ``torch.save`` files (always with ``weights_only=True``), raw or
wrapped (``state_dict``, ``state_dict_ema``, ``model``, … and ``module.`` prefixes), in our layout
or the official RepGhost / timm layout (timm's ``repghostnet_*`` and ``ghostnet_*`` share it).
Writes safetensors with JSON metadata (model name, form, kwargs) so :func:`load_model` can
rebuild a model from the file alone.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .io import atomic_path
from .layers.fuse import fold_bn_tensors
from .models import UnknownModelError, create_model, is_architecture_file, resolve_model_name
from .preprocess import METADATA_KEY as PREPROCESS_KEY
from .preprocess import Preprocess, PreprocessError
from .reparam import is_deploy

FORMAT = "repghost"
#: The format tags of the other files repghost writes with ``torch.save``: what they are is said when
#: one is given where a classification model is expected.
DETECTION_FORMAT = "repghost-detection"
SEARCH_FORMAT = "repghost-search/1"
_OTHER_FILES = {
    DETECTION_FORMAT: "{path} is a repghost detector checkpoint (from det-train or det-eval --save-deploy), not a "
                      "classification model: evaluate it with `repghost det-eval {path}` (exporting and benchmarking "
                      "detectors are not available yet)",
    SEARCH_FORMAT: "{path} is a repghost search checkpoint, not a model: continue the search with `repghost search "
                   "--resume --output <its directory> ...`; the architecture it ends with (arch.json beside it) is "
                   "a model name for train, export and bench",
}
_WRAPPER_KEYS = ("state_dict", "model", "module", "net", "params")
_EMA_KEYS = ("state_dict_ema", "model_ema", "ema")

# Official RepGhost / timm key → our key. Applied in order, each at most once per key.
_EXTERNAL_TO_OURS = [
    (r"^conv_stem\.", "stem.conv."),
    (r"^bn1\.", "stem.bn."),
    (r"\.primary_conv\.0\.", ".primary_conv.conv."),
    (r"\.primary_conv\.1\.", ".primary_conv.bn."),
    (r"\.cheap_operation\.0\.", ".cheap_operation.conv."),
    (r"\.cheap_operation\.1\.", ".cheap_operation.bn."),
    (r"\.cheap_operation\.(weight|bias)$", r".cheap_operation.conv.\1"),
    (r"\.fusion_bn\.0\.", ".fusion."),
    (r"\.conv_dw\.(weight|bias)$", r".conv_dw.conv.\1"),
    (r"\.bn_dw\.", ".conv_dw.bn."),
    (r"\.shortcut\.0\.", ".shortcut.dw.conv."),
    (r"\.shortcut\.1\.", ".shortcut.dw.bn."),
    (r"\.shortcut\.2\.", ".shortcut.pw.conv."),
    (r"\.shortcut\.3\.", ".shortcut.pw.bn."),
    (r"^(blocks\.\d+\.\d+)\.bn1\.", r"\1.bn."),
]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, is unsafe, or does not fit the model."""


def read_checkpoint_file(path: str | os.PathLike):
    """The raw contents of a checkpoint file: safetensors, or ``torch.load(weights_only=True)``.

    The one place a checkpoint file is opened: arbitrary pickled objects are refused, never run.
    The file's kind is told from its bytes, not its name, and each failure says which it is: not
    there, a directory, not a checkpoint at all, damaged, or a pickle that references code.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; expected a checkpoint file (.safetensors, .pt, .pth)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    kind = file_kind(path)
    if kind == "safetensors":
        try:
            return load_file(str(path))
        except Exception as err:
            raise CheckpointError(f"cannot read {path}: damaged safetensors file ({err})") from None
    if kind is None:
        if is_architecture_file(path):
            raise CheckpointError(f"{path} is not a checkpoint: an architecture file names a model without weights "
                                  "(train it with `repghost train --model`, or pass it where a model name goes)")
        raise CheckpointError(f"{path} is not a checkpoint: neither a safetensors file nor a torch.save file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refs = _pickled_globals(path, str(err))
        if refs:
            raise CheckpointError(
                f"refusing to load {path}: it is a pickle that references {', '.join(refs[:4])} — objects "
                "beyond tensors and plain containers, which could run arbitrary code when unpickled. Only "
                "tensors are read; re-save the weights as a state dict or safetensors from a trusted copy") from None
        raise CheckpointError(f"{path} is not a checkpoint: its pickle stream is not one torch.save writes") from None
    except Exception as err:  # corrupt zip, truncated file, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
        raise CheckpointError(f"cannot read {path}: damaged or truncated checkpoint ({first})") from None


def is_checkpoint_path(spec: str | os.PathLike) -> bool:
    """Whether a command's model argument names a checkpoint rather than a model: a file or directory that
    exists, or a path that looks like one (a directory part or an extension) — except an architecture
    file (``.json``), and a name with ``:`` (a searched architecture's inline name), which are models."""
    text = os.fspath(spec)
    exists = os.path.exists(text)  # False, not an error, for a name too long to be a path
    if is_architecture_file(text) or (":" in text and not exists):
        return False
    return exists or os.sep in text or bool(Path(text).suffix)


def file_kind(path: str | os.PathLike) -> str | None:
    """``"safetensors"``, ``"torch"`` (a torch.save zip or legacy pickle) or ``None``, from the bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = Path(path).stat().st_size
    if len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and 2 <= head[1] <= 5 if len(head) > 1 else False):
        return "torch"
    return None


def _pickled_globals(path: Path, message: str) -> list[str]:
    """The ``module.name`` globals a refused pickle references (read with pickletools, never run)."""
    found = re.findall(r"GLOBAL ([\w.]+)", message)
    if found:
        return found
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name else b""
        else:
            data = path.read_bytes()
        strings, refs = [], []
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                refs.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                refs.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # not a parseable pickle: then it references nothing we can name
        return []
    return [r for r in dict.fromkeys(refs) if not r.startswith(("torch.", "collections.OrderedDict"))]


def unwrap_state_dict(obj, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Find the state dict inside a training checkpoint and strip ``module.`` prefixes."""
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = (*_EMA_KEYS, *_WRAPPER_KEYS) if use_ema else _WRAPPER_KEYS
        inner = next((obj[k] for k in keys if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise CheckpointError(
                f"no state dict found in checkpoint; top-level keys: {sorted(map(str, obj))[:12]}")
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError("checkpoint holds no tensors")
    return {re.sub(r"^(module\.)+", "", k): v for k, v in obj.items()}


def is_external_layout(state_dict: dict) -> bool:
    """True for the official RepGhost / timm key layout."""
    return "conv_stem.weight" in state_dict


def to_our_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official RepGhost / timm keys to ours (a no-op on our own layout)."""
    if not is_external_layout(state_dict):
        return dict(state_dict)
    renamed = {}
    for key, value in state_dict.items():
        for pattern, repl in _EXTERNAL_TO_OURS:
            key = re.sub(pattern, repl, key)
        renamed[key] = value
    return renamed


def state_dict_form(state_dict: dict) -> str:
    """``"train"`` when the state dict holds BatchNorm statistics, else ``"deploy"``."""
    return "train" if any(k.endswith("running_mean") for k in state_dict) else "deploy"


def is_partially_folded(state_dict: dict) -> bool:
    """The official / timm deploy form: RepGhost branches folded, every other BN still there."""
    return state_dict_form(state_dict) == "train" and any(k.endswith("cheap_operation.conv.bias") for k in state_dict)


def fold_batchnorms(state_dict: dict[str, torch.Tensor], eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """Fold every ``<p>.bn.*`` group into the ``<p>.conv`` it follows, in a state dict of our layout.

    State dicts do not store BN ``eps``; PyTorch's default (1e-5) is the one every model here uses.
    """
    folded = dict(state_dict)
    for key in state_dict:
        if not key.endswith(".bn.running_mean"):
            continue
        prefix = key[: -len("bn.running_mean")]
        bn = {name: folded.pop(f"{prefix}bn.{name}", None)
              for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
        kernel = folded[f"{prefix}conv.weight"]
        bias = folded.get(f"{prefix}conv.bias", torch.zeros_like(bn["running_mean"]))
        kernel, bias = fold_bn_tensors(kernel, bias, bn["running_mean"], bn["running_var"],
                                       bn["weight"], bn["bias"], eps)
        folded[f"{prefix}conv.weight"], folded[f"{prefix}conv.bias"] = kernel, bias
    return folded


def model_form(model: nn.Module) -> str:
    return "deploy" if is_deploy(model) else "train"


def load_state_dict(path: str | os.PathLike, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a state dict in our layout (tensors only, nothing executed)."""
    return to_our_layout(unwrap_state_dict(read_checkpoint_file(path), use_ema=use_ema))


def load_checkpoint(model: nn.Module, path: str | os.PathLike, use_ema: bool = False,
                    drop_classifier: bool = False) -> nn.Module:
    """Load ``path`` into ``model`` strictly and return it.

    ``use_ema`` prefers EMA weights when the file has both. ``drop_classifier`` (fine-tuning)
    keeps the model's own classifier when the checkpoint's has a different number of classes.
    A train-form checkpoint into a deploy model (or the reverse) is refused with a message that
    names both layouts.
    """
    state = load_state_dict(path, use_ema=use_ema)
    return load_state_into(model, state, str(path), drop_classifier=drop_classifier)


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], name: str = "checkpoint",
                    drop_classifier: bool = False) -> nn.Module:
    """:func:`load_checkpoint` for a state dict already read (our layout); ``name`` is for messages."""
    path = name
    form = model_form(model)
    if form == "deploy" and is_partially_folded(state):
        state = fold_batchnorms(state)
    ckpt_form = state_dict_form(state)
    if ckpt_form != form:
        raise CheckpointError(
            f"{path} holds a {ckpt_form}-form state dict but the model is in {form} form; "
            + ("build the model with deploy=True, " if ckpt_form == "deploy" else "build it without deploy=True, ")
            + "or use repghost.load_model() on a file saved by repghost.save_checkpoint()")
    own = model.state_dict()
    if getattr(model, "features_only", False):
        state = _backbone_only(state, own)
    reshaped = [k for k in state if k in own and own[k].shape != state[k].shape]
    if drop_classifier:
        dropped = [k for k in reshaped if k.startswith("classifier.")]
        state = {k: v for k, v in state.items() if k not in dropped}
        reshaped = [k for k in reshaped if k not in dropped]
    missing = [k for k in own if k not in state and not (drop_classifier and k.startswith("classifier."))]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or reshaped:
        raise CheckpointError(_mismatch_message(path, missing, unexpected, reshaped, own, state))
    model.load_state_dict(state, strict=False)
    return model


def _backbone_only(state: dict, own: dict) -> dict:
    """Drop what a headless (``features_only``) model lacks: the head and blocks past its last level."""
    def stage(key):
        match = re.match(r"blocks\.\d+\.", key)
        return match.group(0) if match else None

    own_stages = {stage(k) for k in own}
    return {k: v for k, v in state.items()
            if not k.startswith(("conv_head.", "classifier.")) and stage(k) in own_stages}


def _mismatch_message(path, missing, unexpected, reshaped, own, state) -> str:
    lines = [f"{path} does not fit the model ({state_dict_form(own)} layout, "
             f"checkpoint {state_dict_form(state)} layout):"]
    if missing:
        lines.append(f"  missing in checkpoint ({len(missing)}): {', '.join(missing[:6])}")
    if unexpected:
        lines.append(f"  not in model ({len(unexpected)}): {', '.join(unexpected[:6])}")
    if reshaped:
        lines.append("  shape differs (" + str(len(reshaped)) + "): " + ", ".join(
            f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in reshaped[:6]))
    if any(k.startswith("classifier.") for k in missing + unexpected + reshaped):
        lines.append("  (a different number of classes? pass drop_classifier=True to fine-tune)")
    return "\n".join(lines)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None,
                    preprocess: Preprocess | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors, atomically) with metadata that lets
    :func:`load_model` rebuild it: model name, kwargs and form, and the :class:`Preprocess` its
    inputs need when known. ``metadata`` adds JSON-able extras (``classes``, ``data``, ...)."""
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
    path = Path(path)
    if path.is_dir() or not path.is_file():
        read_checkpoint_file(path)  # raises the not-found / directory message
    if file_kind(path) != "safetensors":
        raise CheckpointError(f"{path} is not a safetensors file, so it carries no repghost metadata")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as err:
        raise CheckpointError(f"cannot read {path} as safetensors: {err}") from None
    if meta.get("format") != FORMAT or not meta.get("model_name"):
        raise CheckpointError(f"{path} has no repghost metadata (model name); build the model with "
                              "create_model() and use load_checkpoint() instead")
    try:
        meta["model_kwargs"] = json.loads(meta.get("model_kwargs", "{}"))
        meta["extra"] = json.loads(meta.get("extra", "{}"))
        if not isinstance(meta["model_kwargs"], dict) or not isinstance(meta["extra"], dict):
            raise ValueError("model_kwargs and extra must be JSON objects")
    except ValueError as err:
        raise CheckpointError(f"{path}: malformed repghost metadata ({err})") from None
    return meta


@dataclass(frozen=True)
class LoadedModel:
    """A model rebuilt from a file, with what the file says about its inputs and outputs."""
    model: nn.Module
    preprocess: Preprocess | None   # None: the file does not record it (official / timm / raw state dict)
    classes: list[str] | None = None
    data: str | None = None         # the data it was trained on, when recorded
    kind: str = ""                  # "repghost safetensors", "repghost training checkpoint", "state dict"
    notes: tuple[str, ...] = ()     # what a user should know about the weights chosen


def open_model(path: str | os.PathLike, model_name: str | None = None, num_classes: int | None = None,
               use_ema: bool = False, **model_kwargs) -> LoadedModel:
    """Rebuild the model in any checkpoint file: the train / deploy safetensors that
    :func:`save_checkpoint` writes, a training checkpoint (``last.pt`` / ``best.pt``; ``use_ema``
    for its EMA weights), or — with ``model_name`` — an official, timm or raw state-dict file.

    Files written by repghost name their model; ``model_name``, when also given, must agree.
    """
    path = Path(path)
    raw = read_checkpoint_file(path)
    if num_classes is not None:  # a self-describing file still takes an explicit override
        model_kwargs = {**model_kwargs, "num_classes": num_classes}
    if file_kind(path) == "safetensors":
        meta = _repghost_metadata(path)
        if meta is not None:
            _check_name(path, meta["model_name"], model_name)
            if use_ema:
                raise CheckpointError(f"{path} holds one set of weights (the best ones, EMA or not, were saved); "
                                      "--ema applies to training checkpoints (last.pt / best.pt)")
            kwargs = {**meta["model_kwargs"], **model_kwargs}
            kwargs.setdefault("deploy", meta["form"] == "deploy")
            model = _recorded_model(path, meta["model_name"], kwargs)
            load_state_into(model, to_our_layout(unwrap_state_dict(raw)), str(path))
            extra = meta["extra"]
            return LoadedModel(model.eval(), _recorded_preprocess(path, meta), extra.get("classes"),
                               extra.get("data", extra.get("data_config", {}).get("data")), "repghost safetensors")
    if isinstance(raw, dict) and raw.get("kind") == "repghost-train":
        return _open_training_checkpoint(path, raw, model_name, use_ema, model_kwargs)
    if isinstance(raw, dict) and raw.get("format") in _OTHER_FILES:
        raise CheckpointError(_OTHER_FILES[raw["format"]].format(path=path))
    if model_name is None:
        raise CheckpointError(f"{path} was not written by repghost, so it does not name its model; "
                              "pass the model name (--model repghostnet_100, ...)")
    state = to_our_layout(unwrap_state_dict(raw, use_ema=use_ema))
    if "num_classes" not in model_kwargs and "classifier.weight" in state:
        model_kwargs["num_classes"] = state["classifier.weight"].shape[0]
    deploy = state_dict_form(state) == "deploy" or is_partially_folded(state)
    model = create_model(model_name, deploy=deploy, **model_kwargs)
    load_state_into(model, state, str(path))
    return LoadedModel(model.eval(), None, kind="state dict")


def _recorded_model(path: Path, name: str, kwargs: dict) -> nn.Module:
    """The model a file names: a name this version cannot build is the file's problem, not the caller's."""
    try:
        return create_model(name, **kwargs)
    except UnknownModelError as err:
        raise CheckpointError(f"{path} holds a model that cannot be built here: {err}") from None


def _repghost_metadata(path: Path) -> dict | None:
    try:
        return read_metadata(path)
    except CheckpointError as err:
        if "no repghost metadata" in str(err):
            return None
        raise


def _check_name(path, recorded: str, given: str | None) -> None:
    if given is None or given == recorded:
        return
    try:
        given = resolve_model_name(given)  # a searched architecture's file names its inline name
    except UnknownModelError:
        pass
    if given != recorded:
        raise CheckpointError(f"{path} holds a {recorded} model, not {given}; drop --model (the file names its model)")


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


def _open_training_checkpoint(path: Path, state: dict, model_name, use_ema: bool, model_kwargs: dict) -> LoadedModel:
    cfg = state.get("config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), str):
        raise CheckpointError(f"{path}: training checkpoint without its config")
    _check_name(path, cfg["model"], model_name)
    if use_ema and "state_dict_ema" not in state:
        raise CheckpointError(f"{path} has no EMA weights (the run had ema_decay 0)")
    recorded = state.get("model_kwargs") or {"num_classes": state["num_classes"], "drop_rate": cfg["drop_rate"],
                                             **cfg.get("model_kwargs", {})}
    kwargs = {**recorded, **model_kwargs}
    model = _recorded_model(path, cfg["model"], kwargs)
    load_state_into(model, unwrap_state_dict(state, use_ema=use_ema), str(path))
    try:
        preprocess = Preprocess(input_size=cfg["img_size"], mean=cfg["mean"], std=cfg["std"],
                                interpolation=cfg["val_interpolation"], crop_pct=cfg["crop_pct"])
    except (PreprocessError, KeyError) as err:
        raise CheckpointError(f"{path}: malformed preprocessing settings in its config ({err})") from None
    best = state.get("best") or {}
    notes = ()
    if not use_ema and best.get("source") == "ema":
        notes = (f"{path.name} holds raw and EMA weights and its best score ({best.get('top1', 0):.2f} %) came from "
                 "the EMA ones; these are the raw weights (pass --ema for the EMA ones)",)
    return LoadedModel(model.eval(), preprocess, state.get("classes"), cfg.get("data"),
                       "repghost training checkpoint", notes)


def load_model(path: str | os.PathLike, **overrides) -> nn.Module:
    """Rebuild the model in a file repghost wrote — train or deploy safetensors, or a training
    checkpoint (``last.pt`` / ``best.pt``) — and load its weights. ``overrides`` go to create_model."""
    return open_model(path, **overrides).model
