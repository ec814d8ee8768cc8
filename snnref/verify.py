"""Moved to ``snnref.testing._verify``; this import path keeps working (the same module)."""

import sys

from .testing import _verify as _moved

sys.modules[__name__] = _moved
