"""The CPU scans' threads (kernels/cpu/_launch.run_tiles and _openmp): a
parallel region of torch's own OpenMP team where torch runs on one, with the
calling thread among its members, else a pool of the scans' own.  On either:
every tile run exactly once, also when a scan is launched from inside a
launch; an error in any member raised in the caller; and a forked child,
which has none of the parent's threads, running its tiles on threads of its
own.  That results are the same bits on one thread or two is
tests/test_cpu.py's."""

import os
import threading
import time

import numpy as np
import pytest
import torch

from snnref.kernels import cpu
from snnref.kernels.cpu import _launch, _openmp

pytestmark = pytest.mark.skipif(_launch.machine_threads() < 2, reason="a team needs two cores")

# 256 lanes in tiles of 64 on two threads: four tiles, two per member.
LANES, TILE, TILES = 256, 64, 4


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setattr(_launch, "TILE", TILE)
    # The stand-in kernels take no arrays: launch them on threads all the same.
    monkeypatch.setattr(_launch, "PARALLEL_FROM", 0)
    # A list of this test's own: the count set here goes with it.
    monkeypatch.setattr(_launch, "_THREADS", [None])
    cpu.set_threads(2)


@pytest.fixture(params=["openmp", "pool"])
def launcher(request, two_threads, monkeypatch):
    """Each launcher in turn: torch's OpenMP team, and the pool used where
    there is none."""
    if request.param == "openmp" and not _openmp.AVAILABLE:
        pytest.skip("torch's OpenMP runtime is not available here")
    monkeypatch.setattr(_openmp, "AVAILABLE", request.param == "openmp")
    return request.param


class Recorder:
    """A stand-in kernel: records (label, thread, first tile, last tile) per call."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, label, *arrays_and_tiles):
        *_, tile, first, last = arrays_and_tiles
        assert tile == TILE
        with self.lock:
            self.calls.append((label, threading.get_native_id(), first, last))

    def tiles(self, label):
        return sorted(index for name, _, first, last in self.calls if name == label for index in range(first, last))

    def threads(self, label):
        return {thread for name, thread, _, _ in self.calls if name == label}


@pytest.mark.skipif(not torch.backends.openmp.is_available(), reason="this torch does not run on OpenMP")
def test_the_scans_run_on_torchs_openmp_team_with_the_calling_thread_among_them(two_threads):
    assert _openmp.AVAILABLE, "torch runs on OpenMP, but its runtime's GOMP_parallel is not among the global symbols"
    kernel = Recorder()
    _launch.run_tiles(kernel, LANES, "scan")
    assert kernel.tiles("scan") == list(range(TILES))
    # A team's member 0 is the thread that entered the region; a pool of
    # threads of the scans' own leaves the caller waiting.
    assert threading.get_native_id() in kernel.threads("scan")
    assert len(kernel.threads("scan")) == 2


@pytest.mark.skipif(not torch.backends.openmp.is_available(), reason="this torch does not run on OpenMP")
def test_the_teams_threads_keep_their_python_thread_state_between_launches(two_threads):
    """A threading.local lives in the thread state: a value that a member of
    the main thread's team set in one launch is there in the next only if that
    thread's state was kept (a callback on a thread unknown to Python otherwise
    makes a new one per call, most of an empty launch's cost)."""
    assert threading.current_thread() is threading.main_thread(), "only the main thread's team keeps its states"
    assert _openmp.AVAILABLE
    seen = threading.local()
    found = []

    def remember(label, tile, first, last):
        found.append((label, threading.get_native_id(), getattr(seen, "launch", None)))
        seen.launch = label

    _launch.run_tiles(remember, LANES, "first")
    _launch.run_tiles(remember, LANES, "second")
    members = {thread for _, thread, _ in found} - {threading.get_native_id()}
    assert members, "the launches ran in the calling thread only"
    assert all(previous == "first" for label, thread, previous in found if label == "second" and thread in members)

def test_a_scan_smaller_than_PARALLEL_FROM_runs_in_the_calling_thread(launcher, monkeypatch):
    monkeypatch.setattr(_launch, "PARALLEL_FROM", 1000)
    kernel = Recorder()
    # The largest array decides: (T, M) sequences of 999 and 1000 elements.
    _launch.run_tiles(kernel, LANES, "small", np.zeros(4), np.zeros((27, 37)))
    _launch.run_tiles(kernel, LANES, "large", np.zeros(4), np.zeros((25, 40)))
    assert kernel.threads("small") == {threading.get_native_id()}
    assert kernel.tiles("small") == kernel.tiles("large") == list(range(TILES))
    assert kernel.threads("large") - {threading.get_native_id()}, "the large scan ran in the calling thread only"


@pytest.mark.parametrize("torch_threads", [1, 2])
def test_by_default_the_scans_use_as_many_threads_as_torch(two_threads, torch_threads):
    """A process that limits torch's threads (a DataLoader worker, runs sharing
    a machine) limits the scans' too; ``set_threads`` overrides, and None
    goes back to torch's count."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(torch_threads)
        cpu.set_threads(None)
        assert cpu.get_threads() == torch_threads
        kernel = Recorder()
        _launch.run_tiles(kernel, LANES, "default")
        assert len(kernel.threads("default")) == torch_threads
        cpu.set_threads(3 - torch_threads)
        _launch.run_tiles(kernel, LANES, "set")
        assert len(kernel.threads("set")) == 3 - torch_threads
        assert kernel.tiles("default") == kernel.tiles("set") == list(range(TILES))
    finally:
        torch.set_num_threads(before)


def test_every_tile_runs_once_also_when_launched_from_inside_a_launch(launcher):
    kernel = Recorder()

    def outer(label, tile, first, last):
        kernel(label, tile, first, last)
        # Inside a region OpenMP runs a nested one as a team of one, and a
        # pool thread runs it itself (the pool's other threads may all be
        # waiting): every tile must still be taken.
        _launch.run_tiles(kernel, LANES, f"inner {first}")

    # From a thread of its own, so that a deadlock fails the test instead of
    # hanging the run.
    launching = threading.Thread(target=_launch.run_tiles, args=(outer, LANES, "outer"), daemon=True)
    launching.start()
    launching.join(timeout=60)
    if launching.is_alive():
        # Later tests get a new pool rather than the deadlocked one.
        _launch._POOL.clear()
        pytest.fail(f"a launch from inside a launch deadlocked ({launcher})")
    assert kernel.tiles("outer") == list(range(TILES))
    starts = [first for name, _, first, _ in kernel.calls if name == "outer"]
    for first in starts:
        assert kernel.tiles(f"inner {first}") == list(range(TILES))


def test_an_error_in_any_member_is_raised_in_the_caller(launcher):
    def failing(label, tile, first, last):
        if first > 0:
            raise ZeroDivisionError(f"planted in tiles {first}..{last}")

    with pytest.raises(ZeroDivisionError, match="planted in tiles 2..4"):
        _launch.run_tiles(failing, LANES, "scan")
    # The threads are usable afterwards.
    kernel = Recorder()
    _launch.run_tiles(kernel, LANES, "after")
    assert kernel.tiles("after") == list(range(TILES))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_runs_its_tiles_on_threads_of_its_own(launcher):
    kernel = Recorder()
    # A torch parallel operation and a scan in the parent: an OpenMP team, or
    # a pool, that the child inherits without its threads.
    torch.ones(1 << 22).sum()
    _launch.run_tiles(kernel, LANES, "parent")
    child = os.fork()
    if child == 0:
        code = 3
        try:
            _launch.run_tiles(kernel, LANES, "child")
            code = 0 if kernel.tiles("child") == list(range(TILES)) and not _openmp.AVAILABLE else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        os.waitpid(child, 0)
        pytest.fail(f"the forked child's scan hung (it waited for the parent's {launcher} threads)")
    assert os.waitstatus_to_exitcode(status) == 0
