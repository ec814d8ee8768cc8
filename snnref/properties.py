"""Moved to ``snnref.testing._properties``; this import path keeps working (the same module)."""

import sys

from .testing import _properties as _moved

sys.modules[__name__] = _moved
