"""Model names live here, once: ``register_model`` fills the table, ``create_model`` reads it. Names that
are not in the table go to the resolvers registered with :func:`register_resolver` (searched
architectures' files and inline names, :mod:`repghost.models.searched`), so the registry knows nothing
above it."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Callable

from torch import nn

from ..names import is_architecture_file  # noqa: F401  (re-exported)

_MODELS: dict[str, Callable[..., nn.Module]] = {}
#: ``resolver(spec) -> (name, builder) | None``: ``None`` when ``spec`` is not of its kind; a
#: ``ValueError`` saying what is wrong when it is, but is unusable (a file of another search space).
Resolver = Callable[[str], "tuple[str, Callable[..., nn.Module]] | None"]
_RESOLVERS: list[Resolver] = []


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model builder under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def register_resolver(resolver: Resolver) -> Resolver:
    """Let :func:`create_model` take the names ``resolver`` knows (tried in order of registration)."""
    if resolver not in _RESOLVERS:
        _RESOLVERS.append(resolver)
    return resolver


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


class UnknownModelError(ValueError):
    pass


def resolve_model(spec: str | os.PathLike) -> tuple[str, Callable[..., nn.Module]]:
    """The model name and builder of ``spec``: a registered name, or a name a resolver knows (a searched
    architecture given as its JSON file or its inline name, :mod:`repghost.models.searched`). Either way
    a searched architecture's name is the inline one, so nothing that records it depends on the file."""
    spec = os.fspath(spec)
    if spec in _MODELS:
        return spec, _MODELS[spec]
    for resolver in _RESOLVERS:
        try:
            found = resolver(spec)
        except ValueError as err:
            raise UnknownModelError(str(err)) from None
        if found is not None:
            return found
    raise UnknownModelError(f"unknown model {spec!r}; available models: {', '.join(list_models())}")


def resolve_model_name(spec: str | os.PathLike) -> str:
    """The name :func:`create_model` gives the model of ``spec`` (checked: :class:`UnknownModelError` if none)."""
    return resolve_model(spec)[0]


def short_model_name(name: str) -> str:
    """``name`` short enough for a directory name: an inline name (``kind:details``, a searched
    architecture's) becomes its kind and a hash of the details; a registered name stays as it is."""
    kind, sep, details = name.partition(":")
    return f"{kind}-{hashlib.sha256(details.encode()).hexdigest()[:8]}" if sep else name


def create_model(name: str | os.PathLike, **kwargs) -> nn.Module:
    """Build a registered model, e.g. ``create_model("repghostnet_100", num_classes=10)``, or a searched
    architecture from its file or inline name (:func:`resolve_model`).

    Common keyword arguments: ``num_classes``, ``in_chans``, ``drop_rate``, ``deploy``,
    ``global_pool``, ``features_only``, ``out_indices`` and, as timm, ``feature_cls`` (one of
    :data:`FEATURE_CLASSES`); RepGhostNet also takes ``reparam`` and ``shortcut``.
    The model remembers ``name`` and ``kwargs`` (``model.model_name``, ``model.model_kwargs``) so
    a checkpoint can rebuild it. ``pretrained=False`` is accepted (timm's habit); nothing is ever
    downloaded, so ``pretrained=True`` raises :class:`ValueError` saying how to load a file instead.
    """
    if kwargs.pop("pretrained", False):
        raise ValueError(
            f"create_model({os.fspath(name)!r}, pretrained=...): repghost downloads no weights; load a file you have: "
            "repghost.load_model(path) for a file repghost wrote, or model = create_model(name) then "
            "repghost.load_checkpoint(model, path) for official RepGhost / timm / raw state-dict weights")
    name, builder = resolve_model(name)
    builder_kwargs = dict(kwargs)
    feature_cls = builder_kwargs.pop("feature_cls", "list")
    if feature_cls == "list":
        model = builder(**builder_kwargs)
    else:
        model = _timm_features(builder, feature_cls, builder_kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


#: ``feature_cls`` values for ``features_only``: ``"list"`` is our headless model (same state-dict
#: keys as the classifier); ``"getter"`` and ``"fx"`` are timm's wrappers (``FeatureGetterNet``
#: over ``forward_intermediates``, ``FeatureGraphNet`` over an FX graph), as timm builds them.
FEATURE_CLASSES = ("list", "getter", "fx")


def _timm_features(builder: Callable[..., nn.Module], feature_cls: str, kwargs: dict) -> nn.Module:
    if feature_cls not in FEATURE_CLASSES:
        raise ValueError(f"feature_cls must be one of {FEATURE_CLASSES}, got {feature_cls!r}")
    if not kwargs.pop("features_only", False):
        raise ValueError(f"feature_cls={feature_cls!r} needs features_only=True")
    from timm.models._features import FeatureGetterNet
    from timm.models._features_fx import FeatureGraphNet

    out_indices = kwargs.pop("out_indices", None)
    model = builder(**kwargs)
    if out_indices is None:
        out_indices = tuple(range(len(model.feature_info)))
    wrapper = FeatureGetterNet if feature_cls == "getter" else FeatureGraphNet
    return wrapper(model, out_indices=tuple(out_indices))
