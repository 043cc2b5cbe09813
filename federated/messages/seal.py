"""The study's closing exchange: every partner cosigns the coordinator's final checkpoint.

Partners cosign the coordinator's checkpoint that each task carries, so without a last contact
the entries of the final round (results, aggregates, report, completion) would be protected by
the coordinator's signature alone. When a study ends, completed or not, the coordinator sends
each connected node a seal task (`query.seal`): no data and no model, only the study id, its
status and the usual audit record (the signed checkpoint covering the whole study, proofs, a
nonce). The partner checks it like any task — coordinator key, consistency with what it
cosigned before, replay — cosigns, and answers with its own countersignable checkpoint. A
partner that does not answer is logged `partner_missing`; the study's outcome does not change.

This module must never let a seal task reach a partner's data.
"""

from __future__ import annotations

from typing import Literal

from flwr.app import ConfigRecord, RecordDict
from pydantic import ValidationError

from accord.config_files import describe_validation_error
from accord.models import Strict
from federated.errors import MessageError
from federated.messages.common import PartnerInfo, SignedSpec, payload_sha256
from federated.messages.evaluation import build_reply

SEAL_MESSAGE_TYPE = "query.seal"
_RECORD = "seal"


class SealSpec(SignedSpec):
    """What a seal task says: which study ended, after how many rounds, and how."""

    study: str
    rounds: int
    status: Literal["completed", "failed"]



class SealReply(Strict):
    """A partner's answer to a seal task: who it is (its cosignature rides in the audit record)."""

    info: PartnerInfo

    def payload_sha256(self) -> str:
        return payload_sha256(self.info)



def build_seal_task(spec: SealSpec) -> RecordDict:
    return RecordDict({_RECORD: ConfigRecord({"spec": spec.canonical().decode("utf-8")})})


def parse_seal_task(content: RecordDict) -> SealSpec:
    """Validate a seal task; `MessageError` names what is wrong."""
    record = content.config_records.get(_RECORD)
    text = record.get("spec") if record is not None else None
    if not isinstance(text, str):
        raise MessageError("seal task lacks its 'seal' record with a JSON 'spec'")
    if len(content.array_records):
        raise MessageError("a seal task carries no arrays")
    try:
        return SealSpec.model_validate_json(text)
    except ValidationError as exc:
        raise MessageError(describe_validation_error("seal task spec", exc)) from None


def build_seal_reply(info: PartnerInfo) -> RecordDict:
    return build_reply(info, {})


def parse_seal_reply(content: RecordDict) -> SealReply:
    try:
        text = content.config_records["info"]["json"]
    except KeyError:
        raise MessageError("seal reply lacks its 'info' record") from None
    if not isinstance(text, str):
        raise MessageError("seal reply info must be a JSON string")
    try:
        return SealReply(info=PartnerInfo.model_validate_json(text))
    except ValidationError as exc:
        raise MessageError(describe_validation_error("seal reply info", exc)) from None
