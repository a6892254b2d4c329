"""repghost — RepGhostNet models, re-parameterization, training, deployment and benchmarks."""

from .checkpoint import CheckpointError, load_checkpoint, load_model, load_state_dict, save_checkpoint
from .models import UnknownModelError, create_model, list_models, register_model
from .profile import Profile, profile
from .reparam import check_equivalence, is_deploy, reparameterize

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "Profile", "UnknownModelError", "check_equivalence", "create_model", "is_deploy",
    "list_models", "load_checkpoint", "load_model", "load_state_dict", "profile", "register_model",
    "reparameterize", "save_checkpoint",
]
