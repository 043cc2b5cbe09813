"""One evaluation round on the coordinator: send the task, collect and check replies, pool.

A partner that refuses, errs or stays silent past the round timeout is recorded and left
out; the round still completes if the remaining cohort is at least the study's minimum.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from flwr.serverapp import Grid

from federated.audit import AuditTrail
from federated.messages.evaluation import (
    MESSAGE_TYPE,
    TaskSpec,
    build_task,
    parse_reply,
)
from federated.server.collect import collect_replies
from federated.study import ValidationSettings
from federated.server.pooling import RoundOutcome, aggregate_round, statistics_sha256

if TYPE_CHECKING:
    from federated.server.encryption import EncryptedAggregation

def run_round(
    grid: Grid,
    spec: TaskSpec,
    model_bytes: dict[str, bytes],
    trail: AuditTrail,
    *,
    timeout_s: float,
    calibration_bins: int,
    encryption: EncryptedAggregation | None = None,
    validation: ValidationSettings | None = None,
) -> RoundOutcome:
    """Run one round over the nodes connected now; the outcome may have no contributors.

    With `encryption`, partners send one encrypted bundle each; the coordinator sums them and a
    decrypting partner returns the pooled statistics (no partner's own statistics are ever seen).
    """
    started = time.monotonic()
    nodes = list(grid.get_node_ids())
    if encryption is not None:
        from federated.messages.he_codec import evaluation_plan

        spec, plan = encryption.encrypt_spec(spec, partners=len(nodes), plan_for=evaluation_plan)
    collected = collect_replies(
        grid, nodes, content=lambda: build_task(spec, model_bytes), message_type=MESSAGE_TYPE,
        parse=lambda content: parse_reply(content, spec), where={"study": spec.study, "round": spec.round},
        task_sha256=spec.sha256(), trail=trail, timeout_s=timeout_s,
    )
    encrypted = None
    if encryption is not None and collected.accepted:
        encrypted = encryption.aggregate(grid, collected, plan, trail, study=spec.study, round=spec.round)
    accepted = collected.accepted
    if encrypted is not None:
        outcome = aggregate_round(spec.round, accepted, calibration_bins, decrypted=encrypted.statistics,
                                  validation=validation)
        outcome.encryption = encrypted.summary
    elif encryption is not None:  # fewer than the minimum cohort of readable bundles: nothing is decrypted
        outcome = RoundOutcome(round=spec.round, contributors=[r.info.partner for r in accepted])
    elif accepted:
        outcome = aggregate_round(spec.round, accepted, calibration_bins, validation=validation)
        trail.append(
            "aggregate_computed",
            study=spec.study,
            round=spec.round,
            contributors=outcome.contributors,
            aggregate_sha256=statistics_sha256(outcome.pooled_statistics),
        )
    else:
        outcome = RoundOutcome(round=spec.round, contributors=[])
    outcome.refused, outcome.missing = collected.refused, collected.missing
    outcome.duration_s = time.monotonic() - started
    return outcome
