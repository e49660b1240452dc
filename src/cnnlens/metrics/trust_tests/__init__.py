"""The trust tests, one module each; the protocol runs them in the order registered here.

Adding one: a module with a :class:`~cnnlens.metrics.base.TrustTest` subclass, plus one line
below (docs/architecture.md, "Adding a trust test").
"""

from ..base import register_test
from .faithfulness import Faithfulness
from .localization import Localization
from .random_logit import RandomLogit
from .randomization import Randomization

register_test(Faithfulness)
register_test(Randomization)
register_test(RandomLogit)
register_test(Localization)

__all__ = ["Faithfulness", "Localization", "RandomLogit", "Randomization"]
