"""Datasets: every loader registers itself in ``DATASETS``; ``load_dataset(spec)`` picks one."""

from . import digits, fer2013, food11, folder, planted  # noqa: F401  (registers; detectors run in this order)
from .base import DATASETS, SPLITS, ImageDataset, channel_stats, denormalize, load_dataset, normalize, stratified_split

__all__ = ["DATASETS", "SPLITS", "ImageDataset", "channel_stats", "denormalize", "load_dataset",
           "normalize", "stratified_split"]
