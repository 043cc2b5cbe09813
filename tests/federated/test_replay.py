"""The partner's replay cache: a verified nonce is admitted once, ever, and a task without one is refused."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from crypto import Identity, NoteVerifier, SignatureError
from federated.client.errors import ReplayRefusal
from federated.client.replay import ReplayCache, task_nonce
from federated.messages.audit_exchange import TaskAudit, attach, sign_task, verify_task
from federated.messages.evaluation import build_task
from tests.audit.conftest import MODEL, task_spec

SHA = "a" * 64


def test_a_nonce_is_admitted_once_and_then_refused_as_a_replay(tmp_path):
    cache = ReplayCache.beside(tmp_path / "trail.jsonl")
    nonce = secrets.token_hex(16)
    cache.check(nonce)
    cache.admit(nonce, task_sha256=SHA, study="s1", round=1)
    with pytest.raises(ReplayRefusal, match=f"replayed task: nonce {nonce} was already accepted .* \\(study s1, round 1"):
        cache.check(nonce)
    with pytest.raises(ReplayRefusal, match="replayed task"):
        cache.admit(nonce, task_sha256=SHA, study="s1", round=1)
    assert cache.path == tmp_path / "trail-replay.sqlite"


def test_the_cache_outlives_the_process_that_wrote_it(tmp_path):
    nonce = secrets.token_hex(16)
    ReplayCache(tmp_path / "replay.sqlite").admit(nonce, task_sha256=SHA)
    with pytest.raises(ReplayRefusal):
        ReplayCache(tmp_path / "replay.sqlite").check(nonce)


def test_a_task_without_a_nonce_is_refused(tmp_path):
    with pytest.raises(ReplayRefusal, match="carries no nonce") as refused:
        ReplayCache(tmp_path / "replay.sqlite").admit("", task_sha256=SHA)
    assert refused.value.clause == "replay"


def test_of_two_copies_arriving_at_once_exactly_one_is_admitted(tmp_path):
    nonce = secrets.token_hex(16)

    def deliver(_: int) -> bool:
        try:
            ReplayCache(tmp_path / "replay.sqlite").admit(nonce, task_sha256=SHA)
        except ReplayRefusal:
            return False
        return True

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert sorted(pool.map(deliver, range(4))) == [False, False, False, True]


def test_the_task_signature_covers_the_nonce():
    identity = Identity.generate()
    verifier = NoteVerifier("accord.coordinator/s1", identity.public_key)
    nonce = secrets.token_hex(16)
    signature = sign_task(identity, SHA, nonce)
    verify_task(verifier, SHA, signature, nonce)
    for other_sha, other_nonce in ((SHA, secrets.token_hex(16)), (SHA, ""), ("b" * 64, nonce)):
        with pytest.raises(SignatureError):
            verify_task(verifier, other_sha, signature, other_nonce)
    content = build_task(task_spec(1), {"m": MODEL})
    attach(content, TaskAudit(coordinator=verifier.to_vkey(), task_signature=signature, checkpoint="", nonce=nonce))
    assert task_nonce(content) == nonce
