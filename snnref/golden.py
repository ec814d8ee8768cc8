"""Moved to ``snnref.testing._golden``; this import path keeps working (the same module)."""

import sys

from .testing import _golden as _moved

sys.modules[__name__] = _moved
