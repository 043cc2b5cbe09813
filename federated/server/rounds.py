"""One evaluation round on the coordinator: send the task, collect and check replies, pool.

A partner that refuses, errs or stays silent past the round timeout is recorded and left
out; the round still completes if the remaining cohort is at least the study's minimum.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from flwr.app import Message
from flwr.serverapp import Grid

from federated.audit import AuditTrail
from federated.errors import MessageError
from federated.protocol import MESSAGE_TYPE, EvaluationReply, TaskSpec, build_task, parse_reply
from federated.server.aggregation import RoundOutcome, aggregate_round, statistics_sha256


# Grid.send_and_receive sleeps 3 s between pulls; a round is a few seconds, so poll faster.
REPLY_POLL_S = 0.25


def exchange(grid: Grid, messages: list[Message], *, timeout_s: float) -> Iterator[Message]:
    """Push `messages` and yield replies as they arrive, until all came or `timeout_s` passed."""
    pending = set(grid.push_messages(messages))
    deadline = time.monotonic() + timeout_s
    while pending:
        replies = list(grid.pull_messages(pending))
        for reply in replies:
            pending.discard(reply.metadata.reply_to_message_id)
            yield reply
        if not pending or time.monotonic() >= deadline:
            return
        time.sleep(REPLY_POLL_S)


def collect_replies(
    grid: Grid,
    node_ids: Iterable[int],
    spec: TaskSpec,
    model_bytes: dict[str, bytes],
    trail: AuditTrail,
    timeout_s: float,
) -> tuple[list[EvaluationReply], list[dict[str, str]], list[dict[str, str]]]:
    """Send the task to every node; return accepted replies, refusals and missing nodes."""
    where = {"study": spec.study, "round": spec.round}
    task_sha256 = spec.sha256()
    messages = []
    for node_id in node_ids:
        messages.append(Message(build_task(spec, model_bytes), node_id, MESSAGE_TYPE, ttl=timeout_s + 60))
        trail.append("task_sent", node=str(node_id), task_sha256=task_sha256, **where)
    answered: set[int] = set()
    accepted: list[EvaluationReply] = []
    refused: list[dict[str, str]] = []
    missing: list[dict[str, str]] = []
    seen_partners: set[str] = set()
    for reply in exchange(grid, messages, timeout_s=timeout_s):
        node = reply.metadata.src_node_id
        answered.add(node)
        if reply.has_error():
            reason = f"Flower error {reply.error.code}: {reply.error.reason}"
            missing.append({"node": str(node), "reason": reason})
            trail.append("partner_missing", node=str(node), reason=reason, **where)
            continue
        try:
            parsed = parse_reply(reply.content, spec)
        except MessageError as exc:
            refused.append({"partner": f"node {node}", "clause": "reply", "reason": str(exc)})
            trail.append("task_refused", node=str(node), clause="reply", reason=str(exc), by="coordinator", **where)
            continue
        partner = parsed.info.partner
        if parsed.info.status == "refused":
            refused.append({"partner": partner, "clause": parsed.info.clause, "reason": parsed.info.reason})
            trail.append("task_refused", node=str(node), partner=partner, clause=parsed.info.clause, reason=parsed.info.reason, by="partner", **where)
            continue
        if partner in seen_partners:
            reason = f"a second node answered as partner {partner!r}; only the first reply counts"
            refused.append({"partner": partner, "clause": "identity", "reason": reason})
            trail.append("task_refused", node=str(node), partner=partner, clause="identity", reason=reason, by="coordinator", **where)
            continue
        seen_partners.add(partner)
        accepted.append(parsed)
        trail.append(
            "result_received",
            node=str(node),
            partner=partner,
            payload_sha256=parsed.payload_sha256(),
            count=parsed.info.count,
            data_sha256=parsed.info.data_sha256,
            manifest_sha256=parsed.info.manifest_sha256,
            **where,
        )
    for message in messages:
        node = message.metadata.dst_node_id
        if node not in answered:
            reason = f"no reply within the round timeout of {timeout_s:g} s"
            missing.append({"node": str(node), "reason": reason})
            trail.append("partner_missing", node=str(node), reason=reason, **where)
    return accepted, refused, missing


def run_round(
    grid: Grid,
    spec: TaskSpec,
    model_bytes: dict[str, bytes],
    trail: AuditTrail,
    *,
    timeout_s: float,
    calibration_bins: int,
) -> RoundOutcome:
    """Run one round over the nodes connected now; the outcome may have no contributors."""
    started = time.monotonic()
    accepted, refused, missing = collect_replies(grid, list(grid.get_node_ids()), spec, model_bytes, trail, timeout_s)
    if accepted:
        outcome = aggregate_round(spec.round, accepted, calibration_bins)
        trail.append(
            "aggregate_computed",
            study=spec.study,
            round=spec.round,
            contributors=outcome.contributors,
            aggregate_sha256=statistics_sha256(outcome.pooled_statistics),
        )
    else:
        outcome = RoundOutcome(round=spec.round, contributors=[])
    outcome.refused, outcome.missing = refused, missing
    outcome.duration_s = time.monotonic() - started
    return outcome
