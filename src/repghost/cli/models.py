"""`repghost models`."""

from __future__ import annotations

import fnmatch

from .args import COUNT, USAGE_ERROR, fail


def _cmd_models(args) -> int:
    from ..names import MODEL_NAMES, is_searched_architecture

    names = [name for name in MODEL_NAMES if fnmatch.fnmatch(name, args.pattern)]
    searched = not names and is_searched_architecture(args.pattern)
    if searched:  # a searched architecture's file or inline name: checked, then profiled
        from ..models import resolve_model_name

        resolve_model_name(args.pattern)  # an unknown one is a usage error (cli.errors)
        names = [args.pattern]
    if not names:
        return fail("models", f"no model matches {args.pattern!r}; available: {', '.join(MODEL_NAMES)}",
                    USAGE_ERROR)
    if not (args.profile or searched):
        print("\n".join(names))
        return 0
    from ..models import create_model, short_model_name
    from ..profile import profile
    from ..reparam import reparameterize

    size = (1, 3, args.img_size, args.img_size)
    print(f"{'model':<20} {'params (M)':>10} {'MACs (M)':>9} {'deploy params (M)':>18} {'deploy MACs (M)':>16}")
    for name in names:
        model = create_model(name).eval()
        train, deploy = profile(model, size), profile(reparameterize(model), size)
        print(f"{short_model_name(name):<20} {train.params / 1e6:>10.3f} {train.macs / 1e6:>9.1f} "
              f"{deploy.params / 1e6:>18.3f} {deploy.macs / 1e6:>16.1f}")
    return 0


def add_models(sub) -> None:
    p = sub.add_parser("models", help="list the registered models (--profile: with params and MACs)",
                       description="List the registered model names. With --profile, also params (every learnable "
                                   "parameter) and MACs (conv and linear layers, the paper's convention) of the "
                                   "train form and the re-parameterized deploy form; that builds every model, so "
                                   "it takes a while. A searched architecture's file or inline name is always "
                                   "profiled.")
    p.add_argument("pattern", nargs="?", default="*",
                   help="shell-style filter, e.g. 'repghostnet_*'; or a searched architecture's file or inline name")
    p.add_argument("--profile", action="store_true", help="build each model and print its params and MACs")
    p.add_argument("--img-size", type=COUNT, default=224, help="input resolution for MACs with --profile (default 224)")
    p.add_argument("--names-only", action="store_true",
                   help="names only (what the command prints without --profile; kept for scripts that pass it)")
    p.set_defaults(func=_cmd_models)
