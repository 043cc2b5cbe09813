"""The one way a partner's node keeps durable state in SQLite (replays seen, studies served, exact
releases, encrypted-aggregation promises): every store opens its file the same way, so a crash never
forgets a promise (WAL, synchronous=FULL) and a check and the record it leads to are one transaction.

Each Flower message runs in a fresh ClientApp process, so this state lives in files beside the trail,
never in memory; several processes may share a file, hence the busy timeout and `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path
from typing import ClassVar, Self

BUSY_TIMEOUT_S = 60


@contextmanager
def connected(path: Path, schema: Sequence[str]) -> Iterator[sqlite3.Connection]:
    """A connection to the store at `path` (created with `schema` on first use), closed on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as connection:
        _retry_while_locked(lambda: connection.execute("PRAGMA journal_mode=WAL"))
        connection.execute("PRAGMA synchronous=FULL")  # a promise that a crash forgets is no promise
        for statement in schema:
            _retry_while_locked(lambda: connection.execute(statement))
        yield connection


def _retry_while_locked(step: Callable[[], object]) -> None:
    """Run `step`, waiting out "database is locked": switching a new file to WAL and creating its tables
    take locks that SQLite's busy handler does not always wait for when many processes open it at once."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def transaction(path: Path, schema: Sequence[str]) -> Iterator[sqlite3.Connection]:
    """`connected`, inside one write transaction: committed if the block exits normally, rolled back if it raises."""
    with connected(path, schema) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


class NodeStore:
    """One of a node's SQLite stores, a file beside its trail (TRAIL_STEM-`SUFFIX`.sqlite, created on first
    use with `SCHEMA`): each store declares those two and reads and writes through `connected`/`transaction`."""

    SUFFIX: ClassVar[str]
    SCHEMA: ClassVar[tuple[str, ...]]

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def beside(cls, trail: Path) -> Self:
        """The store of the node whose trail is `trail`: TRAIL_STEM-SUFFIX.sqlite next to it."""
        return cls(trail.with_name(f"{trail.stem}-{cls.SUFFIX}.sqlite"))

    def connected(self) -> AbstractContextManager[sqlite3.Connection]:
        return connected(self.path, self.SCHEMA)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path, self.SCHEMA)
