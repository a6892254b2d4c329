"""Latency-aware architecture search (TuNAS) over the cost model's space, for SSDLite detectors.

Names load on first use (:mod:`repghost.lazy`): the command line reads :mod:`.config` without torch.
"""

from ..lazy import lazy_exports

__all__ = lazy_exports(__name__, {
    "config": ("SearchConfig", "SearchError", "SearchResult"),
    "controller": ("Controller", "LinearCost", "absolute_reward"),
    "engine": ("run_search",),
    "supernet": ("ChoiceLayer", "SuperNet"),
})
