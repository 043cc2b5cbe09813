"""The seal task and its reply: strict parsing, and hashes both trails agree on."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from federated.errors import MessageError
from federated.messages.common import PartnerInfo, payload_sha256
from federated.messages.seal import (
    SealSpec,
    build_seal_reply,
    build_seal_task,
    parse_seal_reply,
    parse_seal_task,
)


def test_a_seal_task_round_trips_and_its_hash_names_study_rounds_and_status():
    spec = SealSpec(study="demo", rounds=2, status="completed")
    assert parse_seal_task(build_seal_task(spec)) == spec
    others = {SealSpec(study="demo", rounds=3, status="completed").sha256(),
              SealSpec(study="demo", rounds=2, status="failed").sha256(), SealSpec(study="other", rounds=2, status="completed").sha256()}
    assert spec.sha256() not in others and len(others) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (RecordDict({}), "lacks its 'seal' record"),
        (RecordDict({"seal": ConfigRecord({"spec": 7})}), "lacks its 'seal' record"),
        (RecordDict({"seal": ConfigRecord({"spec": '{"study": "s", "rounds": 1}'})}), "status"),
        (RecordDict({"seal": ConfigRecord({"spec": '{"study": "s", "rounds": 1, "status": "done"}'})}), "status"),
        (RecordDict({"seal": ConfigRecord({"spec": '{"study": "s", "rounds": 1, "status": "failed", "data": "x"}'})}), "data"),
        (RecordDict({"seal": ConfigRecord({"spec": "not json"})}), "seal task spec"),
    ],
)
def test_a_malformed_seal_task_is_refused_naming_the_problem(content, message):
    with pytest.raises(MessageError, match=message):
        parse_seal_task(content)


def test_a_seal_task_carrying_arrays_is_refused():
    content = build_seal_task(SealSpec(study="s", rounds=1, status="completed"))
    content["model"] = ArrayRecord({"w": Array.from_numpy_ndarray(np.zeros(3))})
    with pytest.raises(MessageError, match="carries no arrays"):
        parse_seal_task(content)


def test_the_reply_hash_is_the_same_on_both_sides_and_depends_on_the_partner():
    info = PartnerInfo(partner="hospital-a", status="ok")
    reply = parse_seal_reply(build_seal_reply(info))
    assert reply.payload_sha256() == payload_sha256(info)
    assert payload_sha256(PartnerInfo(partner="hospital-b", status="ok")) != reply.payload_sha256()
    with pytest.raises(MessageError, match="lacks its 'info' record"):
        parse_seal_reply(RecordDict({}))
    with pytest.raises(MessageError, match="seal reply info"):
        parse_seal_reply(RecordDict({"info": ConfigRecord({"json": '{"partner": 3}'})}))
