"""Moved to ``snnref.testing._equivalence``; this import path keeps working (the same module)."""

import sys

from .testing import _equivalence as _moved

sys.modules[__name__] = _moved
