"""An append-only, hash-chained JSON Lines trail of canonical JSON (RFC 8785) entries.

Each line is one entry; each entry carries the SHA-256 of the previous line, so changing,
removing or reordering any entry breaks the chain. Appends take an exclusive file lock
(several processes on one side may share a trail) and are fsynced before returning.
A torn final record (a crash mid-write) is cut off when the trail is next opened, and
that repair is itself appended. Damage anywhere else is never repaired: it fails
`verify_trail`.

This module must never rewrite or delete a complete entry.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import rfc8785

from accord.durable import fsync_directory
from accord.errors import ExitCode
from federated.audit.events import SCHEMA_VERSION, check_kind
from federated.errors import FederatedError

GENESIS = "0" * 64
_TAIL_BLOCK = 1 << 16


class TrailError(FederatedError):
    """A trail is damaged, out of order or cannot be written; the message names file and line."""

    exit_code = ExitCode.VERIFICATION_FAILED


def entry_hash(line: bytes) -> str:
    """SHA-256 of one entry's canonical bytes (without the newline)."""
    return hashlib.sha256(line).hexdigest()


def _read_tail(handle: BinaryIO) -> bytes:
    """The bytes after the last-but-one newline: the last line, complete or torn."""
    size = handle.seek(0, os.SEEK_END)
    start = max(0, size - _TAIL_BLOCK)
    while True:
        handle.seek(start)
        block = handle.read(size - start)
        cut = block.rstrip(b"\n").rfind(b"\n") if block.endswith(b"\n") else block.rfind(b"\n")
        if cut >= 0 or start == 0:
            return block[cut + 1 :]
        start = max(0, start - _TAIL_BLOCK)


class AuditTrail:
    """One side's trail file. `append` is safe across processes and durable on return."""

    def __init__(self, path: Path, *, actor: str) -> None:
        self.path = Path(path)
        self.actor = actor
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with self._locked() as handle:
            if created:
                fsync_directory(self.path.parent)
                self._write(handle, "trail_opened", study=None, round_number=None, details={})
            else:
                self._repair_torn_tail(handle)

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _repair_torn_tail(self, handle: Any) -> None:
        tail = _read_tail(handle)
        size = handle.seek(0, os.SEEK_END)
        if not tail:
            return
        torn = not tail.endswith(b"\n")
        if not torn:
            try:
                json.loads(tail)
            except ValueError:
                torn = True
        if torn:
            handle.truncate(size - len(tail))
            handle.flush()
            os.fsync(handle.fileno())
            self._write(
                handle,
                "trail_repaired",
                study=None,
                round_number=None,
                details={"bytes_dropped": len(tail), "dropped_sha256": hashlib.sha256(tail).hexdigest()},
            )

    def _write(
        self, handle: Any, kind: str, *, study: str | None, round_number: int | None, details: dict[str, Any]
    ) -> dict[str, Any]:
        check_kind(kind)
        tail = _read_tail(handle).rstrip(b"\n")
        if tail:
            previous = json.loads(tail)
            seq, prev = previous["seq"] + 1, entry_hash(tail)
        else:
            seq, prev = 0, GENESIS
        entry = {
            "v": SCHEMA_VERSION,
            "seq": seq,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "actor": self.actor,
            "kind": kind,
            "study": study,
            "round": round_number,
            "details": details,
            "prev": prev,
        }
        try:
            line = rfc8785.dumps(entry)
        except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
            raise TrailError(f"{self.path}: cannot record {kind!r}: details are not canonical JSON ({exc})") from None
        handle.seek(0, os.SEEK_END)
        handle.write(line + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
        return entry

    def append(self, kind: str, *, study: str | None = None, round: int | None = None, **details: Any) -> dict[str, Any]:
        """Append one event and return the entry as written (after fsync)."""
        with self._locked() as handle:
            return self._write(handle, kind, study=study, round_number=round, details=details)


class _FullCheck(Exception):
    """Raised by the fast decoder's hooks: this line needs the full RFC 8785 comparison."""


def _needs_full_check(_text: str) -> Any:
    raise _FullCheck


def _plain_float(text: str) -> float:
    """A float token already in the form RFC 8785 writes: rfc8785 writes str(x) unchanged when it
    has no exponent and does not end in ".0", and json writes floats as repr(x) == str(x)."""
    value = float(text)
    if text != repr(value) or "e" in text or text.endswith(".0"):
        raise _FullCheck
    return value


def _short_int(text: str) -> int:
    """Integers of up to 15 characters are exact doubles, written alike by json and RFC 8785; longer
    ones may exceed 2**53, which RFC 8785 cannot represent: the full check decides."""
    if len(text) > 15:
        raise _FullCheck
    return int(text)


# The fast path only ever *accepts*: for an all-ASCII line whose integers have at most 15 digits and
# whose floats are plain (above), Python's sorted, compact encoder writes exactly RFC 8785 (keys
# sort alike in ASCII, both escape the same characters the same way). Other floats, NaN and
# Infinity, 16+ digit numbers, non-ASCII text and any mismatch go to rfc8785 itself.
# (`scan_once` and `c_make_encoder` are CPython's json internals, which typeshed does not describe.)
_FAST_SCAN = json.JSONDecoder(
    parse_float=_plain_float, parse_int=_short_int, parse_constant=_needs_full_check
).scan_once  # type: ignore[attr-defined]
_FAST_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _one_shot_encoder() -> Any:
    """The C encoder JSONEncoder.encode builds on every call, built once (without a circular-reference
    check: decoded JSON has no cycles). Called as `encoder(value, 0)`, it returns chunks to join."""
    if json.encoder.c_make_encoder is None:  # type: ignore[attr-defined]  # pragma: no cover - CPython has it
        return lambda value, _level: _FAST_ENCODER.iterencode(value)
    return json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _FAST_ENCODER.default, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )


_C_ENCODE = _one_shot_encoder()


def _fast_encode(entry: dict[str, Any]) -> str:
    return "".join(_C_ENCODE(entry, 0))


def parse_canonical(line: bytes) -> dict[str, Any]:
    """The entry `line` encodes, if `line` is exactly its RFC 8785 form; `ValueError` otherwise.

    The message is "not valid JSON" or "not canonical JSON (RFC 8785)".
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not valid JSON (not UTF-8)") from None
    if text.isascii():
        try:
            entry, end = _FAST_SCAN(text, 0)
        except (_FullCheck, StopIteration, ValueError):
            pass  # the full check below decides, and names the error
        else:
            if end == len(text) and isinstance(entry, dict) and _fast_encode(entry) == text:
                return entry
    try:
        entry = json.loads(text)
    except ValueError:
        raise ValueError("not valid JSON") from None
    try:
        canonical = rfc8785.dumps(entry)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        canonical = None
    if not isinstance(entry, dict) or canonical != line:
        raise ValueError("not canonical JSON (RFC 8785)")
    return entry


@dataclass(frozen=True)
class VerifiedTrail:
    """A trail that passed `verify_trail`: its lines (canonical bytes) and their entries."""

    path: Path
    lines: list[bytes]
    entries: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.lines)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Entries are acyclic: pausing the cyclic garbage collector while 10**5 of them are built
    saves it from rescanning them again and again (about a third of the verification time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_CHUNK = 1024  # lines decoded in one call: the decoder shares key strings across a chunk


def _decode_chunk(lines: list[bytes]) -> list[dict[str, Any]] | None:
    """Decode a run of lines in one call and check each is exactly the canonical form of its entry;
    None if any line needs (or fails) the full per-line check, which then decides and names it."""
    joined = b",".join(lines)
    if not joined.isascii():
        return None
    array = "[" + joined.decode("ascii") + "]"
    entries: list[dict[str, Any]]
    end: int
    try:
        entries, end = _FAST_SCAN(array, 0)
    except (_FullCheck, StopIteration, ValueError):
        return None
    if end != len(array) or len(entries) != len(lines):
        return None
    position = 1
    for line, entry in zip(lines, entries):
        if type(entry) is not dict:
            return None
        canonical = "".join(_C_ENCODE(entry, 0))
        # Equal length and content at the line's own offset: the line is this entry, canonical.
        if len(canonical) != len(line) or not array.startswith(canonical, position):
            return None
        position += len(line) + 1
    return entries


def load_verified(path: Path) -> VerifiedTrail:
    """Read a trail and check every line is canonical JSON chained to the previous one.

    Raises `TrailError` naming the file and the first line that fails.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrailError(f"{path}: cannot read trail: {exc.strerror}") from None
    if data and not data.endswith(b"\n"):
        raise TrailError(f"{path}: last line is torn (no newline); reopen the trail to repair it")
    lines = data.split(b"\n")[:-1]
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    sha256 = hashlib.sha256
    with _collector_paused():
        for first in range(0, len(lines), _CHUNK):
            chunk = lines[first : first + _CHUNK]
            decoded = _decode_chunk(chunk)
            if decoded is None:
                decoded = []
                for number, line in enumerate(chunk, start=first + 1):
                    try:
                        decoded.append(parse_canonical(line))
                    except ValueError as exc:
                        raise TrailError(f"{path}: line {number}: {exc}") from None
            for number, (line, entry) in enumerate(zip(chunk, decoded), start=first + 1):
                if entry.get("seq") != number - 1:
                    raise TrailError(f"{path}: line {number}: sequence number {entry.get('seq')}, expected {number - 1}")
                if entry.get("prev") != prev:
                    raise TrailError(
                        f"{path}: line {number}: chain broken (prev {entry.get('prev')}, "
                        f"but the previous entry hashes to {prev})"
                    )
                prev = sha256(line).hexdigest()
            entries.extend(decoded)
    return VerifiedTrail(path, lines, entries)


def read_entries(path: Path) -> list[dict[str, Any]]:
    """All entries of a trail, checked with `verify_trail` first."""
    return load_verified(path).entries


def verify_trail(path: Path) -> int:
    """Check every line is canonical JSON chained to the previous one; return the entry count.

    Raises `TrailError` naming the file and the first line that fails.
    """
    return len(load_verified(path))
