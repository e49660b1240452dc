"""Trust scores for explanations: faithfulness, randomization checks, localization, controls.

Importing this package registers the controls ``control_random`` and ``control_edge`` in
``METHODS`` and the protocol's tests (:mod:`.trust_tests`) in ``TRUST_METRICS``.
"""

from . import controls  # noqa: F401  (registers the controls as methods)
from . import trust_tests  # noqa: F401  (registers the trust tests)
from .base import (
    TRUST_METRICS,
    ChanceCheck,
    Column,
    Evidence,
    Measured,
    MethodBatch,
    Score,
    TrustTest,
    beats,
    register_test,
    unregister_test,
)
from .controls import CONTROLS, is_control, sobel_magnitude
from .faithfulness import auc, deletion_insertion, make_substrate, perturbation_curves
from .localization import pointing_game, relevance_mass
from .maps import explain_maps, image_seed, is_stochastic
from .protocol import (
    BatchScores,
    MethodScores,
    TrustPlan,
    aggregate_trust,
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
from .results import TrustReport
from .trust_config import FAST, TrustConfig

__all__ = [
    "CONTROLS",
    "FAST",
    "TRUST_METRICS",
    "BatchScores",
    "ChanceCheck",
    "Column",
    "Evidence",
    "Measured",
    "MethodBatch",
    "MethodScores",
    "Score",
    "TrustConfig",
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
    "unregister_test",
]
