"""Training and evaluation: recipes, the loop (EMA, AMP, DDP), exact resume, evaluation."""

from .config import TrainConfig, read_recipe, recipe_names, resolve_config
from .engine import Trainer, TrainResult, train
from .evaluate import evaluate, evaluate_checkpoint, open_for_eval
from .state import load_training_checkpoint

__all__ = [
    "TrainConfig", "TrainResult", "Trainer", "evaluate", "evaluate_checkpoint", "open_for_eval",
    "load_training_checkpoint", "read_recipe", "recipe_names", "resolve_config", "train",
]
