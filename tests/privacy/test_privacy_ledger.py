"""The budget ledger: check-then-spend atomically, persist, survive kills, serialise processes."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from privacy.errors import BudgetExceededError, LedgerError, ReleaseConflictError
from privacy.ledger import BudgetLedger

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "budget.sqlite"


def open_ledger(path: Path, **kwargs) -> BudgetLedger:
    return BudgetLedger(path, **({"max_epsilon_total": 2.0, "max_epsilon_per_study": 1.0} | kwargs))


def run_python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_a_spend_within_the_caps_is_recorded_and_reduces_the_remaining_budget(ledger_path):
    ledger = open_ledger(ledger_path)
    spend = ledger.spend(study_id="s1", release="r1", epsilon=0.25, delta=1e-6)
    assert not spend.already_spent
    assert [s.release for s in ledger.spends()] == ["r1"]
    assert ledger.remaining(study_id="s1") == 0.75
    assert ledger.remaining() == 1.75
    assert ledger.spent() == 0.25


def test_a_spend_over_the_study_cap_is_refused_and_changes_nothing(ledger_path):
    ledger = open_ledger(ledger_path)
    ledger.spend(study_id="s1", release="r1", epsilon=0.6, delta=0.0)
    before = ledger.spends()
    with pytest.raises(BudgetExceededError) as caught:
        ledger.spend(study_id="s1", release="r2", epsilon=0.5, delta=0.0)
    assert caught.value.scope == "study"
    assert ledger.spends() == before
    assert ledger.remaining(study_id="s1") == pytest.approx(0.4)


def test_a_spend_over_the_total_cap_is_refused_even_when_its_study_has_budget(ledger_path):
    ledger = open_ledger(ledger_path)
    ledger.spend(study_id="s1", release="r", epsilon=1.0, delta=0.0)
    ledger.spend(study_id="s2", release="r", epsilon=0.9, delta=0.0)
    with pytest.raises(BudgetExceededError) as caught:
        ledger.spend(study_id="s3", release="r", epsilon=0.2, delta=0.0)
    assert caught.value.scope == "total"
    assert ledger.spent() == pytest.approx(1.9)


def test_the_refusal_states_the_cap_the_request_and_the_remaining_budget(ledger_path):
    ledger = open_ledger(ledger_path)
    ledger.spend(study_id="s1", release="r1", epsilon=0.7, delta=0.0)
    with pytest.raises(BudgetExceededError) as caught:
        ledger.check(study_id="s1", release="round-2", epsilon=0.5)
    message = str(caught.value)
    assert "requests ε=0.5" in message
    assert "cap for study 's1' is ε=1" in message
    assert "remaining budget ε=0.3" in message
    assert (caught.value.cap_epsilon, caught.value.requested_epsilon) == (1.0, 0.5)
    assert caught.value.remaining_epsilon == pytest.approx(0.3)
    assert int(caught.value.exit_code) == 5  # REFUSED


def test_check_refuses_before_any_spend_and_a_passing_check_records_nothing(ledger_path):
    ledger = open_ledger(ledger_path)
    ledger.check(study_id="s1", epsilon=0.9)
    assert ledger.spends() == []
    with pytest.raises(BudgetExceededError):
        ledger.check(study_id="s1", epsilon=1.1)


def test_the_caps_are_met_exactly_not_missed_by_float_rounding(ledger_path):
    ledger = open_ledger(ledger_path, max_epsilon_per_study=1.0)
    for index in range(10):
        ledger.spend(study_id="s1", release=f"r{index}", epsilon=0.1, delta=0.0)
    assert ledger.remaining(study_id="s1") == 0.0
    with pytest.raises(BudgetExceededError):
        ledger.spend(study_id="s1", release="r10", epsilon=1e-12, delta=0.0)


def test_the_reported_sum_never_exceeds_a_cap_even_by_one_rounding_step(ledger_path):
    # six 0.1s sum exactly to 0.6000000000000001 > 0.6, although 0.5 + 0.1 rounds to 0.6
    ledger = open_ledger(ledger_path, max_epsilon_per_study=0.6)
    for index in range(5):
        ledger.spend(study_id="s1", release=f"r{index}", epsilon=0.1, delta=0.0)
    with pytest.raises(BudgetExceededError):
        ledger.spend(study_id="s1", release="r5", epsilon=0.1, delta=0.0)
    assert ledger.spent(study_id="s1") <= 0.6


def test_a_repeated_release_id_is_counted_once_and_reported_as_already_spent(ledger_path):
    records: list[dict] = []
    ledger = open_ledger(ledger_path, on_spend=records.append)
    first = ledger.spend(study_id="s1", release="r1", epsilon=0.3, delta=1e-6, noise_multiplier=1.2)
    again = ledger.spend(study_id="s1", release="r1", epsilon=0.3, delta=1e-6, noise_multiplier=1.2)
    assert again.already_spent and not first.already_spent
    assert again.spent_at == first.spent_at
    assert ledger.spent() == 0.3
    assert len(records) == 1


def test_the_same_release_id_in_another_study_is_another_release(ledger_path):
    ledger = open_ledger(ledger_path)
    ledger.spend(study_id="s1", release="round-1", epsilon=0.3, delta=0.0)
    ledger.spend(study_id="s2", release="round-1", epsilon=0.3, delta=0.0)
    assert ledger.spent() == 0.6


def test_a_repeated_release_id_with_other_numbers_is_a_conflict_and_changes_nothing(ledger_path):
    ledger = open_ledger(ledger_path)
    ledger.spend(study_id="s1", release="r1", epsilon=0.3, delta=1e-6)
    with pytest.raises(ReleaseConflictError, match="already spent with epsilon=0.3"):
        ledger.spend(study_id="s1", release="r1", epsilon=0.1, delta=1e-6)
    assert ledger.spent() == 0.3


def test_spends_persist_across_reopening_and_the_caps_are_stored(ledger_path):
    open_ledger(ledger_path).spend(study_id="s1", release="r1", epsilon=0.5, delta=1e-7, steps=3)
    reopened = BudgetLedger.open_existing(ledger_path)
    assert (reopened.max_epsilon_total, reopened.max_epsilon_per_study) == (2.0, 1.0)
    [spend] = reopened.spends(study_id="s1")
    assert (spend.epsilon, spend.delta, spend.steps) == (0.5, 1e-7, 3)
    assert reopened.remaining() == 1.5


def test_on_spend_runs_after_commit_with_the_record_and_the_totals(ledger_path):
    seen: list[tuple[dict, list]] = []
    def record_with_committed_spends(record: dict) -> None:
        seen.append((record, BudgetLedger.open_existing(ledger_path).spends()))

    ledger = open_ledger(ledger_path, on_spend=record_with_committed_spends)
    ledger.spend(study_id="s1", release="r1", epsilon=0.4, delta=1e-6)
    [(record, committed)] = seen
    assert [s.release for s in committed] == ["r1"]  # another connection already sees it
    assert record["study_id"] == "s1" and record["epsilon"] == 0.4
    assert record["remaining_epsilon_study"] == pytest.approx(0.6)
    assert record["remaining_epsilon_total"] == pytest.approx(1.6)
    json.dumps(record)  # ready for an audit trail


def test_an_on_spend_failure_propagates_but_the_spend_stands(ledger_path):
    def failing(record: dict) -> None:
        raise OSError("audit trail disk full")

    ledger = open_ledger(ledger_path, on_spend=failing)
    with pytest.raises(OSError, match="disk full"):
        ledger.spend(study_id="s1", release="r1", epsilon=0.4, delta=0.0)
    assert ledger.spent() == 0.4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epsilon": -0.1}, "epsilon"),
        ({"epsilon": math.inf}, "epsilon"),
        ({"delta": 1.0}, "delta"),
        ({"study_id": ""}, "study_id"),
        ({"release": None}, "release"),
    ],
)
def test_a_malformed_spend_is_rejected_naming_the_field(ledger_path, kwargs, field):
    ledger = open_ledger(ledger_path)
    with pytest.raises(LedgerError, match=field):
        ledger.spend(**({"study_id": "s1", "release": "r1", "epsilon": 0.1, "delta": 0.0} | kwargs))
    assert ledger.spends() == []


def test_caps_must_be_finite_and_non_negative(ledger_path):
    with pytest.raises(LedgerError, match="max_epsilon_total"):
        BudgetLedger(ledger_path, max_epsilon_total=-1.0, max_epsilon_per_study=1.0)
    with pytest.raises(LedgerError, match="max_epsilon_per_study"):
        BudgetLedger(ledger_path, max_epsilon_total=1.0, max_epsilon_per_study=math.nan)


def test_a_file_that_is_not_a_ledger_is_refused(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"certainly not SQLite" * 100)
    with pytest.raises(LedgerError, match="junk.sqlite"):
        BudgetLedger(junk, max_epsilon_total=1.0, max_epsilon_per_study=1.0)
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    with pytest.raises(LedgerError, match="not an Accord budget ledger"):
        BudgetLedger.open_existing(empty)
    assert empty.read_bytes() == b""  # opening to look is not allowed to write
    with pytest.raises(LedgerError, match="no budget ledger"):
        BudgetLedger.open_existing(tmp_path / "missing.sqlite")


def test_a_ledger_of_another_schema_version_is_refused(ledger_path):
    open_ledger(ledger_path)
    with sqlite3.connect(ledger_path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LedgerError, match="schema version 99"):
        open_ledger(ledger_path)
    with pytest.raises(LedgerError, match="schema version 99"):
        BudgetLedger.open_existing(ledger_path)


def test_the_refusal_survives_pickling_with_its_numbers():
    error = BudgetExceededError(
        scope="total", study_id="s", release="r", requested_epsilon=0.5,
        cap_epsilon=1.0, spent_epsilon=0.8, remaining_epsilon=0.2,
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.remaining_epsilon, copy.scope) == (str(error), 0.2, "total")


KILLED_MID_SPEND = """
    import sys, time
    from privacy.ledger.budget import BudgetLedger

    original = BudgetLedger._insert

    def insert_then_hang(self, conn, spend):
        original(self, conn, spend)  # the row is written, the transaction is still open
        print("INSIDE", flush=True)
        time.sleep(600)

    BudgetLedger._insert = insert_then_hang
    ledger = BudgetLedger(sys.argv[1], max_epsilon_total=2.0, max_epsilon_per_study=1.0)
    ledger.spend(study_id="s1", release="killed", epsilon=0.5, delta=0.0)
"""


def test_a_process_killed_in_the_middle_of_a_spend_leaves_nothing_behind(ledger_path):
    ledger = open_ledger(ledger_path)
    ledger.spend(study_id="s1", release="before", epsilon=0.3, delta=0.0)
    child = run_python(KILLED_MID_SPEND, str(ledger_path))
    try:
        assert child.stdout.readline().strip() == "INSIDE"
        assert ledger.spent() == 0.3  # readers never see the open transaction
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    reopened = open_ledger(ledger_path)
    assert [s.release for s in reopened.spends()] == ["before"]
    started = time.monotonic()
    reopened.spend(study_id="s1", release="killed", epsilon=0.5, delta=0.0)  # the lock died with it
    assert time.monotonic() - started < 5
    assert reopened.spent(study_id="s1") == pytest.approx(0.8)
    with sqlite3.connect(ledger_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


SPENDER = """
    import json, sys, time
    from pathlib import Path
    from privacy.errors import BudgetExceededError
    from privacy.ledger import BudgetLedger

    path, go, worker = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    ledger = BudgetLedger(path, max_epsilon_total=1.0, max_epsilon_per_study=0.6)
    while not go.exists():
        time.sleep(0.005)
    for attempt in range(6):
        study = f"s{attempt % 2}"
        try:
            ledger.spend(study_id=study, release=f"{worker}-{attempt}", epsilon=0.1, delta=0.0)
            print(json.dumps({"spent": study}), flush=True)
        except BudgetExceededError as error:
            print(json.dumps({"refused": error.scope}), flush=True)
"""


def test_processes_spending_at_once_never_exceed_the_caps(ledger_path, tmp_path):
    open_ledger(ledger_path, max_epsilon_total=1.0, max_epsilon_per_study=0.6)
    go = tmp_path / "go"
    workers = [run_python(SPENDER, str(ledger_path), str(go), f"w{index}") for index in range(4)]
    time.sleep(0.5)
    go.touch()
    outcomes = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        outcomes += [json.loads(line) for line in out.splitlines()]
    assert len(outcomes) == 24
    assert sum("spent" in outcome for outcome in outcomes) == 10
    ledger = BudgetLedger.open_existing(ledger_path)
    assert len(ledger.spends()) == 10
    assert ledger.spent() <= 1.0
    assert all(ledger.spent(study_id=study) <= 0.6 for study in ("s0", "s1"))
