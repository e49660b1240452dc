"""The trust tests, one module each. Importing a module registers its test (``@register_test``);
the protocol runs them in the order of the imports below.

Adding one: a module with a :class:`~cnnlens.metrics.base.TrustTest` subclass decorated with
``@register_test``, plus its import line below (docs/architecture.md, "Adding a trust test").
"""

from . import faithfulness  # noqa: F401
from . import randomization  # noqa: F401
from . import random_logit  # noqa: F401
from . import localization  # noqa: F401
