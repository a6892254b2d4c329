"""Packages whose public names are imported on first use (PEP 562).

A package ``__init__`` that imported every submodule would make ``import repghost.train.config`` (a
dataclass the command line builds its parser from) import torch as well, and every ``repghost
--help`` would wait for it. :func:`lazy_exports` gives a package the same public names, each
imported from its submodule when first used, so light submodules stay light and ``from
repghost.train import train`` works as before.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Mapping, Sequence


class _LazyPackage(types.ModuleType):
    def __getattr__(self, name: str):
        source = self.__dict__["_lazy_sources"].get(name)
        if source is not None:
            value = getattr(importlib.import_module(f"{self.__name__}.{source}"), name)
        elif not name.startswith("__") and importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            value = importlib.import_module(f"{self.__name__}.{name}")  # a submodule, as an eager package had it
        else:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        # Importing a submodule binds it on its package. Where the package exports a name of the same
        # name from it (``repghost.profile``, the function, from ``repghost/profile.py``), the export
        # stays the package's attribute, as when the package imported it eagerly.
        if (isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}"
                and self.__dict__.get("_lazy_sources", {}).get(name) == name):
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__dict__["_lazy_sources"]))


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]) -> list[str]:
    """Make the package named ``package`` export ``exports`` (submodule → the names it gives) on first
    use; returns the names, for ``__all__``."""
    module = sys.modules[package]
    module._lazy_sources = {name: source for source, names in exports.items() for name in names}
    module.__class__ = _LazyPackage
    return sorted(module._lazy_sources)
