"""Explanation methods behind one contract: ``explain(model, x, method, target=None, layer=None)``."""

from . import cam, gradient, perturbation  # noqa: F401  (registers)
from .core import METHODS, Explainer, Explanation, explain, methods, model_guard, register_method, resolve_layer
from .display import normalize_maps

__all__ = ["METHODS", "Explainer", "Explanation", "explain", "methods", "model_guard", "normalize_maps",
           "register_method", "resolve_layer"]
