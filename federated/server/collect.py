"""Sending one task to every node and sorting what comes back: accepted replies, refusals and
nodes that did not answer. Every round of every study kind (evaluation, training, decryption, seal)
goes through `collect_replies`, so the audit record on each task and reply is attached and checked
in one place. What it sends with comes in explicitly, as a `Channel` (the study's `RoundContext` is one):
nothing is looked up from module state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.errors import MessageError, RefusalError
from federated.messages.common import PartnerInfo


class Reply(Protocol):
    """What `collect_replies` reads from every parsed reply (evaluation, training, decryption, seal)."""

    @property
    def info(self) -> PartnerInfo: ...

    def payload_sha256(self) -> str: ...


ReplyT = TypeVar("ReplyT", bound=Reply)

# Grid.send_and_receive sleeps 3 s between pulls; a round is a few seconds, so poll faster.
REPLY_POLL_S = 0.25


@dataclass(frozen=True)
class Channel:
    """How the coordinator reaches its nodes: the grid, the trail that records every task and reply, and the
    audit that puts a signed checkpoint on every task and checks every reply's cosignature and checkpoint.

    `audit` None: tasks carry no audit record, which partners refuse; only for tests of the bare exchange.
    """

    grid: Grid
    trail: AuditTrail
    audit: CoordinatorAudit | None


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


@dataclass
class Collected(Generic[ReplyT]):
    """One round's answers: accepted replies, refusals and nodes that did not answer."""

    accepted: list[ReplyT] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)
    nodes: dict[str, int] = field(default_factory=dict)  # partner -> the node its accepted reply came from

    def refuse(self, trail: AuditTrail, where: dict[str, Any], *, node: int, partner: str | None, clause: str, reason: str, by: str) -> None:
        self.refused.append({"partner": partner or f"node {node}", "clause": clause, "reason": reason})
        details: dict[str, Any] = {"partner": partner} if partner else {}
        trail.append("task_refused", node=str(node), clause=clause, reason=reason, by=by, **details, **where)


def collect_replies(
    channel: Channel,
    node_ids: Iterable[int],
    *,
    content: Callable[[], RecordDict],
    message_type: str,
    parse: Callable[[RecordDict], ReplyT],
    where: dict[str, Any],
    task_sha256: str,
    timeout_s: float,
) -> Collected[ReplyT]:
    """Send a task to every node over `channel`; sort the replies into accepted, refused and missing.

    `parse` validates a reply's content (raising `MessageError`) into an object with `info`. With the
    channel's audit, checkpoints and cosignatures ride on every task and reply.
    """
    grid, trail, audit = channel.grid, channel.trail, channel.audit
    if audit is not None:
        audit.checkpoint()  # covers everything up to this round, the previous round included
    messages = []
    for node_id in node_ids:
        task = content()
        sent = audit.attach_task(task, node_id, task_sha256) if audit is not None else {}
        messages.append(Message(task, node_id, message_type, ttl=timeout_s + 60))
        trail.append("task_sent", node=str(node_id), task_sha256=task_sha256, **sent, **where)
    answered: set[int] = set()
    collected: Collected[ReplyT] = Collected()
    for reply in exchange(grid, messages, timeout_s=timeout_s):
        node = reply.metadata.src_node_id
        answered.add(node)
        if reply.has_error():
            reason = f"Flower error {reply.error.code}: {reply.error.reason}"
            collected.missing.append({"node": str(node), "reason": reason})
            trail.append("partner_missing", node=str(node), reason=reason, **where)
            continue
        try:
            parsed = parse(reply.content)
        except MessageError as exc:
            clause = exc.clause if isinstance(exc, RefusalError) else "reply"  # e.g. "encryption" for a bundle that does not check out
            collected.refuse(trail, where, node=node, partner=None, clause=clause, reason=str(exc), by="coordinator")
            continue
        info = parsed.info
        if audit is not None:
            problem = audit.receive(node, reply.content, partner=info.partner, accepted=info.status == "ok", where=where)
            if problem is not None:
                collected.refuse(trail, where, node=node, partner=info.partner, clause="audit", reason=problem, by="coordinator")
                continue
        if info.status == "refused":
            collected.refuse(trail, where, node=node, partner=info.partner, clause=info.clause, reason=info.reason, by="partner")
            continue
        if any(other.info.partner == info.partner for other in collected.accepted):
            reason = f"a second node answered as partner {info.partner!r}; only the first reply counts"
            collected.refuse(trail, where, node=node, partner=info.partner, clause="identity", reason=reason, by="coordinator")
            continue
        collected.accepted.append(parsed)
        collected.nodes[info.partner] = node
        optional: dict[str, Any] = {}
        if info.contract_sha256:
            optional["contract_sha256"] = info.contract_sha256
        if info.suppressed_cells:
            optional["suppressed_cells"] = info.suppressed_cells
        trail.append(
            "result_received", node=str(node), partner=info.partner, count=info.count,
            payload_sha256=parsed.payload_sha256(),
            data_sha256=info.data_sha256, manifest_sha256=info.manifest_sha256, **optional, **where,
        )
    for message in messages:
        node = message.metadata.dst_node_id
        if node not in answered:
            reason = f"no reply within the round timeout of {timeout_s:g} s"
            collected.missing.append({"node": str(node), "reason": reason})
            trail.append("partner_missing", node=str(node), reason=reason, **where)
    return collected
