"""Safe reading: the one place a checkpoint file is opened.

Owns telling a file's kind from its bytes (safetensors, a ``torch.save`` zip or legacy pickle, or
neither), reading it with tensors and plain containers only (safetensors, or ``torch.load`` with
``weights_only=True``), and naming what a refused pickle references without running it.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..names import is_architecture_file, is_checkpoint_path  # noqa: F401  (re-exported)


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
    return _torch_load(path)


def _torch_load(path: Path):
    """``torch.load(weights_only=True)``, its failures told apart: code in the pickle, or damage."""
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
