"""Training and evaluation: recipes, the loop (EMA, AMP, DDP), exact resume, evaluation.

Names load on first use (:mod:`repghost.lazy`): the command line reads :mod:`.config` without torch.
"""

from ..lazy import lazy_exports

__all__ = lazy_exports(__name__, {
    "config": ("TrainConfig", "read_recipe", "recipe_names", "resolve_config"),
    "engine": ("Trainer", "TrainResult", "train"),
    "evaluate": ("ClassMismatchError", "check_classes", "evaluate", "evaluate_checkpoint", "open_for_eval"),
    "state": ("load_training_checkpoint",),
})
