"""Model names live here, once: ``register_model`` fills the table, ``create_model`` reads it."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model builder under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


class UnknownModelError(ValueError):
    pass


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. ``create_model("repghostnet_100", num_classes=10)``.

    Common keyword arguments: ``num_classes``, ``in_chans``, ``drop_rate``, ``deploy``,
    ``features_only``, ``out_indices``; RepGhostNet also takes ``reparam`` and ``shortcut``.
    The model remembers ``name`` and ``kwargs`` (``model.model_name``, ``model.model_kwargs``) so
    a checkpoint can rebuild it.
    """
    if name not in _MODELS:
        raise UnknownModelError(f"unknown model {name!r}; available models: {', '.join(list_models())}")
    model = _MODELS[name](**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model
