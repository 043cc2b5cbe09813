"""Writing files so that a crash never leaves half of one: fsynced, atomic, directories included."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def fsync_directory(path: Path) -> None:
    """Persist a directory's entries (a new or renamed file in it survives a crash)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_directory(path: Path) -> None:
    """Create `path` and any missing parents, fsyncing each parent so the new entries persist."""
    path = Path(path)
    if path.is_dir():
        return
    make_directory(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
    fsync_directory(path.parent)


@contextlib.contextmanager
def replacing(path: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces `path` atomically when the block ends without error.

    It writes a temporary file beside `path` (with `mode`, set before any byte is written, if given),
    then fsync, rename over `path`, fsync of the directory. If the block raises, `path` is untouched
    and the temporary file is removed.
    """
    path = Path(path)
    make_directory(path.parent)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def write_durably(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` by `data` atomically (see `replacing`)."""
    with replacing(path, mode=mode) as handle:
        handle.write(data)
