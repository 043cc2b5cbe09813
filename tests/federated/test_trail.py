"""The hash-chained trail: appends chain and persist; any damage is found and located."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from federated.audit import AuditTrail, TrailError, read_entries, verify_trail


def _trail(tmp_path: Path, entries: int = 5) -> Path:
    trail = AuditTrail(tmp_path / "trail.jsonl", actor="coordinator")
    for index in range(entries):
        trail.append("task_sent", study="s", round=1, node=str(index), task_sha256="ab" * 32)
    return trail.path


def test_entries_chain_to_their_predecessor(tmp_path):
    path = _trail(tmp_path)
    entries = read_entries(path)
    assert [e["seq"] for e in entries] == list(range(6))
    assert entries[0]["kind"] == "trail_opened" and entries[0]["prev"] == "0" * 64
    assert verify_trail(path) == 6


def test_reopening_continues_the_chain(tmp_path):
    path = _trail(tmp_path)
    AuditTrail(path, actor="coordinator").append("study_completed", study="s")
    assert verify_trail(path) == 7


def test_flipped_bit_is_located(tmp_path):
    path = _trail(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"node":"1"', b'"node":"7"')
    path.write_bytes(b"".join(lines))
    with pytest.raises(TrailError, match="line 4: chain broken"):
        verify_trail(path)


def test_deleted_middle_entry_is_found(tmp_path):
    path = _trail(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + lines[3:]))
    with pytest.raises(TrailError, match="line 3: sequence number 3, expected 2"):
        verify_trail(path)


def test_swapped_entries_are_found(tmp_path):
    path = _trail(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_bytes(b"".join(lines))
    with pytest.raises(TrailError, match="line 3"):
        verify_trail(path)


def test_non_canonical_entry_is_refused(tmp_path):
    path = _trail(tmp_path, entries=1)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = json.dumps(json.loads(lines[1]), indent=None).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(TrailError, match="line 2: not canonical JSON"):
        verify_trail(path)


def test_torn_tail_is_repaired_and_the_repair_logged(tmp_path):
    path = _trail(tmp_path)
    torn = b'{"v":1,"seq":6,"kind":"task_se'
    with open(path, "ab") as handle:
        handle.write(torn)
    with pytest.raises(TrailError, match="torn"):
        verify_trail(path)
    AuditTrail(path, actor="coordinator")
    entries = read_entries(path)
    assert entries[-1]["kind"] == "trail_repaired"
    assert entries[-1]["details"]["bytes_dropped"] == len(torn)
    assert len(entries) == 7


def test_unknown_event_kind_is_refused(tmp_path):
    trail = AuditTrail(tmp_path / "t.jsonl", actor="a")
    with pytest.raises(ValueError, match="unknown audit event kind"):
        trail.append("coffee_break")


def test_nan_details_are_refused_and_nothing_written(tmp_path):
    trail = AuditTrail(tmp_path / "t.jsonl", actor="a")
    before = trail.path.read_bytes()
    with pytest.raises(TrailError, match="not canonical JSON"):
        trail.append("round_completed", study="s", duration_s=float("nan"))
    assert trail.path.read_bytes() == before


def _append_many(path: str, worker: int) -> None:
    trail = AuditTrail(Path(path), actor=f"w{worker}")
    for index in range(25):
        trail.append("task_sent", study="s", node=f"{worker}-{index}")


def test_concurrent_processes_keep_one_chain(tmp_path):
    path = tmp_path / "shared.jsonl"
    AuditTrail(path, actor="setup")
    workers = [multiprocessing.Process(target=_append_many, args=(str(path), w)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert verify_trail(path) == 1 + 4 * 25
