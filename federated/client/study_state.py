"""A partner node's memory of the studies it served: which rounds it answered, which studies ended.

The coordinator picks study ids and round numbers; a hostile one repeats a round, goes back, or re-runs
a finished study to get fresh releases for one charge. The node decides for itself what a task may be:

- at most one task per (study, kind, round) is ever admitted, and the rounds of a (study, kind) only
  move forward: a round at or below the last one admitted is refused (kind: the message type, so a
  training study's final `query.evaluate` of round N + 1 follows its `train` rounds 1..N);
- a sealed study (its closing `query.seal`, completed or failed) is never served again, seal included:
  a new study needs a new id, and is charged as a new study;
- after `MAX_FAILED_TASKS_PER_STUDY` data-dependent failures in a study (see
  `federated.client.refusals`), the node refuses the rest of that study;
- every admitted task gets the study's next sequence number; a DP release is spent in the ledger
  under an id made from it (`Admission.release`), never from a number the coordinator chose.

A slot is taken when the task is admitted, before the data is read, and is never given back: a task
refused after that (by the contract, the budget or a failing model) has used its round. Re-sending a
round after a coordinator crash is therefore refused; it is out of scope. The state is one SQLite file
beside the trail (TRAIL_STEM-studies.sqlite, WAL, fsync on commit); each admission is one
`BEGIN IMMEDIATE` transaction, so two deliveries at once cannot both pass. Refusals here depend on the
task and this state only, never on data, and name the clause "study".

This module must never admit a task of a sealed study, a repeated or earlier round, or forget a slot.
"""

from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass

from federated.client.errors import StudyRefusal
from federated.client.node_store import NodeStore

MAX_FAILED_TASKS_PER_STUDY = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS studies (study TEXT PRIMARY KEY, tasks INTEGER NOT NULL, failures INTEGER NOT NULL, "
    "sealed TEXT, first_seen TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS admitted (study TEXT NOT NULL, kind TEXT NOT NULL, round INTEGER NOT NULL, "
    "sequence INTEGER NOT NULL, task_sha256 TEXT NOT NULL, admitted_at TEXT NOT NULL, PRIMARY KEY (study, kind, round))",
)


@dataclass(frozen=True)
class Admission:
    """One admitted task: its slot and the sequence number the node gave it within the study."""

    study: str
    kind: str
    round: int
    sequence: int

    def release(self, what: str) -> str:
        """The ledger's release id for what this task releases (e.g. "evaluation"): the node's number, not the round."""
        return f"release-{self.sequence}/{what}"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class StudyState(NodeStore):
    """The studies one node has served (`PATH`, SQLite; created on first use)."""

    SUFFIX = "studies"
    SCHEMA = _SCHEMA

    @staticmethod
    def _study(connection: sqlite3.Connection, study: str) -> tuple[int, int, str | None]:
        row = connection.execute("SELECT tasks, failures, sealed FROM studies WHERE study = ?", (study,)).fetchone()
        if row is None:
            connection.execute("INSERT INTO studies (study, tasks, failures, sealed, first_seen) VALUES (?, 0, 0, NULL, ?)",
                               (study, _now()))
            return 0, 0, None
        return int(row[0]), int(row[1]), row[2]

    def admit(self, *, study: str, kind: str, round: int, task_sha256: str) -> Admission:
        """Take the slot (study, kind, round) for a verified task, or raise `StudyRefusal` and change nothing."""
        with self.transaction() as connection:
            tasks, failures, sealed = self._study(connection, study)
            if sealed is not None:
                raise StudyRefusal(f"study {study!r} was sealed ({sealed}); a sealed study is never served again, "
                                   "a new study needs a new id")
            if failures >= MAX_FAILED_TASKS_PER_STUDY:
                raise StudyRefusal(f"this node stopped serving study {study!r} after {failures} of its tasks failed "
                                   "on this node's data")
            (last,) = connection.execute("SELECT MAX(round) FROM admitted WHERE study = ? AND kind = ?",
                                         (study, kind)).fetchone()
            if last is not None and round <= last:
                raise StudyRefusal(f"study {study!r}: this node already answered {kind} round {last}; "
                                   f"round {round} is not after it (one task per round, rounds only move forward)")
            connection.execute("UPDATE studies SET tasks = ? WHERE study = ?", (tasks + 1, study))
            connection.execute("INSERT INTO admitted (study, kind, round, sequence, task_sha256, admitted_at) "
                               "VALUES (?, ?, ?, ?, ?, ?)", (study, kind, round, tasks + 1, task_sha256, _now()))
        return Admission(study, kind, round, tasks + 1)

    def seal(self, *, study: str, status: str) -> None:
        """Mark `study` sealed for good; `StudyRefusal` if it already was."""
        with self.transaction() as connection:
            _, _, sealed = self._study(connection, study)
            if sealed is not None:
                raise StudyRefusal(f"study {study!r} was already sealed ({sealed})")
            connection.execute("UPDATE studies SET sealed = ? WHERE study = ?", (status, study))

    def record_failure(self, *, study: str) -> int:
        """Count a data-dependent failure of a task of `study`; the study's count so far."""
        with self.transaction() as connection:
            _, failures, _ = self._study(connection, study)
            connection.execute("UPDATE studies SET failures = ? WHERE study = ?", (failures + 1, study))
        return failures + 1

    def admitted(self, study: str) -> list[Admission]:
        """The tasks of `study` admitted so far, in order."""
        if not self.path.exists():
            return []
        with self.transaction() as connection:
            rows = connection.execute("SELECT study, kind, round, sequence FROM admitted WHERE study = ? ORDER BY sequence",
                                      (study,)).fetchall()
        return [Admission(*row) for row in rows]

    def sealed(self, study: str) -> str | None:
        """How `study` was sealed ("completed" / "failed"), or None while it is open."""
        if not self.path.exists():
            return None
        with self.transaction() as connection:
            row = connection.execute("SELECT sealed FROM studies WHERE study = ?", (study,)).fetchone()
        return None if row is None else row[0]
