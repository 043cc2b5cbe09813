"""A partner's persistent privacy budget ledger for one dataset, across all studies and restarts.

`BudgetLedger` keeps every ε/δ spent on a dataset in one SQLite file at the partner. A spend is
check-then-spend in ONE transaction (`BEGIN IMMEDIATE`, which takes SQLite's write lock before
reading): concurrent processes are serialised, and a refused, failed or killed spend changes nothing.

Composition rule (deliberate): the ε of a study, and of the dataset, is the plain SUM of the ε of
its releases (basic composition, Dwork et al. 2006), and δ likewise. It is valid for any mix of
mechanisms and δs, needs no numerical accountant inside the lock and is exact to check against a
cap. It is looser than composing with an accountant; a release that is itself a composition
(a DP-SGD run, several statistics) should be accounted tightly *before* it is spent, e.g. with
`privacy.accounting.PrivacyAccount`, and spent here as one release. Mechanism parameters
(noise_multiplier, sample_rate, steps) are stored with a spend for the record only. A release made with
distributed noise (a share of the noise inside an encrypted sum) is charged its ε, which holds while at least
`honest_required` of its `cohort` contributors are honest; `share_epsilon`, the ε the partner's own share
gives whatever the others do (never smaller than ε), is stored beside it. Schema 2 added those three
columns; a schema-1 file is upgraded in place when opened (the columns are added, empty).

This module must never let the recorded ε exceed a cap, never count a release twice, never
half-write a spend, and never import `federated` (the audit trail plugs in through `on_spend`).
CLI: `python -m privacy.ledger show FILE [--json]` (see `privacy/ledger/__main__.py`).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from privacy.errors import BudgetExceededError, LedgerError, ReleaseConflictError
from privacy.validation import require_number

SCHEMA_VERSION = 2
_UPGRADABLE = {"1"}  # older schemas upgraded in place: `_DISTRIBUTED_COLUMNS` added
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spends (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id TEXT NOT NULL,
    release TEXT NOT NULL,
    epsilon REAL NOT NULL CHECK (epsilon >= 0),
    delta REAL NOT NULL CHECK (delta >= 0 AND delta < 1),
    noise_multiplier REAL,
    sample_rate REAL,
    steps INTEGER,
    spent_at TEXT NOT NULL,
    share_epsilon REAL,
    honest_required INTEGER,
    cohort INTEGER,
    UNIQUE (study_id, release)
);
"""
_COLUMNS = ("study_id, release, epsilon, delta, noise_multiplier, sample_rate, steps, spent_at, share_epsilon, "
            "honest_required, cohort")
_DISTRIBUTED_COLUMNS = (("share_epsilon", "REAL"), ("honest_required", "INTEGER"), ("cohort", "INTEGER"))
_BUSY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Spend:
    """One release recorded in the ledger; `already_spent` is True when a spend repeated it."""

    study_id: str
    release: str
    epsilon: float
    delta: float
    noise_multiplier: float | None
    sample_rate: float | None
    steps: int | None
    spent_at: str
    share_epsilon: float | None = None  # distributed noise: the ε this partner's own share gives alone
    honest_required: int | None = None  # distributed noise: t, the honest contributors the ε above needs
    cohort: int | None = None  # distributed noise: n, the contributors of the encrypted sum
    already_spent: bool = False

    def as_record(self) -> dict[str, Any]:
        """The spend as a plain dict (what `on_spend` receives, without the totals)."""
        return asdict(self)


class BudgetLedger:
    """The ε budget of one dataset: caps per study and in total, enforced atomically on disk.

    `max_epsilon_total` caps the sum over all studies; `max_epsilon_per_study` caps each study.
    The caps given here are the ones enforced; they are also stored in the file so that
    `open_existing` (and the CLI) can show the remaining budget. `on_spend(record)` runs after each
    new spend commits (not for repeats) — an exception from it propagates, the spend stands.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_epsilon_total: float,
        max_epsilon_per_study: float,
        on_spend: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        caps = {
            "max_epsilon_total": _non_negative("max_epsilon_total", max_epsilon_total),
            "max_epsilon_per_study": _non_negative("max_epsilon_per_study", max_epsilon_per_study),
        }
        self._setup(Path(path), caps["max_epsilon_total"], caps["max_epsilon_per_study"], on_spend)
        with self._transaction() as conn:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            self._check_schema(conn)
            stored = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            wanted = {"schema_version": str(SCHEMA_VERSION)} | {key: repr(cap) for key, cap in caps.items()}
            changed = [(key, value) for key, value in wanted.items() if stored.get(key) != value]
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", changed)

    def _setup(
        self,
        path: Path,
        max_total: float,
        max_study: float,
        on_spend: Callable[[dict[str, Any]], object] | None,
    ) -> None:
        self.path = path
        self.max_epsilon_total = max_total
        self.max_epsilon_per_study = max_study
        self._on_spend = on_spend

    @classmethod
    def open_existing(cls, path: str | Path) -> BudgetLedger:
        """Open a ledger that must already exist, with the caps stored in it."""
        path = Path(path)
        if not path.is_file():
            raise LedgerError(f"no budget ledger at {str(path)!r}")
        try:
            with closing_connection(path, read_only=True) as conn:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            max_total, max_study = [float(meta[key]) for key in ("max_epsilon_total", "max_epsilon_per_study")]
        except (LedgerError, KeyError, ValueError) as error:
            raise LedgerError(f"{str(path)!r} is not an Accord budget ledger: {error}") from None
        ledger = cls.__new__(cls)  # read-only: no schema or cap writes, unlike __init__
        ledger._setup(path, max_total, max_study, None)
        with closing_connection(path) as conn:
            ledger._check_schema(conn)
        return ledger

    def check(self, *, study_id: str, epsilon: float, release: str = "") -> None:
        """Raise `BudgetExceededError` (with the remaining budget) if spending `epsilon` would exceed a cap.

        Call it before touching data; `spend` repeats the check atomically, so a check that passes
        is advice, not a reservation.
        """
        _non_negative("epsilon", epsilon)
        with closing_connection(self.path) as conn:
            self._refuse_if_over(conn, study_id=study_id, release=release, epsilon=epsilon)

    def spend(
        self,
        *,
        study_id: str,
        release: str,
        epsilon: float,
        delta: float,
        noise_multiplier: float | None = None,
        sample_rate: float | None = None,
        steps: int | None = None,
        share_epsilon: float | None = None,
        honest_required: int | None = None,
        cohort: int | None = None,
    ) -> Spend:
        """Record `release` of `study_id` as spending (ε, δ), or refuse and change nothing.

        Idempotent on (study_id, release): repeating an identical spend returns the recorded one
        with `already_spent=True` and counts nothing; repeating it with other numbers raises
        `ReleaseConflictError`. Raises `BudgetExceededError` when a cap would be exceeded. A release with
        distributed noise names all of `share_epsilon` (≥ ε), `honest_required` (t ≥ 2) and `cohort` (n ≥ t).
        """
        _check_distributed(epsilon, share_epsilon, honest_required, cohort)
        for name, value in (("study_id", study_id), ("release", release)):
            if not isinstance(value, str) or not value:
                raise LedgerError(f"{name} must be a non-empty string, got {value!r}")
        _non_negative("epsilon", epsilon)
        if isinstance(delta, bool) or not (isinstance(delta, (int, float)) and 0 <= delta < 1):
            raise LedgerError(f"delta must be a number in [0, 1), got {delta!r}")
        wanted = Spend(
            study_id=study_id,
            release=release,
            epsilon=float(epsilon),
            delta=float(delta),
            noise_multiplier=None if noise_multiplier is None else float(noise_multiplier),
            sample_rate=None if sample_rate is None else float(sample_rate),
            steps=None if steps is None else int(steps),
            spent_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            share_epsilon=None if share_epsilon is None else float(share_epsilon),
            honest_required=None if honest_required is None else int(honest_required),
            cohort=None if cohort is None else int(cohort),
        )
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM spends WHERE study_id = ? AND release = ?", (study_id, release)
            ).fetchone()
            if row is not None:
                return self._repeat(Spend(*row), wanted)
            self._refuse_if_over(conn, study_id=study_id, release=release, epsilon=wanted.epsilon)
            self._insert(conn, wanted)
            totals = self._totals(conn, study_id)
        if self._on_spend is not None:
            self._on_spend(
                wanted.as_record()
                | {
                    "spent_epsilon_study": totals[0],
                    "spent_epsilon_total": totals[1],
                    "remaining_epsilon_study": max(0.0, self.max_epsilon_per_study - totals[0]),
                    "remaining_epsilon_total": max(0.0, self.max_epsilon_total - totals[1]),
                }
            )
        return wanted

    def remaining(self, *, study_id: str | None = None) -> float:
        """ε still spendable: in total, or (with `study_id`) by that study under both caps."""
        with closing_connection(self.path) as conn:
            spent_study, spent_total = self._totals(conn, study_id)
        left = self.max_epsilon_total - spent_total
        if study_id is not None:
            left = min(left, self.max_epsilon_per_study - spent_study)
        return max(0.0, left)

    def spent(self, *, study_id: str | None = None) -> float:
        """ε spent: in total, or by one study (sum of its releases)."""
        with closing_connection(self.path) as conn:
            spent_study, spent_total = self._totals(conn, study_id)
        return spent_total if study_id is None else spent_study

    def spends(self, *, study_id: str | None = None) -> list[Spend]:
        """Every recorded spend, oldest first; only one study's with `study_id`."""
        query = f"SELECT {_COLUMNS} FROM spends"
        args: tuple[str, ...] = ()
        if study_id is not None:
            query, args = query + " WHERE study_id = ?", (study_id,)
        with closing_connection(self.path) as conn:
            return [Spend(*row) for row in conn.execute(query + " ORDER BY seq", args)]

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its first read to commit."""
        with closing_connection(self.path) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and row[0] in _UPGRADABLE:
            own = not conn.in_transaction  # `open_existing` upgrades under its own write lock
            if own:
                conn.execute("BEGIN IMMEDIATE")
            present = {column[1] for column in conn.execute("PRAGMA table_info(spends)")}
            for name, kind in _DISTRIBUTED_COLUMNS:
                if name not in present:
                    conn.execute(f"ALTER TABLE spends ADD COLUMN {name} {kind}")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            if own:
                conn.execute("COMMIT")
            return
        if row is not None and row[0] != str(SCHEMA_VERSION):
            raise LedgerError(
                f"budget ledger {str(self.path)!r} has schema version {row[0]}; "
                f"this Accord reads {SCHEMA_VERSION}"
            )

    def _insert(self, conn: sqlite3.Connection, spend: Spend) -> None:
        values = asdict(spend)
        values.pop("already_spent")
        placeholders = ", ".join("?" * len(values))
        conn.execute(f"INSERT INTO spends ({_COLUMNS}) VALUES ({placeholders})", tuple(values.values()))

    def _totals(self, conn: sqlite3.Connection, study_id: str | None) -> tuple[float, float]:
        """(ε spent by `study_id`, ε spent in total), each summed exactly (math.fsum)."""
        study, total = self._epsilons(conn, study_id)
        return math.fsum(study), math.fsum(total)

    @staticmethod
    def _epsilons(conn: sqlite3.Connection, study_id: str | None) -> tuple[list[float], list[float]]:
        rows = conn.execute("SELECT study_id, epsilon FROM spends").fetchall()
        return [eps for sid, eps in rows if sid == study_id], [eps for _, eps in rows]

    def _refuse_if_over(
        self, conn: sqlite3.Connection, *, study_id: str, release: str, epsilon: float
    ) -> None:
        study, total = self._epsilons(conn, study_id)
        spent_study, spent_total = math.fsum(study), math.fsum(total)
        remaining = max(
            0.0, min(self.max_epsilon_per_study - spent_study, self.max_epsilon_total - spent_total)
        )
        for scope, cap, spent, epsilons in (
            ("study", self.max_epsilon_per_study, spent_study, study),
            ("total", self.max_epsilon_total, spent_total, total),
        ):
            # the very sum that `spent()` will report afterwards, so the cap holds for it exactly
            if math.fsum([*epsilons, epsilon]) > cap:
                raise BudgetExceededError(
                    scope=scope,
                    study_id=study_id,
                    release=release,
                    requested_epsilon=epsilon,
                    cap_epsilon=cap,
                    spent_epsilon=spent,
                    remaining_epsilon=remaining,
                )

    @staticmethod
    def _repeat(recorded: Spend, wanted: Spend) -> Spend:
        fields = ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "share_epsilon", "honest_required",
                  "cohort")
        if any(getattr(recorded, name) != getattr(wanted, name) for name in fields):
            raise ReleaseConflictError(
                f"release {wanted.release!r} of study {wanted.study_id!r} was already spent with "
                + ", ".join(f"{name}={getattr(recorded, name)!r}" for name in fields)
                + "; it cannot be spent again with "
                + ", ".join(f"{name}={getattr(wanted, name)!r}" for name in fields)
            )
        return Spend(**(asdict(recorded) | {"already_spent": True}))


@contextmanager
def closing_connection(path: Path, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode (transactions are explicit), WAL, fsync on commit.

    `read_only` opens without any write, for files not yet known to be ledgers.
    """
    try:
        if read_only:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        else:
            conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as error:
        raise LedgerError(f"cannot open budget ledger {str(path)!r}: {error}") from None
    try:
        if not read_only:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        yield conn
    except sqlite3.DatabaseError as error:
        raise LedgerError(f"budget ledger {str(path)!r} failed: {error}") from None
    finally:
        conn.close()


def _check_distributed(epsilon: float, share_epsilon: float | None, honest_required: int | None, cohort: int | None) -> None:
    """A distributed-noise spend names its share's ε (never below the charged ε), t ≥ 2 and n ≥ t; others none."""
    given = [value is not None for value in (share_epsilon, honest_required, cohort)]
    if not any(given):
        return
    if not all(given):
        raise LedgerError("a release with distributed noise records share_epsilon, honest_required and cohort together")
    share = _non_negative("share_epsilon", share_epsilon)
    if share < float(epsilon):
        raise LedgerError(f"share_epsilon {share!r} is below the release's epsilon {epsilon!r}: a share of the noise "
                          "never protects more than the whole")
    if isinstance(honest_required, bool) or not isinstance(honest_required, int) or honest_required < 2:
        raise LedgerError(f"honest_required must be an integer of at least 2, got {honest_required!r}")
    if isinstance(cohort, bool) or not isinstance(cohort, int) or cohort < honest_required:
        raise LedgerError(f"cohort must be an integer of at least honest_required ({honest_required}), got {cohort!r}")


def _non_negative(name: str, value: object) -> float:
    return require_number(name, value, positive=False, error=LedgerError)
