"""A partner node's count of what it released without DP, per study: tasks, and the models they ran.

Without DP nothing in the ledger bounds what a study learns, so the contract caps it
(`privacy.contract.Disclosure`: `max_tasks_per_study`, `max_models_per_study`). Those caps need
memory across tasks, kept here in one SQLite file beside the trail (TRAIL_STEM-exact.sqlite, WAL,
fsync on commit). `admitting` reads a study's history, lets the caller check the task against it,
and records the task in the same `BEGIN IMMEDIATE` transaction: two tasks delivered at once cannot
both pass a cap. A task is counted when it is admitted, before its data is read, and never given
back: one refused later (by the budget, or a model that fails) still counts.

This module never records a task whose check failed, and never forgets one.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from federated.client.node_store import NodeStore

_SCHEMA = ("CREATE TABLE IF NOT EXISTS exact (seq INTEGER PRIMARY KEY AUTOINCREMENT, study TEXT NOT NULL, "
           "task_sha256 TEXT NOT NULL, models TEXT NOT NULL, admitted_at TEXT NOT NULL)")


@dataclass(frozen=True)
class StudyHistory:
    """What a node released without DP in one study before the task at hand."""

    tasks: int = 0
    models: frozenset[str] = frozenset()


class ExactReleases(NodeStore):
    """The exact releases one node made (`PATH`, SQLite; created on first use)."""

    SUFFIX = "exact"
    SCHEMA = (_SCHEMA,)

    @contextmanager
    def admitting(self, *, study: str, task_sha256: str, models: tuple[str, ...]) -> Iterator[StudyHistory]:
        """Yield the study's history; record the task if the block exits normally, nothing if it raises."""
        with self.transaction() as connection:
            yield self._history(connection, study)
            now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            connection.execute("INSERT INTO exact (study, task_sha256, models, admitted_at) VALUES (?, ?, ?, ?)",
                               (study, task_sha256, json.dumps(sorted(set(models))), now))

    def history(self, study: str) -> StudyHistory:
        """The study's history so far (empty if the node never released anything exactly)."""
        if not self.path.exists():
            return StudyHistory()
        with self.connected() as connection:
            return self._history(connection, study)

    @staticmethod
    def _history(connection: sqlite3.Connection, study: str) -> StudyHistory:
        rows = connection.execute("SELECT models FROM exact WHERE study = ?", (study,)).fetchall()
        models = frozenset(model for (text,) in rows for model in json.loads(text))
        return StudyHistory(tasks=len(rows), models=models)
