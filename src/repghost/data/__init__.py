"""Datasets and loaders: ImageFolder with checks and corrupt-image skipping, the built-in digits
default, timm transforms, and samplers that resume mid-epoch exactly."""

from .datasets import DataError, build_datasets, describe_data, recorded_root
from .loader import SampleDataset, SkipSampler, build_loader, collate_skipping, worker_ignores_stop
from .transforms import build_transform

__all__ = [
    "DataError", "SampleDataset", "SkipSampler", "build_datasets", "build_loader", "build_transform",
    "collate_skipping", "describe_data", "recorded_root", "worker_ignores_stop",
]
