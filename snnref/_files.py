"""Writing files so that a reader never sees half of one.

Production code (the CLIs, ``snnref.nir``) and the verification package write
results, goldens, graphs and reports through these two functions.  Beside
them: the checks of an output path before a run, and the format of a NumPy
file a reader is handed.  A rename
within one file system is atomic: the target holds either its old contents or
all of the new ones.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
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


def check_output_file(option, path) -> None:
    """Before a run: ``option``'s file can be written (not a directory, in an
    existing writable directory; through a symbolic link, where it points)."""
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise ValueError(f"{option}: {path} is a directory; expected a file name")
    if target.exists() and not target.is_file():
        # /dev/stdout, a pipe, a device: a file is written beside its target and renamed onto it.
        raise ValueError(f"{option}: {path} is not a regular file (the file is replaced whole, atomically); "
                         "name a file")
    if not target.parent.is_dir():
        raise ValueError(f"{option}: the directory {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
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
