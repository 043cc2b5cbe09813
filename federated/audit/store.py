"""Where a trail's signed checkpoints live: a directory beside the trail, written durably.

For a trail `T.jsonl` the store is `T.checkpoints/`:

    log/key.vkey                    this side's verifier key (C2SP vkey; its name is the log's origin)
    log/00000000.note               the trail's checkpoints in the order they were signed, each a C2SP
                                    signed note; cosignatures from peers are appended as they arrive
    peers/<origin>/key.vkey         a peer's key, pinned on first use
    peers/<origin>/00000000.note    the peer's checkpoints this side cosigned, with its cosignature
    coordinator.pub                 (partner side) the coordinator key this node pinned

Every file is written to a temporary file, fsynced, renamed into place, and its directory
fsynced (as is the parent of every directory created), so a crash leaves the old file or the
new one, never half of one. This module must never delete or renumber a note.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from accord.durable import make_directory, write_durably
from crypto import NoteFormatError, NoteVerifier

NOTE_SUFFIX = ".note"
KEY_FILE = "key.vkey"
_DIGITS = 8


def store_dir(trail: Path) -> Path:
    """The checkpoint store that belongs to the trail at `trail`."""
    trail = Path(trail)
    return trail.with_name(f"{trail.stem}.checkpoints")


def origin_directory_name(origin: str) -> str:
    """A file name for a log origin (origins hold '/'): percent-encoded, reversible."""
    return quote(origin, safe="")


@dataclass(frozen=True)
class StoredNote:
    """One note file of a series: its position in signing order and its text."""

    number: int
    path: Path
    text: str


class NoteSeries:
    """Numbered note files in one directory, in the order they were written."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _paths(self) -> list[Path]:
        """The note files in order; `NoteFormatError` if a number is missing."""
        if not self.directory.is_dir():
            return []
        numbered = {}
        for path in self.directory.iterdir():
            stem = path.name[: -len(NOTE_SUFFIX)]
            if path.name.endswith(NOTE_SUFFIX) and len(stem) == _DIGITS and stem.isdigit():
                numbered[int(stem)] = path
        for expected in range(len(numbered)):
            if expected not in numbered:
                raise NoteFormatError(f"{self.directory}: note {expected:0{_DIGITS}d}{NOTE_SUFFIX} is missing")
        return [numbered[number] for number in range(len(numbered))]

    def notes(self) -> list[StoredNote]:
        return [StoredNote(number, path, path.read_text(encoding="utf-8")) for number, path in enumerate(self._paths())]

    def latest(self) -> StoredNote | None:
        paths = self._paths()
        if not paths:
            return None
        return StoredNote(len(paths) - 1, paths[-1], paths[-1].read_text(encoding="utf-8"))

    def append(self, text: str) -> StoredNote:
        number = len(self._paths())
        path = self.directory / f"{number:0{_DIGITS}d}{NOTE_SUFFIX}"
        write_durably(path, text.encode("utf-8"))
        return StoredNote(number, path, text)

    def rewrite(self, note: StoredNote, text: str) -> StoredNote:
        """Replace a note's text (to add cosignature lines); the signed body must stay the same."""
        if not text.startswith(_body_of(note.text)):
            raise NoteFormatError(f"{note.path}: a stored note may only gain signature lines")
        write_durably(note.path, text.encode("utf-8"))
        return StoredNote(note.number, note.path, text)

    def read_key(self) -> NoteVerifier | None:
        path = self.directory / KEY_FILE
        if not path.is_file():
            return None
        return NoteVerifier.from_vkey(path.read_text(encoding="utf-8").strip())

    def write_key(self, verifier: NoteVerifier) -> None:
        write_durably(self.directory / KEY_FILE, (verifier.to_vkey() + "\n").encode("utf-8"))


def _body_of(text: str) -> str:
    return text[: text.rfind("\n\n") + 2]


class CheckpointStore:
    """The store beside one trail: this side's own log and the peers' logs it cosigned."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def beside(cls, trail: Path) -> CheckpointStore:
        return cls(store_dir(trail))

    @property
    def own(self) -> NoteSeries:
        return NoteSeries(self.root / "log")

    def peer(self, origin: str) -> NoteSeries:
        return NoteSeries(self.root / "peers" / origin_directory_name(origin))

    def peer_origins(self) -> list[str]:
        peers = self.root / "peers"
        if not peers.is_dir():
            return []
        return sorted(unquote(path.name) for path in peers.iterdir() if path.is_dir())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes (Flower may run two ClientApps of one node at once)."""
        make_directory(self.root)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
