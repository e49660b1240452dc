"""``python -m cnnlens.cli``: the same as ``cnnlens``."""

import sys

from . import main

sys.exit(main())
