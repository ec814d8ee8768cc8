"""Imports by name: ``package.module:attribute`` strings from the command line,
resolved once for every command that takes one (``verify --impl``, ``golden
check --impl``, ``nir run --impl``, the pytest plugin), and the subpackages of
a package as its attributes, each imported on first use."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
import traceback


def submodules_on_use(package: str):
    """A module ``__getattr__`` (PEP 562) for ``package``: each public submodule
    as an attribute, imported when first asked for, so that ``import snnref``
    then ``snnref.nn.LIF`` works without ``import snnref.nn``, and importing the
    package alone imports none of them (``snnref.spec`` pulls in no torch).
    Anything else, private names and the dunders tools probe for included, is an
    AttributeError as usual."""

    def __getattr__(name):
        if name.isidentifier() and not name.startswith("_") \
                and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def listing(package: str, *served: str):
    """A module ``__dir__`` (PEP 562) for ``package``: its own names, the public
    submodules that ``submodules_on_use`` serves and the other ``served`` names of
    its ``__getattr__``, so that ``dir()``, tab completion and ``help()`` find
    what the attributes give (``dir(snnref)`` named neither ``simulate`` nor
    ``nn``).  Listing imports nothing."""

    def __dir__():
        module = sys.modules[package]
        submodules = {found.name for found in pkgutil.iter_modules(module.__path__) if not found.name.startswith("_")}
        return sorted(set(vars(module)) | submodules | set(served))

    return __dir__


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
        raise error(f"{option}: cannot import {module_name!r} ({type(failure).__name__}: {failure}"
                    f"{_raised_at(failure)})") from None
    found = getattr(module, attribute, None)
    if found is None:
        raise error(f"{option}: {module_name!r} has no attribute {attribute!r}")
    return found


def _raised_at(failure) -> str:
    """" at FILE:LINE" of the innermost frame outside importlib that ``failure`` passed, where
    the user's module raised while it was imported ("" where importlib alone was involved: a
    module that is not there; a SyntaxError's message already names its place)."""
    if isinstance(failure, SyntaxError):
        return ""
    frames = [frame for frame in traceback.extract_tb(failure.__traceback__)
              if "importlib" not in frame.filename and frame.filename != __file__]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
