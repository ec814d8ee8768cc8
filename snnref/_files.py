"""Writing files so that a reader never sees half of one.

Production code (the CLIs, ``snnref.nir``) and the verification package write
results, goldens, graphs and reports through these two functions.  A rename
within one file system is atomic: the target holds either its old contents or
all of the new ones.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def usual_mode(directory: bool = False) -> int:
    """The mode a plain ``open`` or ``mkdir`` would give under this process's
    umask.  ``mkstemp`` and ``mkdtemp`` create private (0600, 0700) files and
    folders, which would keep that mode after the rename: a store or report
    shared with a team would be unreadable to it."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def replacing(path) -> Iterator[str]:
    """A temporary path beside ``path`` for the block to write; renamed onto
    ``path`` when the block succeeds, deleted when it raises."""
    target = Path(path)
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
