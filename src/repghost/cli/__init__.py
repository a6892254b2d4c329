"""``repghost <command>``: parse arguments, call the library, print. No logic of its own.

One module per command group; each ``add_<name>(subparsers)`` registers its parser and sets ``func``.
:data:`COMMANDS` lists them in the order ``--help`` shows.
"""

from __future__ import annotations

import sys

from .. import __version__
from . import bench, costmodel, deploy, detection, models, search, study, train
from .args import Parser

COMMANDS = [models.add_models, train.add_train, train.add_eval, deploy.add_convert, deploy.add_export,
            bench.add_bench, study.add_study, detection.add_det_train, detection.add_det_eval,
            costmodel.add_costmodel, search.add_search]


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already printed
        return done.code if isinstance(done.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
