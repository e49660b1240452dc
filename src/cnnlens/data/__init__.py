"""Datasets: every loader registers itself in ``DATASETS``; ``load_dataset(spec)`` picks one."""

from . import digits, planted  # noqa: F401  (registers)
from .base import DATASETS, SPLITS, ImageDataset, channel_stats, denormalize, load_dataset, normalize, stratified_split

__all__ = ["DATASETS", "SPLITS", "ImageDataset", "channel_stats", "denormalize", "load_dataset",
           "normalize", "stratified_split"]
