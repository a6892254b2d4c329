"""``repghost <command>``: parse arguments, call the library, print. No logic of its own.

One module per command group; each ``add_<name>(subparsers)`` registers its parser and sets ``func``.
:data:`COMMANDS` lists them in the order ``--help`` shows.

Ctrl-C (and SIGTERM, the same way) is handled here, once for every command: whatever the command was doing,
it stops with one line on stderr (``repghost <command>: interrupted``, with the command's own resume hint when it
gives one) and exit code 130, after its ``with`` / ``finally`` blocks have removed their scratch
files and unfinished outputs (:mod:`repghost.io`). Commands that stop at a safe point themselves
(``train``, ``search``) print their resume line and return 130. Errors become one line and an exit
code here too, by the one table in :mod:`.errors`.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from .. import __version__
from ..io import ctrl_c_behind
from . import bench, costmodel, deploy, detection, models, predict, search, study, train
from .args import INTERRUPTED, Parser, fail
from .errors import exit_code, is_reported

COMMANDS = [models.add_models, train.add_train, train.add_eval, deploy.add_convert, deploy.add_export,
            predict.add_predict, bench.add_bench, study.add_study, detection.add_det_train, detection.add_det_eval,
            costmodel.add_costmodel, search.add_search, search.add_evolve]


def build_parser() -> Parser:
    parser = Parser(
        prog="repghost",
        description="RepGhostNet toolkit: build → train → reparameterize → export → bench. Exit codes, for "
                    "every command: 0 done, 2 bad arguments (caught before any work), 1 the work failed, "
                    "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"repghost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The commands one level below ``parser`` by name (empty for a command that runs)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands(parser: argparse.ArgumentParser | None = None) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command that runs, nested ones included: ``("costmodel", "sample") -> its parser``."""
    found, todo = {}, [((), parser or build_parser())]
    while todo:
        path, node = todo.pop(0)
        below = subcommands(node)
        if not below and path:
            found[path] = node
        todo += [((*path, name), sub) for name, sub in below.items()]
    return found


def _command_name(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """``repghost costmodel sample`` for ``argv = ["costmodel", "sample", ...]``, as far as argv names one."""
    names, node = ["repghost"], parser
    for token in argv:
        below = subcommands(node)
        if not below:
            break
        if token in below:
            names.append(token)
            node = below[token]
    return " ".join(names)


def _interrupted(parser: argparse.ArgumentParser | None, argv: list[str], err: KeyboardInterrupt) -> int:
    """The one line and the exit code of an interrupted command; a second Ctrl-C while this runs is ignored."""
    from ..io import discard_pending

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        discard_pending()
        hint = str(err).strip()
        parser = parser or build_parser()  # the interrupt came while it was being built
        print(f"{_command_name(parser, argv)}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr,
              flush=True)
    finally:
        if previous is not None:  # None: not set from Python, nothing to put back
            signal.signal(signal.SIGINT, previous)
    return INTERRUPTED


def _terminated(signum, frame):
    raise KeyboardInterrupt  # stop as Ctrl-C does, so the with / finally blocks remove scratch files


@contextlib.contextmanager
def _sigterm_stops_like_ctrl_c():
    """A SIGTERM (``timeout``, a job scheduler, ``kill``) stops a command as Ctrl-C does: by default it
    would end the process without running a ``finally``, leaving scratch files and partial outputs.
    Loops that stop at a safe point install their own handler while they run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    with _sigterm_stops_like_ctrl_c():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = None
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help, --version, or a usage error already printed
            return done.code if isinstance(done.code, int) else 2
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except KeyboardInterrupt as err:
        return _interrupted(parser, argv, err)
    except Exception as err:  # the one place an error becomes an exit code
        interrupt = ctrl_c_behind(err)  # a library's error raised from a Ctrl-C is a Ctrl-C
        if interrupt is not None:
            return _interrupted(parser, argv, interrupt)
        code = exit_code(err)
        if code is None:  # no table knows it: a bug, whose traceback must show
            raise
        if not is_reported(err):
            fail(_command_name(parser, argv).split()[1], err)
        return code


if __name__ == "__main__":
    sys.exit(main())
