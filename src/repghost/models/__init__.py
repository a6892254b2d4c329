"""Model families and the registry. Importing this package registers every model."""

from . import ghostnet, mobiledet, repghostnet, repghostnet_space, resnet, searched  # noqa: F401  (registration)
from .family import GhostFamilyFeatures, GhostFamilyNet
from .registry import (
    UnknownModelError,
    create_model,
    is_architecture_file,
    list_models,
    register_model,
    register_resolver,
    resolve_model_name,
    short_model_name,
)

__all__ = ["GhostFamilyFeatures", "GhostFamilyNet", "UnknownModelError", "create_model", "is_architecture_file",
           "list_models", "register_model", "register_resolver", "resolve_model_name", "short_model_name"]
