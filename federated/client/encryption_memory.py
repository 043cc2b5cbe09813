"""What a partner node remembers of encrypted aggregation, durably, across ClientApp processes.

Flower runs every message in a fresh process, so each promise below lives in a SQLite file beside the
node's trail (TRAIL_STEM-he.sqlite), and each is kept by an insert inside one immediate transaction
(two messages arriving at once cannot both pass: the insert is the check):

- **one cohort per study key**: the first encrypted task under a key fingerprint fixes the cohort
  this node's bundles are bound to; a task announcing any other cohort under that key is refused.
  Two decrypted rounds of different cohorts that share this partner would otherwise differ by the
  partners in one and not the other (round 1 {A, B, C}, round 2 {A, B}: C's values by subtraction).
- **one bundle per (study key, study, round)**: a second bundle under the same pad would cancel it
  (B - B'), so a round is answered with a bundle at most once, whatever the task's kind or nonce.
- **one decryption per (study key, study, round)**: the node decrypts at most one aggregate per round;
  the slot is taken before decrypting, so a failed or hostile attempt uses it up too.

Refusals carry clause "encryption" and name the study and round, never a value from the data.
This module must never forget a row (no delete, no update) and never decide anything else.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from dataclasses import dataclass

from federated.client.node_store import NodeStore
from federated.errors import RefusalError
from federated.messages.encryption_spec import ENCRYPTION_CLAUSE

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cohorts (fingerprint TEXT PRIMARY KEY, cohort TEXT NOT NULL, study TEXT NOT NULL, "
    "round INTEGER NOT NULL, first_seen TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bundles (fingerprint TEXT NOT NULL, study TEXT NOT NULL, round INTEGER NOT NULL, "
    "bundle_sha256 TEXT NOT NULL, sent TEXT NOT NULL, PRIMARY KEY (fingerprint, study, round))",
    "CREATE TABLE IF NOT EXISTS decryptions (fingerprint TEXT NOT NULL, study TEXT NOT NULL, round INTEGER NOT NULL, "
    "aggregate_sha256 TEXT NOT NULL, attempted TEXT NOT NULL, PRIMARY KEY (fingerprint, study, round))",
)


@dataclass(frozen=True)
class SentBundle:
    """What this node sent for one round: the cohort it was bound to and the bundle's SHA-256."""

    cohort: list[str]
    bundle_sha256: str


class EncryptionMemory(NodeStore):
    """One node's encrypted-aggregation state (`PATH`, SQLite; created on first use)."""

    SUFFIX = "he"
    SCHEMA = _SCHEMA

    def check_bundle(self, *, fingerprint: str, study: str, round: int, cohort: list[str]) -> None:
        """Refuse (before any work) a round already answered, or a cohort other than the key's (a read only)."""
        with self.connected() as connection:
            _check(connection, fingerprint, study, round, cohort)

    def record_bundle(self, *, fingerprint: str, study: str, round: int, cohort: list[str], bundle_sha256: str) -> None:
        """Keep the round's bundle (and, on first use of the key, its cohort); refuse as `check_bundle` does."""
        now = _now()
        with self.transaction() as connection:
            _check(connection, fingerprint, study, round, cohort)
            connection.execute("INSERT OR IGNORE INTO cohorts VALUES (?, ?, ?, ?, ?)",
                               (fingerprint, json.dumps(cohort), study, round, now))
            connection.execute("INSERT INTO bundles VALUES (?, ?, ?, ?, ?)", (fingerprint, study, round, bundle_sha256, now))

    def sent_bundle(self, *, fingerprint: str, study: str, round: int) -> SentBundle | None:
        """The bundle this node sent for the round, with its cohort; None if it sent none."""
        with self.connected() as connection:
            row = connection.execute(
                "SELECT c.cohort, b.bundle_sha256 FROM bundles b JOIN cohorts c ON c.fingerprint = b.fingerprint "
                "WHERE b.fingerprint = ? AND b.study = ? AND b.round = ?", (fingerprint, study, round)).fetchone()
        return SentBundle(json.loads(row[0]), row[1]) if row else None

    def claim_decryption(self, *, fingerprint: str, study: str, round: int, aggregate_sha256: str) -> None:
        """Take the round's one decryption; refuse if it was taken (even by an attempt that failed)."""
        with self.transaction() as connection:
            row = connection.execute("SELECT aggregate_sha256, attempted FROM decryptions WHERE fingerprint = ? AND "
                                     "study = ? AND round = ?", (fingerprint, study, round)).fetchone()
            if row is not None:
                raise RefusalError(ENCRYPTION_CLAUSE, f"study {study} round {round}: this node already decrypted an "
                                   f"aggregate of this round (at {row[1]}); it decrypts at most one per round")
            connection.execute("INSERT INTO decryptions VALUES (?, ?, ?, ?, ?)",
                               (fingerprint, study, round, aggregate_sha256, _now()))


def _check(connection: sqlite3.Connection, fingerprint: str, study: str, round: int, cohort: list[str]) -> None:
    row = connection.execute("SELECT cohort, study, round FROM cohorts WHERE fingerprint = ?", (fingerprint,)).fetchone()
    if row is not None and json.loads(row[0]) != cohort:
        raise RefusalError(ENCRYPTION_CLAUSE, f"study {study} round {round}: the task announces cohort {cohort}, but "
                           f"this study key's cohort is {json.loads(row[0])} (fixed at study {row[1]} round {row[2]}); "
                           "one cohort per study key, so that no two decrypted rounds differ by a partner")
    sent = connection.execute("SELECT sent FROM bundles WHERE fingerprint = ? AND study = ? AND round = ?",
                              (fingerprint, study, round)).fetchone()
    if sent is not None:
        raise RefusalError(ENCRYPTION_CLAUSE, f"study {study} round {round}: this node already sent its bundle for "
                           f"this round (at {sent[0]}); one bundle per partner per round")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
