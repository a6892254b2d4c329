"""Progress bars that read well in a log: tqdm on a terminal, plain lines elsewhere.

On a terminal :func:`progress` is a tqdm bar. When its stream is not a terminal (``repghost train >
log.txt``, CI, a pipe) tqdm would write one carriage-return frame per update into the file; instead
a bar that would stay on screen (``leave=True``, or ``line=True``) prints one line when it
finishes — what it counted, the time, the rate and its last postfix — and a transient bar
(``leave=False``, e.g. one epoch's steps, whose caller logs the epoch's result) prints nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any


def is_terminal(file: IO | None = None) -> bool:
    stream = file if file is not None else sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def progress(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, enabled: bool = True,
             leave: bool = True, line: bool | None = None, file: IO | None = None, unit: str = "it", **tqdm_kwargs):
    """A tqdm bar on a terminal; elsewhere a :class:`LineProgress` printing one line at the end when
    ``line`` (default: ``leave``), else nothing. Same use as tqdm: iterate it, or ``update()``,
    ``set_postfix()`` and ``close()``, or use it as a context manager."""
    if enabled and is_terminal(file):
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=leave, file=file, unit=unit, **tqdm_kwargs)
    return LineProgress(iterable, desc=desc, total=total, initial=tqdm_kwargs.get("initial", 0),
                        quiet=not (enabled and (leave if line is None else line)), file=file, unit=unit)


def write(message: str, file: IO | None = None) -> None:
    """Print ``message`` on its own line without tearing a bar on screen."""
    if is_terminal(file if file is not None else sys.stdout):
        from tqdm import tqdm

        tqdm.write(message, file=file)
    else:
        print(message, file=file if file is not None else sys.stdout, flush=True)


class LineProgress:
    """The subset of tqdm's interface the callers use; prints at most one line, at :meth:`close`."""

    def __init__(self, iterable: Iterable | None = None, desc: str = "", total: int | None = None, initial: int = 0,
                 quiet: bool = False, file: IO | None = None, unit: str = "it"):
        self.iterable, self.desc, self.unit, self.quiet, self.file = iterable, desc, unit, quiet, file
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.initial = total, initial, initial
        self.postfix = ""
        self.start = time.perf_counter()
        self.closed = False

    def __iter__(self) -> Iterator:
        # Only a loop that ran to its end reports: one cut short (an error, Ctrl-C) says nothing, so
        # the line that explains why is the last one.
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        except BaseException:
            self.quiet = True
            raise
        finally:
            self.close()

    def __len__(self) -> int:
        return self.total or 0

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.quiet = self.quiet or exc_type is not None
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.start
        done = self.n - self.initial
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        rate = f", {done / elapsed:.3g} {self.unit}/s" if elapsed > 0 and done else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        prefix = f"{self.desc}: " if self.desc else ""
        print(f"{prefix}{count} {self.unit} in {elapsed:.1f} s{rate}{postfix}",
              file=self.file if self.file is not None else sys.stderr, flush=True)
