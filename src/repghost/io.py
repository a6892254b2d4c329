"""Files that are whole or absent, and scratch space that goes away: a crash or Ctrl-C never leaves
half a file where a good one is expected, nor temporary files behind.

- Every writer in the package (checkpoints, exports, metrics, reports, datasets) goes through
  :func:`atomic_path`: it hands out a temporary path in the target's directory and renames it onto
  the target only when the write finished.
- An output made in several steps (an export, then its check, then its metadata) is wrapped in
  :func:`discard_on_failure`: a step that does not finish takes the files already written with it.
- Files needed only while the work runs (exports being timed, converter intermediates) live in a
  :func:`scratch_dir`, a ``repghost-*`` directory under the system's temporary directory
  (``$TMPDIR``), removed when its block ends, however it ends.

Work that several processes share (studies run by one process per core on the same directory) claims
each piece with :func:`claim`: a file holding the claiming process's id, taken with ``O_EXCL`` and removed
when the block ends; a claim whose process is gone is taken over.

A block interrupted inside its own cleanup (Ctrl-C during the removal) leaves its path in a
registry; :func:`discard_pending`, which the CLI calls on its way out of an interrupted command,
removes what is left. An error some library raised from a Ctrl-C is recognised as one by
:func:`ctrl_c_behind`, so it too stops as an interrupt rather than as a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Names of the scratch directories under the system's temporary directory.
SCRATCH_PREFIX = "repghost-"

# Scratch directories and staged files that exist now and are not outputs: what an interrupted
# cleanup may have left.
_pending: set[Path] = set()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    _pending.discard(path)


def discard_pending() -> list[Path]:
    """Remove every scratch directory and staged file whose block did not finish its cleanup (it
    was interrupted while cleaning up); returns what was removed."""
    left = sorted(_pending)
    for path in left:
        _remove(path)
    return left


def ctrl_c_behind(err: BaseException | None) -> KeyboardInterrupt | None:
    """The Ctrl-C an error was raised from (its ``__cause__`` / ``__context__`` chain), if any. Some
    libraries catch a Ctrl-C and raise their own error from it: torch's ONNX exporter an
    ``AssertionError``, onnxruntime's import (when the Ctrl-C lands in its initialisation) an
    ``ImportError``. Such an error is still a Ctrl-C to the user."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def scratch_dir(purpose: str) -> Iterator[Path]:
    """A new private directory ``$TMPDIR/repghost-<purpose>-XXXX`` for the block's temporary files;
    removed with everything in it when the block ends: on success, on error and on Ctrl-C."""
    path = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{purpose}-"))
    _pending.add(path)
    try:
        yield path
    finally:
        _remove(path)


def _identity(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


@contextmanager
def discard_on_failure(paths: Iterable[str | os.PathLike]) -> Iterator[None]:
    """For an output written in several steps: when the block does not finish (an error, a failed
    check, Ctrl-C), every one of ``paths`` that the block created or replaced is removed, so no
    unchecked or half-made output stays behind; files it did not touch are kept."""
    paths = [Path(p) for p in paths]
    before = {p: _identity(p) for p in paths}
    try:
        yield
    except BaseException:
        for path in paths:
            if _identity(path) != before[path]:
                path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds,
    remove it otherwise. The result gets ordinary file permissions (``mkstemp`` makes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    _pending.add(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        _remove(tmp)


@contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """:func:`atomic_path` for an output made of several files (a graph and its weights): all are
    renamed into place when the block succeeds, none is left behind otherwise."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(p)) for p in paths]


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically (and fsync'd: a checkpoint must survive a power cut)."""
    import torch  # here, not at the top: the light modules that write JSON import this module too

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent))


def atomic_savefig(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """``fig.savefig`` atomically, in the format the suffix names (the staged name ends in .tmp)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **savefig_kwargs)
    return path


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append ``record`` as one JSON line: one ``write`` with ``O_APPEND``, then fsync, so a record is on
    disk whole or not at all (a crash mid-write leaves a torn last line, which :func:`read_jsonl` drops)."""
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if written != len(data):  # a full disk: the line is torn; the next reader drops it
        raise OSError(f"{path}: wrote {written} of {len(data)} bytes of a record (disk full?)")


@dataclass(frozen=True)
class TornLine:
    """A last line an interrupted :func:`append_jsonl` left: its 1-based number and its byte offset."""

    line: int
    offset: int


def scan_jsonl(path: str | os.PathLike) -> tuple[list[tuple[int, object]], TornLine | None]:
    """Every ``(line number, value)`` of the JSON-lines file ``path`` and its torn last line, if any: a last
    line that is not JSON (cut short mid-write, or the zeros a crash can leave). A bad line with lines after
    it cannot come from an interrupted append: ``ValueError`` naming it (the file is corrupt)."""
    values, torn, offset = [], None, 0
    for number, raw in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        if torn is not None:
            raise ValueError(f"{path}:{torn.line}: not a JSON record, with records after it: the file is corrupt "
                             "(only the last line can be torn by an interrupted run); repair or remove that line")
        try:
            values.append((number, json.loads(raw.decode())))
        except (UnicodeDecodeError, json.JSONDecodeError):
            torn = TornLine(number, start)
    return values, torn


def read_jsonl(path: str | os.PathLike) -> list:
    """The records :func:`append_jsonl` wrote to ``path`` (none if it does not exist); a torn last line (a
    run stopped mid-write) is dropped, a bad line anywhere else is a ``ValueError`` naming it."""
    if not Path(path).exists():
        return []
    return [value for _, value in scan_jsonl(path)[0]]


def repair_jsonl(path: str | os.PathLike) -> TornLine | None:
    """Make ``path`` ready for :func:`append_jsonl`: drop a torn last line (returned, for the caller to say
    so) and end the file with a newline, so the next record starts a line of its own. Complete records are
    never touched."""
    path = Path(path)
    if not path.exists():
        return None
    _, torn = scan_jsonl(path)
    with open(path, "r+b") as f:
        if torn is not None:
            f.truncate(torn.offset)
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())
    return torn


def read_format_json(path: str | os.PathLike, fmt: str, error: type[Exception], what: str) -> dict:
    """The JSON object in ``path`` whose ``format`` field is ``fmt`` (the files repghost writes carry one);
    ``error`` with a one-line message when the file cannot be read or is another file (``what`` names the
    kind expected, e.g. "repghost cost model")."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: not a readable {what} ({err})") from err
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path}: not a {what} (format {fmt!r})")
    return data


#: A claim file without a process id is its creator's for this long (it writes the id right after creating it).
CLAIM_GRACE_SECONDS = 10.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextmanager
def claim(path: str | os.PathLike) -> Iterator[bool]:
    """``True`` inside the block when this process claimed ``path`` (created with its process id, removed
    when the block ends, however it ends); ``False`` when a live process holds it. A claim left by a process
    that no longer runs (killed) is taken over."""
    path = Path(path)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                holder = int(path.read_text().strip() or 0)
                fresh = time.time() - path.stat().st_mtime < CLAIM_GRACE_SECONDS
            except (FileNotFoundError, ValueError):  # released meanwhile: try again
                holder, fresh = 0, False
            # No id yet in a fresh file: its creator is between creating and writing it.
            if (holder and holder != os.getpid() and _alive(holder)) or (not holder and fresh):
                yield False
                return
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        try:
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
            yield True
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return
    yield False  # another process took it between our look and our retry

