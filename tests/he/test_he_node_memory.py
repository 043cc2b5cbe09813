"""A node's durable memory of encrypted aggregation: one cohort per key, one bundle and one decryption
per (study, round), kept across processes (Flower runs each message in a fresh one)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from federated.client.encryption_memory import EncryptionMemory
from federated.errors import RefusalError

KEY = "f" * 64
COHORT = ["hospital-a", "hospital-b", "hospital-c"]


def _record(memory: EncryptionMemory, *, round: int = 1, cohort=COHORT, study: str = "s", bundle: str = "a" * 64) -> None:
    memory.record_bundle(fingerprint=KEY, study=study, round=round, cohort=list(cohort), bundle_sha256=bundle)


def test_what_one_process_recorded_another_process_refuses(tmp_path):
    path = tmp_path / "trail-he.sqlite"
    code = (f"from federated.client.encryption_memory import EncryptionMemory; "
            f"EncryptionMemory({str(path)!r}).record_bundle(fingerprint={KEY!r}, study='s', round=1, cohort={COHORT!r}, "
            f"bundle_sha256='a' * 64)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with pytest.raises(RefusalError, match="study s round 1: this node already sent its bundle for this round") as refusal:
        _record(EncryptionMemory(path), bundle="b" * 64)
    assert refusal.value.clause == "encryption"
    sent = EncryptionMemory(path).sent_bundle(fingerprint=KEY, study="s", round=1)
    assert sent is not None and sent.cohort == COHORT and sent.bundle_sha256 == "a" * 64


def test_the_first_cohort_under_a_key_is_the_only_one(tmp_path):
    memory = EncryptionMemory(tmp_path / "m.sqlite")
    _record(memory, round=1)
    with pytest.raises(RefusalError, match=r"announces cohort \['hospital-a', 'hospital-b'\], but this study key's cohort is"):
        _record(memory, round=2, cohort=COHORT[:2])
    _record(memory, round=2)  # the same cohort goes on
    with pytest.raises(RefusalError, match="this study key's cohort is"):  # whatever study id the task names
        _record(memory, round=3, cohort=COHORT[:2], study="another-id")


def test_a_refused_bundle_leaves_nothing_recorded(tmp_path):
    memory = EncryptionMemory(tmp_path / "m.sqlite")
    _record(memory, round=1)
    with pytest.raises(RefusalError):
        _record(memory, round=2, cohort=COHORT[1:])
    assert memory.sent_bundle(fingerprint=KEY, study="s", round=2) is None


def test_one_decryption_per_round_even_after_a_restart(tmp_path):
    EncryptionMemory(tmp_path / "m.sqlite").claim_decryption(fingerprint=KEY, study="s", round=1, aggregate_sha256="c" * 64)
    with pytest.raises(RefusalError, match="already decrypted an aggregate of this round"):
        EncryptionMemory(tmp_path / "m.sqlite").claim_decryption(fingerprint=KEY, study="s", round=1, aggregate_sha256="d" * 64)
    EncryptionMemory(tmp_path / "m.sqlite").claim_decryption(fingerprint=KEY, study="s", round=2, aggregate_sha256="d" * 64)
