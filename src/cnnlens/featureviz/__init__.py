"""Feature visualization: what a CNN's filters, neurons and classes respond to.

Built from small pieces (as Lucent): :mod:`objectives` (what to maximize), :mod:`param` (how the
image is parameterized), :mod:`transforms` (random jitter/scale/rotation for robustness) and one
render loop (:func:`render`); plus feature maps, dataset examples and Deep Dream.

These compute and return. :mod:`cnnlens.featureviz.runs` (the ``cnnlens filters|featuremaps|dream``
stages, which take a run and write ``RUN/featureviz/`` files and figures) sits with the pipeline, above
the figures, and is not imported here.
"""

from .baseline import naive_pixel_ascent
from .dream import Dream, deep_dream
from .examples import Examples, dataset_examples
from .featuremaps import FeatureMaps, feature_maps
from .objectives import Objective, channel, class_logit, diversity, layer_l2, neuron
from .param import FourierImage, ImageParam, PixelImage, color_correlation, high_frequency_power
from .render import (
    FilterViz,
    InputSpace,
    Rendered,
    filter_layer,
    render,
    score,
    visualize_classes,
    visualize_filters,
)
from ..nn import leaf_layers, resolve_layer

__all__ = [
    "Dream",
    "Examples",
    "FeatureMaps",
    "FilterViz",
    "FourierImage",
    "ImageParam",
    "InputSpace",
    "Objective",
    "PixelImage",
    "Rendered",
    "channel",
    "class_logit",
    "color_correlation",
    "dataset_examples",
    "deep_dream",
    "diversity",
    "feature_maps",
    "filter_layer",
    "high_frequency_power",
    "layer_l2",
    "leaf_layers",
    "naive_pixel_ascent",
    "neuron",
    "render",
    "resolve_layer",
    "score",
    "visualize_classes",
    "visualize_filters",
]
