"""repghost — RepGhostNet models, re-parameterization, training, deployment and benchmarks.

The public names below load on first use, so ``import repghost`` (and the command line's
``--help``) does not wait for torch.
"""

from .lazy import lazy_exports

__version__ = "0.1.0"

__all__ = lazy_exports(__name__, {
    "checkpoint": ("CheckpointError", "load_checkpoint", "load_model", "load_state_dict", "save_checkpoint"),
    "deploy.predict": ("predict",),
    "deploy.runner": ("ModelRunner", "open_model"),
    "models": ("UnknownModelError", "create_model", "list_models", "register_model"),
    "profile": ("Profile", "profile"),
    "reparam": ("check_equivalence", "is_deploy", "reparameterize"),
})
