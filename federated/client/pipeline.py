"""The steps every task takes on a partner's node, in the order that protects the data.

1. parse and validate the message; 2. check the coordinator's signatures and checkpoint, and
refuse a replayed task (its nonce seen before: `federated.client.replay`);
3. log the task, and load the study's HE secret context if the task is encrypted (refused
without it, or under another key: `federated.client.encryption`); 4. admit the task in the
node's study state (`federated.client.study_state`): one task per (study, kind, round), rounds
only forward, never a sealed study; a seal task seals the study there; 5. load and check the
data (an evaluation only counts its records here); 6. check the contract and the privacy budget
(refuse before running anything on the data); 7. run the task (an evaluation reads the file in
one streaming pass that checks every value and, at its end, the hash and the count step 6 used:
a mismatch is a "data" refusal and nothing computed in the pass leaves; training loads the file
whole in 5); 8. spend the budget under the release id the node assigned and log what
leaves; 9. reply. A decryption or seal task touches no data: it skips 5, 6 and 8.

Every failure is a structured refusal, logged, returned to the coordinator, and the node keeps
serving. What a refusal tells is ruled by `federated.client.refusals`: once the data is in use,
a fixed sentence per clause (the detail goes to the node's local log only). A data-dependent
failure is counted against its study (after `MAX_FAILED_TASKS_PER_STUDY` the node refuses the
rest of the study) and, when running the task on the data failed, charged to the ledger exactly
as the release it replaced: a failing model costs what a working one costs.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import TYPE_CHECKING, Any

from flwr.app import Context, Message

from accord.errors import AccordError
from accord.hashing import sha256_file
from federated.audit import AuditTrail
from federated.audit.partner_audit import PartnerAudit
from federated.client.contract_gate import (
    charge,
    check_budget,
    distributed_cost,
    enforce_contract,
    noise_shares,
    open_ledger,
    suppression,
)
from federated.client.costs import TaskCost
from federated.client.data import (
    DataManifest,
    PartnerData,
    PartnerFile,
    load_manifest,
    load_partner_data,
    open_partner_file,
)
from federated.client.refusals import NodeLog, data_dependent, public_reason
from federated.client.replay import ReplayCache, task_nonce
from federated.client.settings import NodeSettings
from federated.client.study_state import Admission, StudyState
from federated.client.snapshots import monitoring_periods, snapshot_source
from federated.client.task_kind import NodeKeys, TaskKind, task_purpose
from federated.errors import FederatedError, MessageError, RefusalError
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import build_reply
from federated.messages.seal import SEAL_MESSAGE_TYPE
from privacy import BudgetLedger, PrivacyError

if TYPE_CHECKING:
    from crypto.he_keys import SecretContext


def _ledger(settings: NodeSettings, trail: AuditTrail, where: dict[str, Any]) -> BudgetLedger:
    return open_ledger(
        settings.ledger_path, max_epsilon_total=settings.max_epsilon_total, max_epsilon_per_study=settings.max_epsilon_per_study,
        on_spend=lambda record: trail.append("privacy_spent", **{k: v for k, v in record.items() if k != "study_id"}, **where),
    )


def _numbered(cost: TaskCost, admission: Admission | None) -> TaskCost:
    """The cost with its ledger release id from the node's own sequence (never the coordinator's round)."""
    if cost.private is None or admission is None:
        return cost
    what = cost.private.release.split("/", 1)[-1]
    return dataclasses.replace(cost, private=dataclasses.replace(cost.private, release=admission.release(what)))


def _study_key(settings: NodeSettings, fingerprint: str | None) -> SecretContext | None:
    if fingerprint is None:
        return None
    from federated.client.encryption import (
        study_key,  # TenSEAL only for encrypted tasks
    )

    return study_key(settings, fingerprint)


def _admit(state: StudyState, message_type: str, task: Any, where: dict[str, Any], task_sha256: str) -> Admission | None:
    """Take the task's slot in the node's study state (a seal seals the study); `RefusalError` if it has none."""
    if message_type == SEAL_MESSAGE_TYPE:
        state.seal(study=where["study"], status=task.status)
        return None
    if not isinstance(where.get("round"), int):
        raise MessageError(f"a {message_type} task must name its round")
    return state.admit(study=where["study"], kind=message_type, round=where["round"], task_sha256=task_sha256)


def serve(kind: TaskKind[Any], message: Message, context: Context) -> Message:
    """Run one task through the steps above; always returns a reply (result or refusal)."""
    settings = NodeSettings.from_context(dict(context.node_config), dict(context.run_config))
    trail = AuditTrail(settings.trail, actor=settings.partner_id)
    audit = PartnerAudit.for_node(trail=settings.trail, key_path=settings.key_path, partner_id=settings.partner_id,
                                  coordinator_key=settings.coordinator_key)
    node_log, state = NodeLog.beside(settings.trail), StudyState.beside(settings.trail)
    message_type = kind.message_type
    where: dict[str, Any] = {}

    def refuse(clause: str, detail: str, *, data_in_use: bool = False, **details: Any) -> Message:
        reason = public_reason(clause, detail, data_in_use=data_in_use)
        node_log.write(time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       message_type=message_type, clause=clause, reason=reason, detail=detail, **where)
        trail.append("task_refused", clause=clause, reason=reason, **details, **where)
        info = PartnerInfo(partner=settings.partner_id, status="refused", clause=clause, reason=reason)
        return Message(audit.attach_reply_audit(build_reply(info, {})), reply_to=message)

    try:
        task = kind.parse(message.content)
    except MessageError as exc:
        return refuse("message", str(exc))
    where = kind.where(task)
    task_sha256 = kind.task_sha256(task)
    try:
        replays, nonce = ReplayCache.beside(settings.trail), task_nonce(message.content)
        replays.check(nonce)  # a replay is named as such, even if its old checkpoint fails the audit too
        checked = audit.check_task(message.content, task_sha256)
        replays.admit(nonce, task_sha256=task_sha256, **where)  # only once the signature over it verified
    except RefusalError as exc:  # a replay, or the coordinator's signatures and checkpoint do not check out
        return refuse(exc.clause, str(exc), task_sha256=task_sha256)
    fingerprint = kind.encryption(task)
    he: dict[str, Any] = {"he_fingerprint": fingerprint} if fingerprint else {}
    trail.append("task_received", task_sha256=task_sha256, **kind.received(task), **checked, **where, **he)
    try:
        keys = NodeKeys(audit.identity, _study_key(settings, fingerprint))
        admission = _admit(state, message_type, task, where, task_sha256)
    except RefusalError as exc:
        return refuse(exc.clause, str(exc))
    except MessageError as exc:
        return refuse("message", str(exc))
    data: PartnerData | PartnerFile | None = None
    ledger, cost = None, None

    def failed(clause: str, detail: str, *, ran: bool) -> Message:
        """A refusal once the data is in use: counted against the study, and charged when the task ran on it."""
        if data_dependent(clause, data_in_use=True):
            state.record_failure(study=where["study"])
            if ran and ledger is not None and cost is not None and cost.private is not None:
                try:
                    charge(_ledger(settings, trail, where | {"outcome": "task_failed"}), cost, study=where["study"])
                except PrivacyError as exc:  # the budget no longer pays: the failure is still counted above
                    node_log.write(clause="privacy", detail=f"the failed task could not be charged: {exc}", **where)
        return refuse(clause, detail, data_in_use=True)

    info = PartnerInfo(partner=settings.partner_id, status="ok")
    try:
        if kind.uses_data:
            manifest: DataManifest = load_manifest(settings.manifest)
            # A monitoring period may read a snapshot the manifest declares (its own file and SHA-256).
            data_path, data_manifest = snapshot_source(task.spec, settings.data, settings.manifest, manifest)
            # A streaming kind gets the file and its pre-pass count; the task's own pass checks values, hash and count.
            data = (open_partner_file if kind.streams else load_partner_data)(data_path, data_manifest)
    except RefusalError as exc:  # no such snapshot declared
        return refuse(exc.clause, str(exc), data_in_use=True)
    except FederatedError as exc:
        return refuse("data", str(exc), data_in_use=True)
    try:
        if data is not None:
            cost = _numbered(kind.cost(task.spec, data.size), admission)
            settings, contract = enforce_contract(
                settings, purpose=task_purpose(kind, task.spec), spec=task.spec, cost=cost,
                data_sha256=manifest.sha256,  # the data file the contract governs (a snapshot's own hash is checked as it is read)
                coordinator_key=checked.get("coordinator_key"), records=data.size,
                periods=monitoring_periods(state, where["study"], task.spec),
            )
            keys = dataclasses.replace(keys, suppression=suppression(contract))  # exact releases: small cells zeroed
            shares = noise_shares(contract, purpose=task_purpose(kind, task.spec), spec=task.spec, cost=cost,
                                  coordinator_key=checked.get("coordinator_key"))
            if shares > 1:  # distributed noise (the contract opted in): a share, recorded beside the charged ε
                keys, cost = dataclasses.replace(keys, noise_shares=shares), distributed_cost(cost, task.spec, shares=shares)
            ledger = check_budget(
                cost, study=where["study"], max_epsilon_total=settings.max_epsilon_total,
                max_epsilon_per_study=settings.max_epsilon_per_study,
                unprotected_allowed=contract is not None and not contract.protections.require_dp,
                ledger=lambda: _ledger(settings, trail, where),
            )
            release = contract.release_per_partner if contract is not None else manifest.release_per_partner
            info = PartnerInfo(
                partner=settings.partner_id, status="ok", release_per_partner=release,
                data_sha256=data.data_sha256, manifest_sha256=sha256_file(settings.manifest), count=data.size,
            )
        if settings.contract is not None and info.data_sha256:
            info = info.model_copy(update={"contract_sha256": sha256_file(settings.contract)})
    except RefusalError as exc:
        return failed(exc.clause, str(exc), ran=False)
    except Exception as exc:  # a bug: still answered, with nothing of its text
        return failed("internal", f"{type(exc).__name__}: {exc}", ran=False)
    # The record count is logged only where the reply releases it (a DP release withholds it).
    count = info.count if cost is None or cost.private is None else None
    bound: dict[str, Any] = {"contract_sha256": info.contract_sha256} if info.contract_sha256 else {}
    trail.append("task_accepted", data_sha256=info.data_sha256, manifest_sha256=info.manifest_sha256,
                 count=count, **bound, **where)
    try:
        content, details = kind.run(task, data, info, keys)
    except Exception as exc:  # a refusal, an error of ours, or a bug: answered all the same
        clause = exc.clause if isinstance(exc, RefusalError) else "task" if isinstance(exc, AccordError) else "internal"
        detail = str(exc) if isinstance(exc, AccordError) else f"{type(exc).__name__}: {exc}"
        if data is None:  # decryption or seal: no data of this partner in use
            return refuse(clause, detail)
        return failed(clause, detail, ran=True)
    if ledger is not None and cost is not None and cost.private is not None:
        try:
            charge(ledger, cost, study=where["study"])
        except PrivacyError as exc:  # another process spent in between, or the release id clashes: release nothing
            return failed("privacy", str(exc), ran=False)
    trail.append("result_sent", **details, **where)
    return Message(audit.attach_reply_audit(content), reply_to=message)
