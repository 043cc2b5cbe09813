"""Operating a study (issue 15): runs that never overwrite each other, and a node that says what it did."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.e2e.conftest import write_study


def _eventually(path: Path, text: str, timeout_s: float = 30) -> str:
    """The file's text once it holds `text` (or as it is after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and text not in (path.read_text(errors="replace") if path.is_file() else ""):
        time.sleep(0.3)
    return path.read_text(errors="replace") if path.is_file() else ""


def test_a_study_run_then_a_failed_rerun_leave_two_run_folders_and_nodes_say_what_they_did(tmp_path, hospitals, partners, federation):
    study = write_study(tmp_path, hospitals, expected_partners=2)
    federation.start_coordinator(study, log=tmp_path / "coordinator.log")
    for partner in partners[:2]:
        federation.start_partner(partner)
    assert federation.coordinator.wait(timeout=240) == 0, (tmp_path / "coordinator.log").read_text()[-3000:]
    said = (tmp_path / "coordinator.log").read_text()
    assert "cohort ready: 2 of 2 expected partner nodes connected" in said
    assert "round 1 done" in said and "logreg: accuracy" in said  # the round's pooled metrics, as it ends

    node = _eventually(tmp_path / "nodes" / "hospital-a" / "node.log", "idle, waiting for the next study")
    assert "study e2e, round 1: accepted, result sent; no ε spent" in node
    assert "study e2e: sealed" in node and "idle, waiting for the next study" in node
    assert "\x1b[" not in node  # no colour codes off a TTY
    assert "Connection attempt failed" not in node and "INFO" not in node  # Flower's lines go to flower.log
    assert (tmp_path / "nodes" / "hospital-a" / "flower.log").stat().st_size > 0

    out = tmp_path / "out"
    (first,) = (out / "runs").iterdir()
    assert (out / "latest").resolve() == first.resolve()
    first_results = (first / "results.json").read_text()

    # A rerun that fails (no partner left to join) gets a folder of its own; the first run's files stay as they were.
    rerun = write_study(tmp_path, hospitals, cohort_timeout_s=3)
    federation.start_coordinator(rerun, log=tmp_path / "rerun.log")
    assert federation.coordinator.wait(timeout=120) == 4
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 2 and runs[0] == first
    assert (out / "latest").resolve() == runs[1].resolve()
    assert (first / "results.json").read_text() == first_results
    assert json.loads((runs[1] / "results.json").read_text())["status"] == "cohort_too_small"
    assert not (runs[1] / "coordinator.key").exists() and (out / "coordinator.key").is_file()  # one key, beside the runs
