"""The one place where an error raised by the library becomes an exit code (the codes: :mod:`.args`).

A command calls the library and lets its errors rise; :func:`repghost.cli.main` prints each as one line
(``repghost <command>: error: <message>``) with the code :func:`exit_code` gives. The library's own error
types mean the same thing wherever they are raised, so one table below names them. The built-in types
(``ValueError``, ``OSError``, ``RuntimeError``) are the exception: a ``ValueError`` from a recipe parser
means the command line is wrong, one from a training loop that the work failed. A command marks such a
phase with :func:`usage_errors` or :func:`work_errors`; outside a marked phase a ``ValueError`` or an
``OSError`` is failed work. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from .args import INTERRUPTED, RUNTIME_ERROR, USAGE_ERROR

#: Library errors that mean "the command line must change" (an unknown name, settings that do not go
#: together, an existing run without --resume). Named as ``module:class`` so that deciding an exit code
#: imports nothing: a class whose module was never imported cannot have been raised.
USAGE = (
    "repghost.models.registry:UnknownModelError",
    "repghost.preprocess:PreprocessError",
    "repghost.train.fit:ScheduleError",
    "repghost.search.config:SearchError",
    "repghost.search.config:EvolutionError",
    "repghost.deploy.graph_runner:RuntimeChoiceError",
    "repghost.checkpoint.contract:WrongTaskError",
    "repghost.detection.graph:NotExportableError",
    "repghost.deploy.predict:PredictInputError",
    "repghost.train.evaluate:ClassMismatchError",
    "builtins:FileExistsError",
)
#: Library errors that mean "the work failed": a file that is not what it claims, unusable data, a check
#: that failed, a runtime that is missing.
WORK = (
    "repghost.checkpoint.safe:CheckpointError",
    "repghost.data.datasets:DataError",
    "repghost.detection.data:DetectionDataError",
    "repghost.deploy.conversion:ConvertError",
    "repghost.deploy.onnx_export:ExportError",
    "repghost.costmodel.fit:CostModelError",
    "repghost.search.finalists:MeasuredBandError",
    "repghost.models.space:SpaceError",
    "repghost.reparam:FoldError",
    "builtins:FloatingPointError",
)
#: Errors whose one line was printed where they happened (a study's training loop says how to resume).
REPORTED = {"repghost.study.ablation:StudyInterrupted": INTERRUPTED}
#: Outside a phase a command marks, these built-in types are failed work.
UNMARKED_WORK = (ValueError, OSError)


class CommandError(Exception):
    """An error with its exit code decided by the phase of the command it was raised in."""

    def __init__(self, error: BaseException, code: int):
        super().__init__(str(error).strip() or type(error).__name__)
        self.code = code


def _loaded(names) -> tuple[type, ...]:
    classes = []
    for name in names:
        module, _, cls = name.partition(":")
        if module in sys.modules:
            classes.append(getattr(sys.modules[module], cls))
    return tuple(classes)


def _has_own_meaning(err: BaseException) -> bool:
    return isinstance(err, _loaded(USAGE + WORK + tuple(REPORTED)))


@contextlib.contextmanager
def _phase(types: tuple[type, ...], code: int) -> Iterator[None]:
    try:
        yield
    except types as err:
        if _has_own_meaning(err):  # a library error keeps its meaning in every phase
            raise
        raise CommandError(err, code) from err


def usage_errors(*types: type) -> contextlib.AbstractContextManager:
    """In this block, built-in errors of ``types`` mean the command line is wrong (exit 2)."""
    return _phase(types, USAGE_ERROR)


def work_errors(*types: type) -> contextlib.AbstractContextManager:
    """In this block, built-in errors of ``types`` mean the work failed (exit 1)."""
    return _phase(types, RUNTIME_ERROR)


def exit_code(err: BaseException) -> int | None:
    """The exit code of ``err``; None for an exception no table knows (a bug: its traceback shows)."""
    if isinstance(err, CommandError):
        return err.code
    for name, code in REPORTED.items():
        if isinstance(err, _loaded([name])):
            return code
    if isinstance(err, _loaded(USAGE)):
        return USAGE_ERROR
    if isinstance(err, _loaded(WORK) + UNMARKED_WORK):
        return RUNTIME_ERROR
    return None


def is_reported(err: BaseException) -> bool:
    """Whether ``err``'s line was printed where it was raised (then main prints nothing more)."""
    return isinstance(err, _loaded(REPORTED))
