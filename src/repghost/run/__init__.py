"""What every long run shares (training, detection training, architecture search): distributed
set-up and reductions, the stop flag and signal handling, resumable state (RNG, reading a run's
checkpoint, the check that a resume keeps its settings) and the learning-rate schedules.

Nothing here imports from ``train``, ``detection`` or ``search``: they import it.
"""

from .distributed import (
    DistInfo,
    Runtime,
    all_reduce_sum,
    any_rank,
    average_gradients,
    barrier,
    cleanup,
    gather_lists,
    init_distributed,
    init_runtime,
    world_size_from_env,
)
from .schedule import step_decay, warmup_cosine, warmup_factor
from .signals import StopFlag
from .state import capture_rng, check_resumable, read_run_state, restore_rng, settings_diff

__all__ = [
    "DistInfo", "Runtime", "StopFlag", "all_reduce_sum", "any_rank", "average_gradients", "barrier", "capture_rng",
    "check_resumable", "cleanup", "gather_lists", "init_distributed", "init_runtime", "read_run_state",
    "restore_rng", "settings_diff", "step_decay", "warmup_cosine", "warmup_factor", "world_size_from_env",
]
