"""`python -m privacy.ledger show`: the README's example, tables for people, JSON for machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The README's example (section "Privacy budget ledger"), run as written from a scratch directory.
README_PYTHON = """
from privacy import BudgetLedger, gaussian_sigma

ledger = BudgetLedger("partner-a/budget.sqlite", max_epsilon_total=10.0, max_epsilon_per_study=3.0)
sigma = gaussian_sigma(epsilon=0.5, delta=1e-6, l2_sensitivity=1.0)  # noise for one statistic
ledger.spend(study_id="sepsis-eval", release="round-1/metrics", epsilon=0.5, delta=1e-6,
             noise_multiplier=sigma, sample_rate=1.0, steps=1)
ledger.spend(study_id="sepsis-train", release="round-1/dpsgd", epsilon=1.8, delta=1e-6,
             noise_multiplier=1.1, sample_rate=0.01, steps=500)
print(ledger.remaining(study_id="sepsis-eval"))
"""
README_SHOW = ["-m", "privacy.ledger", "show", "partner-a/budget.sqlite"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    environment = os.environ | {"PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "partner-a").mkdir()
    created = run(["-c", README_PYTHON], cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert float(created.stdout) == 2.5
    return tmp_path


def test_show_json_lists_each_study_and_release_with_the_remaining_budget(scratch):
    shown = run([*README_SHOW, "--json"], cwd=scratch)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary["max_epsilon_total"] == 10.0 and summary["max_epsilon_per_study"] == 3.0
    assert summary["spent_epsilon_total"] == pytest.approx(2.3)
    assert summary["remaining_epsilon_total"] == pytest.approx(7.7)
    studies = {study["study_id"]: study for study in summary["studies"]}
    assert studies["sepsis-eval"]["remaining_epsilon"] == pytest.approx(2.5)
    assert studies["sepsis-train"]["remaining_epsilon"] == pytest.approx(1.2)
    [release] = studies["sepsis-train"]["releases"]
    assert (release["release"], release["epsilon"], release["steps"]) == ("round-1/dpsgd", 1.8, 500)


def test_show_prints_tables_for_people(scratch):
    shown = run(README_SHOW, cwd=scratch)
    assert shown.returncode == 0, shown.stderr
    expected = ("sepsis-eval", "round-1/metrics", "round-1/dpsgd", "remaining ε", "total (all studies)", "7.7")
    for text in expected:
        assert text in shown.stdout


def test_show_only_reads_the_ledger(scratch):
    before = run([*README_SHOW, "--json"], cwd=scratch).stdout
    run(README_SHOW, cwd=scratch)
    assert run([*README_SHOW, "--json"], cwd=scratch).stdout == before


def test_show_of_a_missing_ledger_exits_3_naming_the_file(tmp_path):
    shown = run(["-m", "privacy.ledger", "show", "nowhere.sqlite"], cwd=tmp_path)
    assert shown.returncode == 3
    assert "nowhere.sqlite" in shown.stderr
    assert not (tmp_path / "nowhere.sqlite").exists()


def test_show_without_a_ledger_is_a_usage_error(tmp_path):
    assert run(["-m", "privacy.ledger", "show"], cwd=tmp_path).returncode == 2


def test_the_deprecated_ledger_option_still_works_and_says_so(scratch):
    shown = run(["-m", "privacy.ledger", "show", "--ledger", "partner-a/budget.sqlite", "--json"], cwd=scratch)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(run([*README_SHOW, "--json"], cwd=scratch).stdout)
    assert "--ledger FILE is deprecated" in shown.stderr


def test_show_never_cuts_a_long_study_id_short(tmp_path):
    from privacy import BudgetLedger

    study = "a-study-id-long-enough-that-a-table-at-80-columns-would-cut-it-" + "x" * 40
    ledger = BudgetLedger(tmp_path / "budget.sqlite", max_epsilon_total=10.0, max_epsilon_per_study=3.0)
    ledger.spend(study_id=study, release="round-1/metrics", epsilon=0.5, delta=1e-6)
    shown = run(["-m", "privacy.ledger", "show", "budget.sqlite"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert study in shown.stdout
