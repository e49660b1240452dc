"""Built-in architectures (registered in ``MODELS``), parameter counting, model helpers."""

from . import compact, mlp, torchvision_models, user, vgg, wide  # noqa: F401  (registers)
from .base import MODELS, count_params, create_model

__all__ = ["MODELS", "count_params", "create_model"]
