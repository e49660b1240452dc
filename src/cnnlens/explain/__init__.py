"""Explanation methods behind one contract: ``explain(model, x, method, target=None, layer=None)``."""

from . import cam, captum_bridge, gradient, guided, perturbation, rollout  # noqa: F401  (registers)
from .core import METHODS, Explainer, Explanation, explain, methods, model_guard, register_method, resolve_layer
from .display import normalize_maps
from .batch import explain_confused_pairs, explain_images, select_per_class
from .many import explain_many
from .stream import StreamResult, explain_stream, read_stream

__all__ = ["METHODS", "Explainer", "Explanation", "StreamResult", "explain", "explain_confused_pairs",
           "explain_images", "explain_many", "explain_stream", "methods", "model_guard", "normalize_maps",
           "read_stream", "register_method", "resolve_layer", "select_per_class"]
