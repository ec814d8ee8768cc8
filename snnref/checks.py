"""Moved to ``snnref.testing._checks``; this import path keeps working (the same module)."""

import sys

from .testing import _checks as _moved

sys.modules[__name__] = _moved
