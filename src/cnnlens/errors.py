"""The one exception type for bad input. The bottom layer: imports nothing from cnnlens.

``CnnlensError`` is raised where bad input (an argument, a file, a config value, a model that does
not fit) is detected; its message names what was wrong and the fix. The CLI prints it as
``error: <message>`` and exits 2. It subclasses ``ValueError`` so callers that caught ``ValueError``
keep working; ``CnnlensTypeError`` is the same for an argument of the wrong type (also a
``TypeError``). Any other exception that escapes cnnlens is a bug, not the user's mistake.
"""

from __future__ import annotations


class CnnlensError(ValueError):
    """Bad input: the message says what was wrong and how to fix it."""


class CnnlensTypeError(CnnlensError, TypeError):
    """An argument of the wrong type (a ``CnnlensError`` that is also a ``TypeError``)."""
