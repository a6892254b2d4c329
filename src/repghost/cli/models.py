"""`repghost models`."""

from __future__ import annotations

from .args import COUNT, USAGE_ERROR, fail


def _cmd_models(args) -> int:
    from .. import create_model, list_models, profile, reparameterize
    from ..models import UnknownModelError, is_architecture_file, resolve_model_name, short_model_name

    names = list_models(args.pattern)
    if not names and (":" in args.pattern or is_architecture_file(args.pattern)):  # a searched architecture
        try:
            resolve_model_name(args.pattern)
        except UnknownModelError as err:
            return fail("models", err, USAGE_ERROR)
        names = [args.pattern]
    if not names:
        return fail("models", f"no model matches {args.pattern!r}; available: {', '.join(list_models())}",
                    USAGE_ERROR)
    if args.names_only:
        print("\n".join(names))
        return 0
    size = (1, 3, args.img_size, args.img_size)
    print(f"{'model':<20} {'params (M)':>10} {'MACs (M)':>9} {'deploy params (M)':>18} {'deploy MACs (M)':>16}")
    for name in names:
        model = create_model(name).eval()
        train, deploy = profile(model, size), profile(reparameterize(model), size)
        print(f"{short_model_name(name):<20} {train.params / 1e6:>10.3f} {train.macs / 1e6:>9.1f} "
              f"{deploy.params / 1e6:>18.3f} {deploy.macs / 1e6:>16.1f}")
    return 0


def add_models(sub) -> None:
    p = sub.add_parser("models", help="list the registered models with params and MACs",
                       description="List registered models. Params count every learnable parameter; "
                                   "MACs count conv and linear layers (the paper's convention), for the "
                                   "train form and the re-parameterized deploy form.")
    p.add_argument("pattern", nargs="?", default="*",
                   help="shell-style filter, e.g. 'repghostnet_*'; or a searched architecture's file or inline name")
    p.add_argument("--img-size", type=COUNT, default=224, help="input resolution for MACs (default 224)")
    p.add_argument("--names-only", action="store_true", help="print names only, no profiling")
    p.set_defaults(func=_cmd_models)

