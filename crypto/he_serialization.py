"""Move SEAL objects (keys, ciphertexts) to and from `bytes` through an anonymous in-memory file.

TenSEAL's raw SEAL binding (`tenseal.sealapi`) saves and loads only through file paths. Rather than
writing ciphertexts, and above all secret keys, to a directory, this module keeps one anonymous
memory file (`memfd_create`, Linux) per bridge and hands SEAL its `/proc/self/fd/N` path. Where that is
unavailable it falls back to a private (0700) temporary directory that it deletes on close.

The bytes are SEAL's own serialization (zstd-compressed, with SEAL's header); loading validates them
against the SEAL context. This module must never persist anything: what it writes lives only as long as
the bridge.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Any, Protocol


class _Saveable(Protocol):
    def save(self, path: str) -> None: ...


class SealBytes:
    """A reusable byte bridge for SEAL objects; one per thread (it holds a single scratch file)."""

    def __init__(self) -> None:
        self._dir: str | None = None
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            self._fd = os.memfd_create("accord-seal", os.MFD_CLOEXEC)
            self._path = f"/proc/self/fd/{self._fd}"
        else:  # pragma: no cover - non-Linux fallback
            self._dir = tempfile.mkdtemp(prefix="accord-seal-")
            os.chmod(self._dir, 0o700)
            self._path = os.path.join(self._dir, "object")
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)

    def dump(self, obj: _Saveable) -> bytes:
        """Serialize `obj` (anything with SEAL's `save(path)`) to bytes."""
        obj.save(self._path)
        size = os.fstat(self._fd).st_size
        return os.pread(self._fd, size, 0)

    def load_into(self, obj: Any, context: Any, data: bytes) -> Any:
        """Fill the empty SEAL object `obj` from `data`, validated against `context`; return `obj`."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        obj.load(context, self._path)
        return obj

    def close(self) -> None:
        """Release the scratch file (and the fallback directory)."""
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = -1
        if self._dir is not None:  # pragma: no cover - non-Linux fallback
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


_local = threading.local()


def seal_bytes() -> SealBytes:
    """The calling thread's bridge (SEAL objects are not shared across threads through it)."""
    bridge = getattr(_local, "bridge", None)
    if bridge is None:
        bridge = SealBytes()
        _local.bridge = bridge
    return bridge
