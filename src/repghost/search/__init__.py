"""Latency-aware architecture search (TuNAS) over the cost model's space, for SSDLite detectors."""

from .config import SearchConfig, SearchError, SearchResult
from .controller import Controller, LinearCost, absolute_reward
from .engine import run_search
from .supernet import ChoiceLayer, SuperNet

__all__ = ["ChoiceLayer", "Controller", "LinearCost", "SearchConfig", "SearchError", "SearchResult", "SuperNet",
           "absolute_reward", "run_search"]
