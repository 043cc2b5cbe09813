"""Evaluation rounds on the coordinator: send the task, collect and check replies, pool.

A partner that refuses, errs or stays silent past the round timeout is recorded and left
out; the round still completes if the remaining cohort is at least the study's minimum
(`StudyRunner.finish_round` checks it, the same way for every study kind).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from federated.messages.evaluation import (
    MESSAGE_TYPE,
    ModelRef,
    ModelStatistics,
    TaskSpec,
    build_task,
    parse_reply,
)
from federated.messages.study_tasks import evaluation_spec
from federated.reporting.results import RoundSummary
from federated.server.collect import collect_replies
from federated.server.context import RoundContext
from federated.server.pooling import RoundOutcome, aggregate_round, statistics_sha256
from federated.study import ResolvedModel

if TYPE_CHECKING:
    from federated.evaluation.statistics import EvaluationStatistics
    from federated.server.runner import StudyRunner


def run_round(context: RoundContext, spec: TaskSpec, model_bytes: dict[str, bytes]) -> RoundOutcome:
    """Run one round of `spec` over the nodes connected now; the outcome may have no contributors.

    With the context's encryption, partners send one encrypted bundle each; the coordinator sums them and a
    decrypting partner returns the pooled statistics (no partner's own statistics are ever seen).
    """
    started = time.monotonic()
    study, encryption, trail = context.study, context.encryption, context.trail
    calibration_bins = study.evaluation.calibration_bins
    nodes = list(context.grid.get_node_ids())
    if encryption is not None:
        from federated.messages.he_codec import evaluation_plan

        spec, plan = encryption.encrypt_spec(spec, partners=len(nodes), plan_for=evaluation_plan)
    collected = collect_replies(
        context, nodes, content=lambda: build_task(spec, model_bytes), message_type=MESSAGE_TYPE,
        parse=lambda content: parse_reply(content, spec), where={"study": spec.study, "round": spec.round},
        task_sha256=spec.sha256(), timeout_s=context.round_timeout_s,
    )
    encrypted = None
    if encryption is not None and collected.accepted:
        encrypted = encryption.aggregate(context, collected, plan, study=spec.study, round=spec.round)
    accepted = collected.accepted
    if encrypted is not None:
        outcome = aggregate_round(spec.round, accepted, calibration_bins, decrypted=encrypted.statistics,
                                  validation=study.validation, shift=spec.shift)
        outcome.encryption = encrypted.summary
    elif encryption is not None:  # fewer than the minimum cohort of readable bundles: nothing is decrypted
        outcome = RoundOutcome(round=spec.round, contributors=[r.info.partner for r in accepted])
    elif accepted:
        outcome = aggregate_round(spec.round, accepted, calibration_bins, validation=study.validation, shift=spec.shift)
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


def evaluation_round(context: RoundContext, round_number: int, models: list[ResolvedModel],
                     model_bytes: dict[str, bytes]) -> RoundOutcome:
    """Round `round_number` of an evaluation study: every candidate model (`model_bytes`: name -> ONNX) on every
    connected partner's data. Not finished: `StudyRunner.finish_round` records it and checks its cohort."""
    spec = evaluation_spec(context.study, round_number=round_number, study_sha256=context.study_sha256,
                           models=[ModelRef(name=m.name, sha256=m.sha256, output=m.output) for m in models])
    return run_round(context, spec, model_bytes)


def evaluation_rounds(runner: StudyRunner) -> dict[str, ModelStatistics]:
    """The rounds of an evaluation study; returns the last round's pooled statistics."""
    models = runner.models
    model_bytes = {model.name: model.path.read_bytes() for model in models}
    pooled_statistics: dict[str, ModelStatistics] = {}
    for round_number in runner.round_numbers():
        outcome = evaluation_round(runner.context, round_number, models, model_bytes)
        runner.finish_round(RoundSummary.of(outcome.summary()))
        pooled_statistics = outcome.pooled_statistics
    return pooled_statistics
