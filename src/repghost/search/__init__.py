"""Latency-aware architecture search (TuNAS) over the cost model's space, for SSDLite detectors."""

from .controller import Controller, LinearCost, absolute_reward
from .engine import SearchConfig, SearchError, SearchResult, run_search
from .supernet import ChoiceLayer, SuperNet

__all__ = ["ChoiceLayer", "Controller", "LinearCost", "SearchConfig", "SearchError", "SearchResult", "SuperNet",
           "absolute_reward", "run_search"]
