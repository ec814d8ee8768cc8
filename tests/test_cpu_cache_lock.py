"""The CPU kernels' numba cache is read and written under the lock of
kernels/cpu/_cache_lock.py: every compiled function of the package uses it,
every index and data file access of a load holds the lock at least shared and
every one of a save holds it exclusive.  An edit to any file the kernels'
machine code may hold makes the cached code stale."""

import ast
import importlib
import importlib.util
import os
import pkgutil
import time
import warnings

import pytest
from numba.core import caching
from numba.core.registry import CPUDispatcher

from fixtures.modules import load_module
from snnref.kernels import cpu
from snnref.kernels.cpu import _cache_lock, cuba, lif

fcntl = pytest.importorskip("fcntl", reason="the lock is probed with fcntl.flock (POSIX)")


def _compiled_functions():
    for info in pkgutil.iter_modules(cpu.__path__):
        module = importlib.import_module(f"{cpu.__name__}.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", value


def test_every_compiled_function_caches_under_the_lock():
    functions = dict(_compiled_functions())
    assert "snnref.kernels.cpu.discontinuous.backward_map" in functions
    # Compiled per setting: closures, which no module holds.
    functions["snnref.kernels.cpu.lif.tile_backward_scan(ZERO, True, False)"] = lif.tile_backward_scan(
        lif.ZERO, True, False)
    functions["snnref.kernels.cpu.cuba.tile_backward_scan(True, False, False)"] = cuba.tile_backward_scan(
        True, False, False)
    # A kernel without the cache would compile in every new process (seconds
    # each); one with numba's own cache class would take no lock.
    unlocked = sorted(name for name, function in functions.items()
                      if type(function._cache) is not _cache_lock.LockedFunctionCache)
    assert unlocked == []


def _lock_state(directory):
    """'exclusive', 'shared' or 'free': what another open file may take."""
    with open(os.path.join(directory, _cache_lock.LOCK_FILE), "a+b") as probe:
        try:
            fcntl.flock(probe.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "exclusive"
        fcntl.flock(probe.fileno(), fcntl.LOCK_UN)
        try:
            fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "shared"
        return "free"


def test_cache_files_are_read_and_written_under_the_lock(tmp_path, monkeypatch):
    seen = []
    for method in ("_load_index", "_load_data", "_save_index", "_save_data"):
        original = getattr(caching.IndexDataCacheFile, method)

        def recording(self, *args, _method=method, _original=original):
            seen.append((_method, _lock_state(os.path.dirname(self._index_path))))
            return _original(self, *args)

        monkeypatch.setattr(caching.IndexDataCacheFile, method, recording)
    source = tmp_path / "doubling.py"
    source.write_text("from snnref.kernels.cpu._cache_lock import njit\n\n\n"
                      "@njit(cache=True)\ndef double(x):\n    return 2 * x\n")
    # The first module compiles and saves; a second copy of it (a new dispatcher,
    # as in a new process) loads the saved machine code.
    assert load_module("snnref_doubling_first", source).double(3) == 6
    second = load_module("snnref_doubling_second", source).double
    assert second(4) == 8
    assert sum(second.stats.cache_hits.values()) == 1
    methods = {method for method, _ in seen}
    assert methods == {"_load_index", "_load_data", "_save_index", "_save_data"}
    assert [entry for entry in seen if entry[1] == "free"] == []
    assert [entry for entry in seen if entry[0].startswith("_save") and entry[1] != "exclusive"] == []
    assert ("_load_data", "shared") in seen


def test_without_a_writable_cache_directory_a_kernel_compiles_in_memory_with_one_warning(monkeypatch):
    # numba raises this where no locator can write (a read-only install, an unwritable home and
    # NUMBA_CACHE_DIR): the backend must still run, not fail on importing its kernels.
    def no_locator(function):
        raise RuntimeError(f"cannot cache function {function.__name__!r}: no locator available for file 'x.py'")

    monkeypatch.setattr(_cache_lock, "LockedFunctionCache", no_locator)
    monkeypatch.setattr(_cache_lock, "_warned", [])

    def add(a, b):
        return a + b

    with pytest.warns(RuntimeWarning, match="compile without an on-disk cache.*set NUMBA_CACHE_DIR"):
        first = _cache_lock.njit(cache=True)(add)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = _cache_lock.njit(cache=True)(add)
    assert first(2, 3) == 5 and second(1.5, 2.0) == 3.5


def test_an_edit_to_another_stamped_file_makes_the_cached_code_stale(tmp_path, monkeypatch):
    # As _stream.py is to lif.py's loops: a file the function's machine code may
    # hold, which is not the function's own.  Before, the third load below was
    # a cache hit: machine code compiled against a text that no file held.
    helper = tmp_path / "inlined_helper.py"
    helper.write_text("WIDTH = 8\n")
    monkeypatch.setattr(_cache_lock, "stamped_files", lambda: (str(helper),))
    source = tmp_path / "tripling.py"
    source.write_text("from snnref.kernels.cpu._cache_lock import njit\n\n\n"
                      "@njit(cache=True)\ndef triple(x):\n    return 3 * x\n")
    assert load_module("snnref_tripling_first", source).triple(1) == 3
    unchanged = load_module("snnref_tripling_unchanged", source).triple
    assert unchanged(2) == 6 and sum(unchanged.stats.cache_hits.values()) == 1
    helper.write_text("WIDTH = 16\n")
    edited = load_module("snnref_tripling_edited", source).triple
    assert edited(3) == 9
    assert sum(edited.stats.cache_hits.values()) == 0 and sum(edited.stats.cache_misses.values()) == 1
    # Compiled again and saved: the next process loads it.
    again = load_module("snnref_tripling_again", source).triple
    assert again(4) == 12 and sum(again.stats.cache_hits.values()) == 1


def _snnref_imports(path):
    """The snnref modules (dotted names) that the file at ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.split(".")[0] == "snnref")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "snnref":
            # "from snnref import registry" imports a module; "from snnref.leak import quotient" a name.
            package = importlib.util.find_spec(node.module).submodule_search_locations is not None
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if package and importlib.util.find_spec(submodule) else node.module)
    return names


def test_the_stamped_files_are_the_package_and_every_snnref_module_it_imports():
    files = _cache_lock.stamped_files()
    own = [os.path.join(cpu.__path__[0], f"{info.name}.py") for info in pkgutil.iter_modules(cpu.__path__)]
    assert set(own) <= set(files) and os.path.abspath(lif.__file__) in files
    imported = set().union(*(_snnref_imports(path) for path in own + [cpu.__file__]))
    assert imported == set(_cache_lock.IMPORTED_MODULES)
    assert len(files) == len(own) + 1 + len(imported)


@pytest.mark.parametrize("exclusive", [False, True])
def test_a_lock_file_that_another_user_made_read_only_still_locks(tmp_path, monkeypatch, exclusive):
    # Found by an outside user: a shared cache warmed by another user (its lock file 0644) made
    # every kernel load raise PermissionError, where numba's own cache worked.
    lock = tmp_path / _cache_lock.LOCK_FILE
    lock.write_bytes(b"")
    lock.chmod(0o444)
    if os.geteuid() == 0:
        # root may write any file: the refusal another user would meet, planted.
        def refusing(path, mode="r", *args, **kwargs):
            if "a" in mode or "w" in mode or "+" in mode:
                raise PermissionError(13, "Permission denied", str(path))
            return open(path, mode, *args, **kwargs)

        monkeypatch.setattr(_cache_lock, "open", refusing, raising=False)
    with _cache_lock.locked(str(tmp_path), exclusive=exclusive):
        monkeypatch.undo()
        assert _lock_state(str(tmp_path)) == ("exclusive" if exclusive else "shared")
    assert _lock_state(str(tmp_path)) == "free"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_the_lock_is_held_lets_its_copy_go(tmp_path):
    # An outside user's reasoning: a flock belongs to the open file, which a forked child shares,
    # and no thread of the child closes it: a long-lived child (a data-loader worker) forked during
    # a cache load held the lock for its life, and the parent's next save (exclusive) waited for it.
    ready, told = os.pipe()
    with _cache_lock.locked(str(tmp_path), exclusive=False):
        child = os.fork()
        if child == 0:
            # Past os.fork: the fork's own hooks have run here.
            os.write(told, b"1")
            time.sleep(3)
            os._exit(0)
    try:
        os.read(ready, 1)
        assert _lock_state(str(tmp_path)) == "free"
    finally:
        os.waitpid(child, 0)
        os.close(ready)
        os.close(told)
