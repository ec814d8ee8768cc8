"""Writing files so that a reader never sees half of one.

Production code (the CLIs, ``snnref.nir``) and the verification package write
results, goldens, graphs and reports through these functions (a whole folder,
a golden store or an HTML report, through ``replace_directory``).  Beside
them: the checks of an output path before a run, and the format of a NumPy
file a reader is handed.  A rename
within one file system is atomic: the target holds either its old contents or
all of the new ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Optional


# The first bytes of NumPy's two formats (an .npz is a zip archive, empty or not).
_NUMPY_MAGIC = {b"\x93NUMPY": ".npy", b"PK\x03\x04": ".npz", b"PK\x05\x06": ".npz"}


def numpy_format(data: bytes) -> Optional[str]:
    """".npy", ".npz" or None, from a file's first bytes.  ``numpy.load`` reads
    anything else as a pickle, and with pickles refused it reports "object
    arrays" rather than a file of the wrong kind: readers ask this first."""
    return next((kind for magic, kind in _NUMPY_MAGIC.items() if data.startswith(magic)), None)


def usual_mode(directory: bool = False) -> int:
    """The mode a plain ``open`` or ``mkdir`` would give under this process's
    umask.  ``mkstemp`` and ``mkdtemp`` create private (0600, 0700) files and
    folders, which would keep that mode after the rename: a store or report
    shared with a team would be unreadable to it."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def can_create_in(directory) -> bool:
    """Whether a file can be created in ``directory``, tried with a probe file removed at once:
    ``os.access`` says yes to root everywhere, also where the file system refuses (/sys, a
    read-only mount), and a run would then fail only when it writes, at its end."""
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".snnref-probe.", dir=directory)
    except OSError:
        return False
    os.close(descriptor)
    os.unlink(probe)
    return True


def check_output_file(option, path, inputs=None) -> None:
    """Before a run: ``option``'s file can be written (not a directory, in an
    existing writable directory; through a symbolic link, where it points), and
    is none of the run's ``inputs`` ({what: path}), which it would replace."""
    if not str(path):
        raise ValueError(f"{option}: expected a file name, got ''")
    target = Path(os.path.realpath(path))
    for what, source in (inputs or {}).items():
        # An empty source is that argument's own error, named where it is read.
        if str(source) and target.exists() and Path(source).exists() and os.path.samefile(target, source):
            raise ValueError(f"{option}: {path} is the run's {what} as well; name another file")
    if target.is_dir():
        raise ValueError(f"{option}: {path} is a directory; expected a file name")
    if target.exists() and not target.is_file():
        # /dev/stdout, a pipe, a device: a file is written beside its target and renamed onto it.
        raise ValueError(f"{option}: {path} is not a regular file (the file is replaced whole, atomically); "
                         "name a file")
    if not target.parent.is_dir():
        if target.parent.exists():
            # "does not exist" sent the user looking for a directory that is there, as a file.
            raise ValueError(f"{option}: {target.parent} exists and is not a directory; name a file in a directory")
        raise ValueError(f"{option}: the directory {target.parent} does not exist")
    if not can_create_in(target.parent):
        raise ValueError(f"{option}: the directory {target.parent} is not writable")


@contextlib.contextmanager
def replacing(path) -> Iterator[str]:
    """A temporary path beside ``path`` for the block to write; renamed onto
    ``path`` when the block succeeds, deleted when it raises.  A symbolic link
    is followed: the file it names is replaced, the link stays."""
    target = Path(os.path.realpath(path))
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    os.chmod(temporary, usual_mode())
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def _exchange_call():
    """Linux's renameat2, which swaps two paths in one step with RENAME_EXCHANGE; None elsewhere."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # no such symbol, or no C library to ask
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _exchange_call()
# <fcntl.h> and <linux/fs.h>: paths relative to the working directory; swap the two.
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(first, second) -> bool:
    """Swap two existing paths atomically; False where the system or the file
    system cannot (then nothing has moved)."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def replace_directory(complete: Path, target: Path) -> None:
    """Put the finished directory ``complete`` in place of ``target`` and remove
    the old tree.  An atomic exchange where the system has one: ``target`` holds
    the old tree or the new one at every instant.  Elsewhere two renames, and an
    interruption between them puts the old tree back.  An interruption while the
    old tree is removed leaves it in ``complete``, for the caller's clean-up."""
    complete, target = Path(complete), Path(target)
    if not os.path.lexists(target):
        os.rename(complete, target)
        return
    if exchange(complete, target):
        shutil.rmtree(complete)
        return
    aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    moved = aside / target.name
    try:
        os.rename(target, moved)
        os.rename(complete, target)
    except BaseException:
        if os.path.lexists(moved) and not os.path.lexists(target):
            os.rename(moved, target)
        raise
    finally:
        # Only with a tree in place, old or new: the one aside is never the last copy.
        if os.path.lexists(target):
            shutil.rmtree(aside, ignore_errors=True)


def read_regular_file(path, follow_links=True) -> bytes:
    """The bytes of the file at ``path``; an ``OSError`` (its ``strerror`` says why)
    unless it is a regular file.  A FIFO's open waited for a writer forever and a
    device read without end (a case file's .npy, a --case replay, a store's golden).
    ``follow_links=False``: a link at the last step is refused too (ELOOP)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0))
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket)", str(path))
        return file.read()


def check_regular_file(label, path) -> None:
    """``path`` (links followed) names a regular file, for a reader that opens it itself
    (h5py): a FIFO hung the open.  A missing file is left to the reader's own message."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, device or socket)"
        raise ValueError(f"{label}: {path} is {what}")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (creating its folder), flushed to disk before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as temporary, open(temporary, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def _strict(value):
    """``value`` with every float finite or a string: standard JSON has no inf or
    NaN (Python writes the non-standard ``Infinity``, which other readers reject)."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if hasattr(value, "__float__"):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    return str(value)


def write_json(path, document, indent=1) -> None:
    """``document`` as standard JSON at ``path``, atomically; a non-finite number
    becomes the string "inf", "-inf" or "nan", a NumPy scalar a number."""
    write_atomically(Path(path), (json.dumps(_strict(document), indent=indent, allow_nan=False) + "\n").encode())
