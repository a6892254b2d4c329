"""What every edge runtime module implements, and what they share.

A runtime is one :class:`EdgeRuntime` subclass: ``export(model, path, input_size) -> path`` writes
the runtime's file(s) from a deploy-form model, ``runner(path, threads) -> callable`` loads them
and returns ``f(images) -> logits`` (NCHW float32 in, ``(N, classes)`` out), and the shared
``check(path, model) -> Comparison`` runs that callable on random input against PyTorch with the
tolerance policy of the ONNX export. The runtimes are optional dependencies: ``require`` turns a
missing one into a one-line message naming the extra to install.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...names import EXPORT_SUFFIXES
from ..onnx_export import RTOL, Comparison, ExportError, export_for_runtime

Runner = Callable[[np.ndarray], np.ndarray]


class MissingRuntimeError(ExportError):
    """An edge runtime (or its converter) is not installed; the message names the extra."""


class Captured:
    """What a converter or runtime printed while :func:`captured_output` was active."""

    def __init__(self):
        self.text = ""

    def tail(self, lines: int = 5) -> str:
        return " | ".join(line.strip() for line in self.text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Collect everything printed to stdout / stderr — by Python and by C++ code writing to the file
    descriptors directly (MNN, pnnx, the LiteRT converter) — so the CLI's output stays ours; the
    text is kept for error messages."""
    captured = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    python_level = io.StringIO()
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(python_level), contextlib.redirect_stderr(python_level):
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace") + python_level.getvalue()


class EdgeRuntime:
    """One edge runtime. Subclasses set the class attributes and implement :meth:`export` and
    :meth:`runner`."""

    name: str = ""            # the --format / --runtimes choice
    label: str = ""           # how reports name it
    extra: str = ""           # pip install 'repghost[EXTRA]'
    suffix: str = ""          # the usual file suffix of OUT (the first of :attr:`suffixes`)
    run_modules: tuple[str, ...] = ()      # what running an exported file imports
    export_modules: tuple[str, ...] = ()   # what exporting additionally imports (converters)
    distributions: tuple[str, ...] = ()    # the packages whose versions a report names
    int8_tool: str = ""       # the runtime's own int8 quantizer, where one is wired in (see quantize)

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The output name endings that mean this runtime (``repghost export`` infers --format from them)."""
        return EXPORT_SUFFIXES[self.name]

    def require(self, export: bool = False) -> None:
        """Raise :class:`MissingRuntimeError` when the runtime (or, for ``export``, its converter)
        cannot be imported."""
        for module in self.run_modules + (self.export_modules if export else ()):
            # find_spec, not import: importing is slow for some (litert_torch loads JAX and transformers)
            try:
                found = sys.modules.get(module, False) is not None and importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise MissingRuntimeError(f"{self.label} is not installed (no module {module}); install it with: "
                                          f"pip install 'repghost[{self.extra}]'")

    def version(self) -> str:
        """``"pkg X.Y, pkg2 Z"`` for the installed packages of this runtime."""
        found = []
        for dist in self.distributions:
            with contextlib.suppress(metadata.PackageNotFoundError):
                found.append(f"{dist} {metadata.version(dist)}")
        return ", ".join(found) or "not installed"

    def files(self, path: str | os.PathLike) -> list[Path]:
        """Every file an export to ``path`` writes (a graph file may come with a weights file)."""
        return [Path(path)]

    def remove(self, path: str | os.PathLike) -> None:
        for file in self.files(path):
            file.unlink(missing_ok=True)

    def export(self, model: nn.Module, path: str | os.PathLike,
               input_size: Sequence[int] = (1, 3, 224, 224)) -> Path:
        """Write the deploy-form ``model`` for this runtime with a static ``input_size``; return ``path``."""
        raise NotImplementedError

    def runner(self, path: str | os.PathLike, threads: int = 1) -> Runner:
        """Load the exported file(s) for ``threads`` CPU threads; ``f(images) -> logits``."""
        raise NotImplementedError

    def int8_path(self, path: str | os.PathLike) -> Path:
        """Where the int8 model of the export at ``path`` goes: ``NAME.int8SUFFIX`` beside it."""
        path = Path(path)
        return path.with_name(path.name[: -len(self.suffix)] + ".int8" + self.suffix) if path.name.endswith(
            self.suffix) else path.with_name(path.stem + ".int8" + path.suffix)

    def quantize(self, path: str | os.PathLike, out: str | os.PathLike, calib_images: np.ndarray,
                 keep_float: Sequence[str] = ()) -> Path:
        """Write an int8 model of the fp32 export at ``path`` to ``out``, calibrated on ``calib_images``;
        the nodes named in ``keep_float`` stay in float."""
        raise ValueError(f"int8 for {self.label} is not available (only onnx and openvino)")

    def predict(self, path: str | os.PathLike, images: np.ndarray, threads: int = 1) -> np.ndarray:
        """Top-1 class of each image, the file opened by :func:`repghost.deploy.runner.open_model` (as
        eval opens it; the exports have a static batch of 1, so it runs one image at a time)."""
        from ..runner import open_model

        run = open_model(path, runtime=self.name, threads=threads)
        return run(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).argmax(1).numpy()

    @torch.no_grad()
    def check(self, path: str | os.PathLike, model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224),
              rtol: float = RTOL, seed: int = 0) -> Comparison:
        """Run the exported file (opened by :func:`repghost.deploy.runner.open_model`, as eval, bench and
        predict open it) and ``model`` on the same random input; the max error. A file the runtime
        cannot load raises :class:`ExportError`."""
        from ..runner import RunnerError, compare_with_torch, open_model

        try:
            return compare_with_torch(open_model(path, runtime=self.name, threads=1), model, input_size, rtol, seed)
        except ExportError:
            raise
        except RunnerError as err:
            raise ExportError(str(err)) from err
        except Exception as err:  # each runtime raises its own types for an unreadable file
            raise ExportError(f"{self.label} cannot run {path}: {type(err).__name__}: "
                              f"{str(err).strip().splitlines()[-1][:200] if str(err).strip() else ''}") from err


def static_onnx(model: nn.Module, directory: str | os.PathLike, input_size: Sequence[int]) -> Path:
    """An ONNX file of ``model`` with a static input shape, the input of the ONNX-based converters
    (exported as every runtime's file is: :func:`~repghost.deploy.onnx_export.export_for_runtime`)."""
    return export_for_runtime(model, Path(directory) / "model.onnx", input_size, dynamic_batch=False)
