"""Turning one task's spec into the request a partner's contract is checked against."""

from __future__ import annotations

from datetime import date
from typing import Any

from federated.client.costs import TaskCost
from federated.client.exact_releases import StudyHistory
from privacy.contract import ReleaseShape, TaskRequest


def released_models(spec: Any) -> tuple[str, ...]:
    """The models whose statistics a task releases, by SHA-256: the candidates, or training's global model."""
    models = getattr(spec, "models", None)
    return tuple(model.sha256 for model in models) if models is not None else (spec.onnx_sha256,)


def task_request(
    *, purpose: str, spec: Any, cost: TaskCost, coordinator_key: str | None, today: date | None = None,
    records: int | None = None, history: StudyHistory | None = None, periods: int | None = None,
) -> TaskRequest:
    """What a task asks of a dataset: who asks, why, under which law, with which protections.

    `spec` is the task's signed spec (evaluation or training): its governance, minimum cohort and
    encryption block are what the coordinator committed to for this task; its evaluation settings
    and models are the shape of what it releases. `records` (this partner's record count) and
    `history` (what the node released without DP in the study before) feed the `[disclosure]` caps.
    `periods`: the node's own count of the study's monitoring tasks, this one included (a monitoring task
    counts as the larger of it and the period the coordinator names).
    """
    monitoring = getattr(spec, "monitoring", None)
    governance = spec.governance
    history = history or StudyHistory()
    regression = spec.evaluation.regression if spec.evaluation.task == "regression" else None
    release = ReleaseShape(  # a regression study's histogram bins are its residual bins (no score bins are sent)
        score_bins=len(regression.residual_edges) - 1 if regression is not None else spec.evaluation.score_bins,
        models=released_models(spec),
        subgroup_levels=len(spec.evaluation.subgroup_levels), study_tasks=history.tasks, study_models=history.models,
    )
    privacy = spec.evaluation.privacy
    encryption = getattr(spec, "encryption", None)
    cohort = len(encryption.cohort) if encryption is not None else None
    return TaskRequest(
        purpose=purpose,
        coordinator_key=coordinator_key,
        jurisdiction=governance.jurisdiction,
        legal_basis=governance.legal_basis,
        accepted_licences=tuple(governance.accepted_licences),
        retention_days=governance.retention_days,
        min_cohort=spec.min_cohort,
        dp_enabled=not cost.unprotected and cost.private is not None,
        epsilon_per_release=cost.epsilon_per_release,
        encrypted=getattr(spec, "encryption", None) is not None,
        today=today or date.today(),
        records=records,
        release=release,
        monitoring_periods=max(monitoring.period, periods or 0) if monitoring is not None else None,
        snapshot=monitoring is not None and monitoring.snapshot is not None,
        # a share only for classification statistics (a regression release is always local noise)
        noise=privacy.noise if privacy.enabled and getattr(spec.evaluation, "task", "classification") == "classification"
        else "local",
        honest_required=privacy.honest_required_of(cohort or 0) if privacy.noise == "distributed" else None,
        cohort=cohort,
    )
