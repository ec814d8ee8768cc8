"""``package.module:attribute`` strings from the command line, resolved once for
every command that takes one (``verify --impl``, ``golden check --impl``, ``nir
run --impl``, the pytest plugin)."""

from __future__ import annotations

import importlib
import os
import sys


def load_attribute(spec: str, option: str = "--impl", error=ValueError):
    """The object ``spec`` names; ``error(message)`` naming ``option`` when it
    is malformed, does not import or lacks the attribute.  The working directory
    joins ``sys.path``: importing the user's own module is the point."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise error(f"{option}: expected package.module:callable, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as failure:
        raise error(f"{option}: cannot import {module_name!r} ({type(failure).__name__}: {failure})") from None
    found = getattr(module, attribute, None)
    if found is None:
        raise error(f"{option}: {module_name!r} has no attribute {attribute!r}")
    return found
