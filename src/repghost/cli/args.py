"""Argument types and the parser every command uses: bad values fail in parsing, before any work.

Exit codes, the same for every command:

- ``0``: done;
- ``2``: the command line is wrong — a value out of range, an unknown model name, a path that is
  missing or of the wrong kind, flags that do not go together. Nothing has been read or written;
- ``1``: the work failed — a file that is not what it claims, unusable data, a check that failed;
- ``130``: interrupted (Ctrl-C): one line on stderr, ``repghost <command>: interrupted`` or the
  command's resume hint; scratch files and unfinished outputs are removed, and commands that resume
  (``train``, ``search``, ``costmodel sample``, ``study ablation``, ``det-train``) keep what they
  need to continue.

Each error is one line on stderr: ``repghost <command>: error: <what is wrong>``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..limits import COUNT, COUNT0, FRACTION, POSITIVE, RATE, Number  # noqa: F401  (re-exported)

USAGE_ERROR = 2
RUNTIME_ERROR = 1
INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): the message is what the user must change."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def fail(command: str, err: BaseException | str, code: int = RUNTIME_ERROR) -> int:
    """Print ``err`` as the command's one error line (first line of multi-line messages kept whole)."""
    text = str(err).strip() or type(err).__name__
    print(f"repghost {command}: error: {text}", file=sys.stderr)
    return code


def input_file(text: str, what: str = "file") -> str:
    """A file that exists (not a directory)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; expected a {what}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{what} not found: {text}")
    return text


def checkpoint_file(text: str) -> str:
    """A checkpoint file that exists (its contents are checked when it is read)."""
    return input_file(text, "checkpoint")


def input_dir(text: str) -> str:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a directory")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"directory not found: {text}")
    return text


def _writable_parent(path: Path) -> None:
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write to {parent} (permission denied)")


def output_file(text: str) -> str:
    """A file path that can be written: not a directory, in a writable directory that exists (a single
    output file's directory is not created: a typo in it would otherwise go unnoticed; output
    *directories* are created, see :func:`output_dir`)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; expected an output file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot overwrite {text} (permission denied)")
    parent = path.absolute().parent
    if parent.exists() and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: {path.parent} is a file, not a directory")
    if not parent.exists():
        raise argparse.ArgumentTypeError(f"cannot write {text}: directory {path.parent} does not exist")
    _writable_parent(path.absolute())
    return text


def output_dir(text: str) -> str:
    """A directory that exists and is writable, or can be created."""
    path = Path(text).absolute()
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a file; expected a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"cannot write to {text} (permission denied)")
        return text
    _writable_parent(path)
    return text


def model_name(text: str) -> str:
    """A registered model name, or a searched architecture's file or inline name: parsed to the name the
    model will carry (a file's inline name, so nothing recorded depends on the file)."""
    from ..names import MODEL_NAMES, SEARCHED_MODEL_PREFIXES

    # Registered names, and names that cannot be a searched architecture (no inline-name prefix, no
    # file, no .json), are answered here; only the rest needs the models (and torch) to resolve.
    if text in MODEL_NAMES:
        return text
    if not (text.startswith(tuple(f"{p}:" for p in SEARCHED_MODEL_PREFIXES)) or text.endswith(".json")
            or os.path.exists(text)):
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; available models: {', '.join(MODEL_NAMES)}")
    from ..models import UnknownModelError, resolve_model_name

    try:
        return resolve_model_name(text)
    except UnknownModelError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def mean_std(kind: str):
    """``--mean`` takes 3 values in [0, 1], ``--std`` 3 positive values."""
    return dict(type=FRACTION if kind == "mean" else POSITIVE, nargs=3, metavar=("R", "G", "B"))


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` that shows the default a run actually uses: an option's value is appended as
    ``(default: X)`` unless its help already says what happens when it is not given (``default`` in
    the text, for defaults that depend on other flags or on the data). Never ``(default: None)``, and
    no default after switches (``--ema``, ``--amp/--no-amp``), whose help says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, argparse.SUPPRESS) or action.nargs == 0:
            return text
        return super()._get_help_string(action)
