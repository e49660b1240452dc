"""Built-in architectures (registered in ``MODELS``), parameter counting, model helpers."""

from . import compact, mlp, timm_models, torchvision_models, user, vgg, wide  # noqa: F401  (registers)
from .base import MODELS, count_params, create_model
from .summary import ModelSummary, format_table, summarize
from .weights import load_weights, save_weights

__all__ = ["MODELS", "ModelSummary", "count_params", "create_model", "format_table", "load_weights",
           "save_weights", "summarize"]
