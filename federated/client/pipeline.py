"""The steps every task takes on a partner's node, in the order that protects the data.

1. parse and validate the message; 2. check the coordinator's signatures and checkpoint, and
refuse a replayed task (its nonce seen before: `federated.client.replay`);
3. log the task, and load the study's HE secret context if the task is encrypted (refused
without it, or under another key: `federated.client.encryption`); 4. check the privacy budget
(refuse before touching data); 5. load and check the data; 6. run the task; 7. spend the budget
and log what leaves; 8. reply. A decryption or seal task touches no data: it skips 4, 5 and 7.
Any failure is a structured refusal, logged, returned to the coordinator; nothing is spent
for a refused task, and the node keeps serving.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TypeVar

from flwr.app import Context, Message

from accord.errors import AccordError
from accord.hashing import sha256_file
from federated.audit import AuditTrail
from federated.audit.partner_audit import PartnerAudit
from federated.client.contract_gate import enforce_contract
from federated.client.costs import TaskCost
from federated.client.data import DataManifest, load_manifest, load_partner_data
from federated.client.replay import ReplayCache, task_nonce
from federated.client.settings import NodeSettings
from federated.client.task_kind import NodeKeys, TaskKind
from federated.errors import FederatedError, MessageError, RefusalError
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import build_reply
from privacy import BudgetExceededError, BudgetLedger, PrivacyError

if TYPE_CHECKING:
    from crypto.he_keys import SecretContext

TaskT = TypeVar("TaskT")


def _finite_cap(value: float) -> float:
    # The ledger stores finite caps; "no cap" is the largest float, which no sum of ε reaches.
    return min(value, sys.float_info.max)


def _ledger(settings: NodeSettings, trail: AuditTrail, where: dict[str, Any]) -> BudgetLedger:
    return BudgetLedger(
        settings.ledger_path,
        max_epsilon_total=_finite_cap(settings.max_epsilon_total),
        max_epsilon_per_study=_finite_cap(settings.max_epsilon_per_study),
        on_spend=lambda record: trail.append("privacy_spent", **{k: v for k, v in record.items() if k != "study_id"}, **where),
    )


def _budget_check(
    settings: NodeSettings, cost: TaskCost, study: str, trail: AuditTrail, where: dict, *, unprotected_allowed: bool
) -> BudgetLedger | None:
    """Refuse, before the data is used, a task the budget cannot pay for.

    A release without DP has unbounded ε: a node with an ε cap refuses it, unless its data
    contract explicitly does not require DP (then the caps govern the DP releases only).
    """
    capped = settings.max_epsilon_total != float("inf") or settings.max_epsilon_per_study != float("inf")
    if cost.unprotected and capped and not unprotected_allowed:
        raise RefusalError(
            "privacy",
            f"the study releases {cost.unprotected} without differential privacy (unbounded ε), and this node caps ε at "
            f"{min(settings.max_epsilon_total, settings.max_epsilon_per_study):g}",
        )
    if cost.private is None:
        return None
    ledger = _ledger(settings, trail, where)
    try:
        ledger.check(study_id=study, epsilon=cost.private.epsilon, release=cost.private.release)
    except BudgetExceededError as exc:
        raise RefusalError("privacy", str(exc)) from None
    return ledger


def _study_key(settings: NodeSettings, fingerprint: str | None) -> SecretContext | None:
    if fingerprint is None:
        return None
    from federated.client.encryption import (
        study_key,  # TenSEAL only for encrypted tasks
    )

    return study_key(settings, fingerprint)


def serve(kind: TaskKind[TaskT], message: Message, context: Context) -> Message:
    """Run one task through the steps above; always returns a reply (result or refusal)."""
    settings = NodeSettings.from_context(dict(context.node_config), dict(context.run_config))
    trail = AuditTrail(settings.trail, actor=settings.partner_id)
    audit = PartnerAudit.for_node(trail=settings.trail, key_path=settings.key_path, partner_id=settings.partner_id,
                                  coordinator_key=settings.coordinator_key)
    where: dict[str, Any] = {}

    def refuse(clause: str, reason: str, **details: Any) -> Message:
        trail.append("task_refused", clause=clause, reason=reason, **details, **where)
        info = PartnerInfo(partner=settings.partner_id, status="refused", clause=clause, reason=reason)
        return Message(audit.seal(build_reply(info, {})), reply_to=message)

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
    trail.append("task_received", task_sha256=task_sha256, **kind.received(task), **checked, **where,
                 **({"he_fingerprint": fingerprint} if fingerprint else {}))
    try:
        keys = NodeKeys(audit.identity, _study_key(settings, fingerprint))
    except RefusalError as exc:
        return refuse(exc.clause, str(exc))
    data, ledger, cost = None, None, None
    info = PartnerInfo(partner=settings.partner_id, status="ok")
    try:
        if kind.uses_data:
            manifest: DataManifest = load_manifest(settings.manifest)
            data = load_partner_data(settings.data, manifest)
    except FederatedError as exc:
        return refuse("data", str(exc))
    try:
        if data is not None:
            cost = kind.cost(task, data.size)
            settings, contract = enforce_contract(
                settings, purpose=kind.purpose, spec=task.spec, cost=cost, data_sha256=data.data_sha256,
                coordinator_key=checked.get("coordinator_key"),
            )
            ledger = _budget_check(
                settings, cost, where["study"], trail, where,
                unprotected_allowed=contract is not None and not contract.protections.require_dp,
            )
            release = contract.release_per_partner if contract is not None else manifest.release_per_partner
            info = PartnerInfo(
                partner=settings.partner_id, status="ok", release_per_partner=release,
                data_sha256=data.data_sha256, manifest_sha256=sha256_file(settings.manifest), count=data.size,
            )
        if settings.contract is not None and info.data_sha256:
            info = info.model_copy(update={"contract_sha256": sha256_file(settings.contract)})
        trail.append("task_accepted", data_sha256=info.data_sha256, manifest_sha256=info.manifest_sha256,
                     count=info.count, **({"contract_sha256": info.contract_sha256} if info.contract_sha256 else {}), **where)
        content, details = kind.run(task, data, info, keys)
    except RefusalError as exc:
        return refuse(exc.clause, str(exc))
    except AccordError as exc:
        return refuse("task", str(exc))
    except Exception as exc:  # a bug: still logged and answered, so the coordinator learns why
        return refuse("internal", f"{type(exc).__name__}: {exc}")
    if ledger is not None and cost is not None and cost.private is not None:
        spent = cost.private
        try:
            ledger.spend(study_id=where["study"], release=spent.release, epsilon=spent.epsilon, delta=spent.delta,
                         noise_multiplier=spent.noise_multiplier, sample_rate=spent.sample_rate, steps=spent.steps)
        except PrivacyError as exc:  # another process spent in between, or the release id clashes: release nothing
            return refuse("privacy", str(exc))
    trail.append("result_sent", **details, **where)
    return Message(audit.seal(content), reply_to=message)
