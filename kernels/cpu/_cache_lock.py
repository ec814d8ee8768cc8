"""numba's ``njit``, whose on-disk cache (``cache=True``) every process reads
and writes under one lock.

Why.  numba keeps, per compiled function, an index file (signature -> data
file) and one data file of machine code per signature.  Saving a new signature
reads the index, picks the first free data file number, writes the index back,
then writes the data file, and takes no lock.  Two processes that compile
different signatures of one function at the same time (pytest-xdist workers,
``snnref verify``'s worker processes, a training job's data-loader workers)
can both pick number 1; the index then lists one signature for the other's
machine code, and every later process that loads that signature calls code
compiled for other argument types.  CI hit it once: rnnbuilder.Discontinuous's
backward scan, loaded for a scalar threshold, had been compiled for an array
one ("can't unbox array from PyObject into native value"); with float32 and
float64 arrays swapped it would read memory as the wrong type, silently.  Eight
processes compiling eight signatures of that scan at once into a fresh cache
lost a data file (two signatures saved under one number) in 4 of 20 tries
here, and in none of 20 under the lock.

How.  A function's cache loads (index, then data) under a shared lock and
saves (index, then data) under an exclusive one, both on one lock file in the
cache directory: ``fcntl.flock`` (on Windows ``msvcrt.locking``, exclusive
only), which the operating system drops when a process dies.  Compiling runs
outside the lock, so processes still compile in parallel; a call that finds
its signature compiled in this process touches neither the cache nor the lock.
A process forked while one of its threads held the lock closes its copy of
that lock file at once (``_close_inherited``): a flock belongs to the open
file, which the child shares, and a long-lived child (a data-loader worker)
would hold the lock for its whole life, so that the parent's next save waited
for it.

Freshness.  numba keeps a function's cached machine code while the text of
the function's own file is unchanged.  A tile loop also holds code from other
files: the helpers and intrinsics it inlines (``_stream.put``, the surrogates,
``_parameters``) and the module-level values it reads, which numba freezes
into the machine code.  In a checkout where ``_stream.py`` was edited and
``lif.py`` was not, every process went on loading lif.py's loops compiled
against the old ``put``, and the tests ran code that no file held any more.
So an index here is fresh only while every file of ``stamped_files()`` (this
package's modules and the snnref modules they import) is unchanged too: an
edit to any of them makes every kernel compile again, once.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import importlib.util
import os
import threading
import time
import warnings

import numba
from numba.core.caching import FunctionCache

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK_FILE = "snnref-cache.lock"
# The snnref modules that this package's modules import (test_cpu_cache_lock.py
# reads the imports and holds this list to them).
IMPORTED_MODULES = ("snnref._machine", "snnref.leak", "snnref.registry", "snnref.second_order")


@functools.lru_cache(maxsize=None)
def stamped_files() -> tuple:
    """The files whose text the kernels' machine code may hold (see Freshness)."""
    package = os.path.dirname(os.path.abspath(__file__))
    own = sorted(glob.glob(os.path.join(package, "*.py")))
    return tuple(own + [importlib.util.find_spec(name).origin for name in IMPORTED_MODULES])


def sources_stamp() -> str:
    """A digest of the text of every ``stamped_files()`` file, read again
    whenever one's size or modification time has changed."""
    states = []
    for path in stamped_files():
        status = os.stat(path)
        states.append((path, status.st_mtime_ns, status.st_size))
    return _digest(tuple(states))


@functools.lru_cache(maxsize=None)
def _digest(states: tuple) -> str:
    digest = hashlib.sha256()
    for path, _, _ in states:
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as file:
            digest.update(file.read())
    return digest.hexdigest()


def _open_lock(path):
    """The lock file, opened for writing (made if missing); one that another
    user made (0644 under a umask of 022: a team's shared cache, or one a CI
    job warmed) read-only: a lock needs no write access, and numba writes the
    cache's own files beside it.  Opening it for writing alone made every
    kernel load raise PermissionError in a directory numba's own cache used."""
    try:
        return open(path, "a+b")
    except PermissionError:
        return open(path, "rb")


# The lock files this process has open (held, or being taken), for _close_inherited.
_OPEN = set()
_OPEN_GUARD = threading.Lock()


def _close_inherited():
    """In a child just forked: close the lock files that the parent's threads
    had open, which no thread of the child will ever close (see How)."""
    global _OPEN_GUARD
    # A guard that a parent's thread held at the fork stays held in the child.
    _OPEN_GUARD = threading.Lock()
    for handle in list(_OPEN):
        handle.close()
    _OPEN.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited)


@contextlib.contextmanager
def _tracked(handle):
    with _OPEN_GUARD:
        _OPEN.add(handle)
    try:
        yield handle
    finally:
        with _OPEN_GUARD:
            _OPEN.discard(handle)
        handle.close()


@contextlib.contextmanager
def locked(directory: str, exclusive: bool):
    """Hold the cache lock of ``directory``: shared, or ``exclusive``."""
    os.makedirs(directory, exist_ok=True)
    with _tracked(_open_lock(os.path.join(directory, LOCK_FILE))) as handle:
        if fcntl is not None:
            # Closing the file releases the lock.
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
            return
        handle.seek(0)
        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
                break
            except OSError:
                time.sleep(0.01)
        try:
            yield
        finally:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)


class LockedFunctionCache(FunctionCache):
    """numba's per-function cache, reading and writing under ``locked``, fresh
    while the function's file and ``stamped_files()`` are unchanged."""

    def __init__(self, py_func):
        super().__init__(py_func)
        # numba's stamp (a digest of the function's own file) is what it writes
        # into the index and compares on every load: widened to the other files.
        self._cache_file._source_stamp = (self._cache_file._source_stamp, sources_stamp())

    def load_overload(self, sig, target_context):
        with locked(self.cache_path, exclusive=False):
            return super().load_overload(sig, target_context)

    def save_overload(self, sig, data):
        with locked(self.cache_path, exclusive=True):
            super().save_overload(sig, data)


def njit(*, cache: bool = False, **options):
    """``numba.njit(**options)``; with ``cache=True`` its on-disk cache is a
    ``LockedFunctionCache`` (numba's own, under the lock).  Where numba finds
    no directory it can write a cache to (a read-only install with an
    unwritable home and NUMBA_CACHE_DIR), the function compiles in memory in
    every process, and one warning says so."""

    def compile_lazily(function):
        dispatcher = numba.njit(**options)(function)
        if cache:
            # What numba's cache=True does (Dispatcher.enable_caching), with the locked class.
            try:
                dispatcher._cache = LockedFunctionCache(function)
            except RuntimeError as error:
                _warn_uncached(error)
        return dispatcher

    return compile_lazily


_warned = []


def _warn_uncached(error):
    if _warned:
        return
    _warned.append(error)
    warnings.warn(f"snnref: the CPU kernels compile without an on-disk cache, so every process compiles them "
                  f"again (seconds per kernel): numba found no writable cache directory ({error}); set "
                  f"NUMBA_CACHE_DIR to a writable one", RuntimeWarning, stacklevel=3)
