"""Pretrained weights and real datasets that install from package registries, by short name."""

from tuneforge.assets.datasets import DATASETS, dataset_file
from tuneforge.assets.models import MODELS, portable_model_name, resolve_model

__all__ = ["DATASETS", "MODELS", "dataset_file", "portable_model_name", "resolve_model"]
