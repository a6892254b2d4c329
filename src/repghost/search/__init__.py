"""Latency-aware architecture search (TuNAS) over the cost model's space, for SSDLite detectors, and the
weight-sharing super-network over the RepGhostNet-skeleton space (sliced ops, sandwich training, BN
recalibration, held-out AP as the score).

Names load on first use (:mod:`repghost.lazy`): the command line reads :mod:`.config` without torch.
"""

from ..lazy import lazy_exports

__all__ = lazy_exports(__name__, {
    "config": ("SearchConfig", "SearchError", "SearchResult"),
    "controller": ("Controller", "LinearCost", "absolute_reward"),
    "engine": ("run_search",),
    "evolution": ("EvolutionConfig", "run_evolution"),
    "supernet": ("ChoiceLayer", "SuperNet"),
    "calibrate": ("recalibrate_bn",),
    "proxy": ("score_architecture", "score_noise"),
    "superspace": ("SuperSSDLite",),
    "supertrain": ("SupernetConfig", "load_supernet", "train_supernet"),
})
