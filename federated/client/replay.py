"""A partner node's memory of the tasks it has run: a task delivered twice is refused.

Every task the coordinator sends carries a fresh 128-bit nonce that its Ed25519 signature
covers together with the task's hash (which names the study, the round and every model);
see `federated.messages.audit_exchange`. The node keeps each nonce it accepted in a SQLite file beside
its trail, so a replay — the same signed task again, from a network attacker or a
misbehaving coordinator, even after a restart — is refused with clause "replay" before any
data is read. Two copies arriving at once cannot both pass: the insert is the check.

Order in `federated.client.pipeline.serve`: `check` (a cheap lookup, so a replay is named as
such even when its old checkpoint would also fail the audit), then the audit's signature
check, then `admit`, which records the nonce only once it is known to be the coordinator's.
This module must never record a nonce whose signature was not verified.
"""

from __future__ import annotations

import datetime
import sqlite3

from flwr.app import RecordDict

from federated.client.errors import ReplayRefusal
from federated.client.node_store import NodeStore
from federated.errors import MessageError
from federated.messages.audit_exchange import read_task_audit

CLAUSE = ReplayRefusal.clause


def task_nonce(content: RecordDict) -> str:
    """The nonce a task carries in its audit record ("" if none or unreadable: the audit decides)."""
    try:
        record = read_task_audit(content)
    except MessageError:
        return ""
    return record.nonce if record is not None else ""


_SCHEMA = ("CREATE TABLE IF NOT EXISTS seen (nonce TEXT PRIMARY KEY, task_sha256 TEXT NOT NULL, "
           "study TEXT, round INTEGER, first_seen TEXT NOT NULL)",)


class ReplayCache(NodeStore):
    """The nonces one node has accepted (`PATH`, SQLite; created on first use)."""

    SUFFIX = "replay"
    SCHEMA = _SCHEMA

    def check(self, nonce: str) -> None:
        """Raise `ReplayRefusal` if `nonce` was accepted before (an empty nonce is `admit`'s to refuse)."""
        if not nonce:
            return
        with self.connected() as connection:
            row = connection.execute("SELECT task_sha256, study, round, first_seen FROM seen WHERE nonce = ?", (nonce,)).fetchone()
        if row is not None:
            raise ReplayRefusal(_replayed(nonce, *row))

    def admit(self, nonce: str, *, task_sha256: str, study: str | None = None, round: int | None = None) -> None:
        """Record a verified task's nonce; raise `ReplayRefusal` if it is missing or already there."""
        if not nonce:
            raise ReplayRefusal("the task carries no nonce, so this node could not tell a replay from a new task")
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with self.connected() as connection:
            try:
                connection.execute(
                    "INSERT INTO seen (nonce, task_sha256, study, round, first_seen) VALUES (?, ?, ?, ?, ?)",
                    (nonce, task_sha256, study, round, now),
                )
            except sqlite3.IntegrityError:
                row = connection.execute("SELECT task_sha256, study, round, first_seen FROM seen WHERE nonce = ?", (nonce,)).fetchone()
                raise ReplayRefusal(_replayed(nonce, *row)) from None

    def __len__(self) -> int:
        if not self.path.exists():
            return 0
        with self.connected() as connection:
            return int(connection.execute("SELECT COUNT(*) FROM seen").fetchone()[0])


def _replayed(nonce: str, task_sha256: str, study: str | None, round_number: int | None, first_seen: str) -> str:
    return (
        f"replayed task: nonce {nonce} was already accepted at {first_seen} "
        f"(study {study}, round {round_number}, task {task_sha256[:16]}…)"
    )
