"""Moved to ``snnref.testing._fd``; this import path keeps working (the same module)."""

import sys

from .testing import _fd as _moved

sys.modules[__name__] = _moved
