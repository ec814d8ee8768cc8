"""Moved to ``snnref.testing.tolerance``; this import path keeps working (the same module)."""

import sys

from .testing import tolerance as _moved

sys.modules[__name__] = _moved
