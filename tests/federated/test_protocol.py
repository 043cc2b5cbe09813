"""Task and reply messages: round trips, and precise refusals of anything malformed."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, RecordDict

from accord.hashing import sha256_bytes
from federated.errors import MessageError
from federated.evaluation.statistics import compute_statistics
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import (
    ModelRef,
    TaskSpec,
    build_reply,
    build_task,
    parse_reply,
    parse_task,
)
from federated.study import EvaluationSettings

MODEL = b"onnx bytes"


def _spec(**changes) -> TaskSpec:
    fields = dict(
        study="s", round=1, study_sha256="a" * 64,
        models=[ModelRef(name="m", sha256=sha256_bytes(MODEL), output="probabilities")],
        evaluation=EvaluationSettings(score_bins=10, calibration_bins=5),
    )
    return TaskSpec(**(fields | changes))


def test_task_round_trip():
    task = parse_task(build_task(_spec(), {"m": MODEL}))
    assert task.model_bytes == {"m": MODEL}
    assert task.sha256 == _spec().sha256()


def test_model_bytes_must_match_their_hash():
    with pytest.raises(MessageError, match="'m' hashes to .* the task declares"):
        parse_task(build_task(_spec(), {"m": MODEL + b"tampered"}))


def test_missing_model_bytes_are_named():
    with pytest.raises(MessageError, match="no bytes for model 'm'"):
        parse_task(build_task(_spec(), {}))


def test_unknown_spec_field_is_refused():
    content = build_task(_spec(), {"m": MODEL})
    content.config_records["task"]["spec"] = content.config_records["task"]["spec"][:-1] + ',"extra":1}'
    with pytest.raises(MessageError, match="task spec: extra: unknown field"):
        parse_task(content)


def test_truncated_spec_is_refused():
    content = build_task(_spec(), {"m": MODEL})
    content.config_records["task"]["spec"] = content.config_records["task"]["spec"][:40]
    with pytest.raises(MessageError, match="task spec"):
        parse_task(content)


def test_message_without_task_record():
    with pytest.raises(MessageError, match="lacks 'task'"):
        parse_task(RecordDict({"models": ConfigRecord({})}))


def _stats(spec: TaskSpec):
    return compute_statistics(np.array([[0.3, 0.7], [0.8, 0.2]]), np.array([1, 0]), None, spec.layout())


def test_reply_round_trip():
    spec = _spec()
    info = PartnerInfo(partner="p", status="ok", count=2)
    reply = parse_reply(build_reply(info, {"m": _stats(spec)}), spec)
    assert reply.info.partner == "p"
    np.testing.assert_array_equal(reply.statistics["m"]["confusion"], _stats(spec)["confusion"])


def test_reply_with_wrong_layout_is_refused():
    spec = _spec()
    other = _spec(evaluation=EvaluationSettings(score_bins=20, calibration_bins=5))
    content = build_reply(PartnerInfo(partner="p", status="ok"), {"m": _stats(other)})
    with pytest.raises(MessageError, match="from 'p', model 'm': .*hist_pos.*shape"):
        parse_reply(content, spec)


def test_reply_missing_statistics_is_refused():
    with pytest.raises(MessageError, match="lacks statistics for model 'm'"):
        parse_reply(build_reply(PartnerInfo(partner="p", status="ok"), {}), _spec())


def test_reply_info_that_is_not_json_text_is_refused():
    content = build_reply(PartnerInfo(partner="p", status="ok"), {})
    content["info"] = ConfigRecord({"json": 5})
    with pytest.raises(MessageError, match="reply info must be a JSON string"):
        parse_reply(content, _spec())


def test_refusal_reply_carries_clause_and_reason():
    reply = parse_reply(build_reply(PartnerInfo(partner="p", status="refused", clause="data", reason="why"), {}), _spec())
    assert (reply.info.clause, reply.info.reason, reply.statistics) == ("data", "why", {})
