"""SHA-256 of files and bytes: how Accord names models, data files and configs in its trails."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20
_HASH_DOMAIN = b"accord-arrays-v1\x00"


def sha256_bytes(data: bytes) -> str:
    """Lowercase hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Lowercase hex SHA-256 of the file at `path`, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """Hex SHA-256 of the arrays: b"accord-arrays-v1\\0", then for each name in sorted order a JSON
    header [name, dtype (little-endian, e.g. "<f4"), shape] and the little-endian bytes, each
    prefixed with its length as a little-endian uint64."""
    digest = hashlib.sha256(_HASH_DOMAIN)
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        header = json.dumps([name, array.dtype.str, list(array.shape)], ensure_ascii=True).encode()
        digest.update(struct.pack("<Q", len(header)) + header)
        digest.update(struct.pack("<Q", array.nbytes) + array.tobytes())
    return digest.hexdigest()
