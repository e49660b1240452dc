"""Trust scores for explanations: faithfulness, randomization checks, localization, controls.

Importing this package registers the controls ``control_random`` and ``control_edge`` in
``METHODS`` and the protocol's tests in ``TRUST_METRICS``.
"""

from . import controls  # noqa: F401  (registers the controls as methods)
from .base import TRUST_METRICS, Score, TrustTest, beats, register_test
from .controls import CONTROLS, is_control, sobel_magnitude
from .faithfulness import auc, deletion_insertion, make_substrate, perturbation_curves
from .localization import pointing_game, relevance_mass
from .protocol import (
    FAST,
    TrustPlan,
    TrustReport,
    aggregate_trust,
    explain_maps,
    image_seed,
    is_stochastic,
    plan_trust,
    run_trust,
    score_images,
    trust_dataset,
)
from .randomization import (
    fully_randomized,
    layer_groups,
    map_similarity,
    other_classes,
    parameter_layers,
    randomization_curve,
    reinitialize,
    spearman,
    ssim,
)

__all__ = [
    "CONTROLS",
    "FAST",
    "TRUST_METRICS",
    "Score",
    "TrustPlan",
    "TrustReport",
    "TrustTest",
    "aggregate_trust",
    "auc",
    "beats",
    "deletion_insertion",
    "explain_maps",
    "fully_randomized",
    "image_seed",
    "is_control",
    "is_stochastic",
    "layer_groups",
    "make_substrate",
    "map_similarity",
    "other_classes",
    "parameter_layers",
    "perturbation_curves",
    "plan_trust",
    "pointing_game",
    "randomization_curve",
    "register_test",
    "reinitialize",
    "relevance_mass",
    "run_trust",
    "score_images",
    "sobel_magnitude",
    "spearman",
    "ssim",
    "trust_dataset",
]
