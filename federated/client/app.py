"""Accord's ClientApp: what a partner's node runs for each task the coordinator sends.

It runs from the partner's own installed Accord (the run's app bundle carries no code).
Every task is checked before data is touched; any failure becomes a structured refusal
returned to the coordinator and logged in the partner's trail, and the node keeps serving.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from accord.errors import AccordError
from accord.hashing import sha256_bytes, sha256_file
from federated.audit import AuditTrail
from federated.audit.errors import AuditRefusal
from federated.audit.partner_audit import PartnerAudit
from federated.client.evaluation import evaluate_task
from federated.client.settings import NodeSettings
from federated.data import load_manifest, load_partner_data
from federated.errors import FederatedError, MessageError
from federated.protocol import EvaluationReply, PartnerInfo, build_reply, parse_task

app = ClientApp()


def _refuse(
    message: Message, trail: AuditTrail, partner: str, clause: str, reason: str, *, audit: PartnerAudit, **where: object
) -> Message:
    trail.append("task_refused", clause=clause, reason=reason, **where)
    info = PartnerInfo(partner=partner, status="refused", clause=clause, reason=reason)
    return Message(audit.seal(build_reply(info, {})), reply_to=message)


@app.query("evaluate")
def evaluate(message: Message, context: Context) -> Message:
    settings = NodeSettings.from_context(dict(context.node_config), dict(context.run_config))
    trail = AuditTrail(settings.trail, actor=settings.partner_id)
    audit = PartnerAudit.for_node(settings)
    try:
        task = parse_task(message.content)
    except MessageError as exc:
        return _refuse(message, trail, settings.partner_id, "message", str(exc), audit=audit)
    where = {"study": task.spec.study, "round": task.spec.round}
    try:
        checked = audit.check_task(message.content, task.sha256)
    except AuditRefusal as exc:
        return _refuse(message, trail, settings.partner_id, "audit", str(exc), audit=audit, task_sha256=task.sha256, **where)
    trail.append("task_received", task_sha256=task.sha256, models={m.name: m.sha256 for m in task.spec.models}, **checked, **where)
    try:
        manifest = load_manifest(settings.manifest)
        data = load_partner_data(settings.data, manifest)
    except FederatedError as exc:
        return _refuse(message, trail, settings.partner_id, "data", str(exc), audit=audit, **where)
    try:
        statistics = evaluate_task(task, data)
    except FederatedError as exc:
        return _refuse(message, trail, settings.partner_id, "model", str(exc), audit=audit, **where)
    info = PartnerInfo(
        partner=settings.partner_id,
        status="ok",
        release_per_partner=manifest.release_per_partner,
        data_sha256=data.data_sha256,
        manifest_sha256=sha256_file(settings.manifest),
        count=data.size,
    )
    trail.append(
        "task_accepted", data_sha256=info.data_sha256, manifest_sha256=info.manifest_sha256, count=info.count, **where
    )
    payload_sha256 = EvaluationReply(info=info, statistics=statistics).payload_sha256()
    trail.append("result_sent", payload_sha256=payload_sha256, **where)
    return Message(audit.seal(build_reply(info, statistics)), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    from federated.training.protocol import arrays_sha256, build_train_reply, parse_train_task
    from federated.training.partner import train_round

    settings = NodeSettings.from_context(dict(context.node_config), dict(context.run_config))
    trail = AuditTrail(settings.trail, actor=settings.partner_id)
    audit = PartnerAudit.for_node(settings)
    try:
        task = parse_train_task(message.content)
    except MessageError as exc:
        return _refuse(message, trail, settings.partner_id, "message", str(exc), audit=audit)
    where = {"study": task.spec.study, "round": task.spec.round}
    task_sha256 = sha256_bytes(task.spec.model_dump_json().encode())
    try:
        checked = audit.check_task(message.content, task_sha256)
    except AuditRefusal as exc:
        return _refuse(message, trail, settings.partner_id, "audit", str(exc), audit=audit, task_sha256=task_sha256, **where)
    trail.append("task_received", task_sha256=task_sha256,
                 global_sha256=task.spec.global_sha256, onnx_sha256=task.spec.onnx_sha256, **checked, **where)
    try:
        manifest = load_manifest(settings.manifest)
        data = load_partner_data(settings.data, manifest)
    except FederatedError as exc:
        return _refuse(message, trail, settings.partner_id, "data", str(exc), audit=audit, **where)
    try:
        local = train_round(task, data)
    except AccordError as exc:
        return _refuse(message, trail, settings.partner_id, "training", str(exc), audit=audit, **where)
    info = PartnerInfo(
        partner=settings.partner_id, status="ok", release_per_partner=manifest.release_per_partner,
        data_sha256=data.data_sha256, manifest_sha256=sha256_file(settings.manifest), count=data.size,
    )
    trail.append(
        "task_accepted", data_sha256=info.data_sha256, manifest_sha256=info.manifest_sha256, count=info.count, **where
    )
    if local.privacy is not None:
        trail.append("privacy_spent", **local.privacy.model_dump(), **where)
    trail.append("result_sent", update_sha256=arrays_sha256(local.arrays), num_examples=local.num_examples, **where)
    reply = build_train_reply(
        info, arrays=local.arrays, num_examples=local.num_examples, train_loss=local.train_loss,
        privacy=local.privacy, statistics=local.statistics,
    )
    return Message(audit.seal(reply), reply_to=message)
