"""The set-up checks that run before any training (the cost model is usable, the target is in its
range) and the super-network's learning rate per step."""

from __future__ import annotations

import os

from ..checkpoint import SEARCH_FORMAT
from ..costmodel.fit import CostModel, CostModelError
from ..models.searched import SearchSpace
from ..run import warmup_cosine
from .config import SearchConfig, SearchError
from .controller import LinearCost

CHECKPOINT_FORMAT = SEARCH_FORMAT  # the file contract lives in repghost.checkpoint


def load_cost(path: str | os.PathLike, space: SearchSpace, allow_unfit: bool = False) -> tuple[CostModel, LinearCost]:
    """The cost model at ``path`` and its table; one marked unfit (see :meth:`CostModel.unfit_reason`)
    is refused unless ``allow_unfit``."""
    try:
        model = CostModel.load(path, space)
    except CostModelError as err:
        raise SearchError(f"{err}; fit a cost model on this search space with `repghost costmodel sample` "
                          "and `repghost costmodel fit`") from None
    reason = model.unfit_reason()
    if reason and not allow_unfit:
        raise SearchError(f"cost model {path} is unfit: {reason}; or pass --allow-unfit to search with it anyway")
    return model, LinearCost(model, space)


def check_target(target_ms: float, cost: LinearCost) -> None:
    """The target must lie between the cheapest and the dearest architecture the model predicts."""
    low, high = cost.cheapest[0], cost.dearest[0]
    if not low <= target_ms <= high:
        side = "below the cheapest" if target_ms < low else "above the dearest"
        raise SearchError(f"--target-ms {target_ms:g} is {side} architecture of the space ({low:.3f} … "
                          f"{high:.3f} ms predicted by the cost model); choose a target in that range")


def learning_rate(config: SearchConfig, step: int) -> float:
    """Linear warm-up over ``lr_warmup_steps``, then cosine to 0 at the last step."""
    return warmup_cosine(config.lr, step, config.lr_warmup_steps, config.steps)
