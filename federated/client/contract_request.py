"""Turning a study (or one task of it) into the request a partner's contract is checked against."""

from __future__ import annotations

from datetime import date

from federated.client.costs import TaskCost
from federated.study import Governance
from privacy.contract import TaskRequest


def task_request(
    *,
    purpose: str,
    governance: Governance,
    min_cohort: int,
    cost: TaskCost,
    encrypted: bool,
    coordinator_key: str | None,
    today: date | None = None,
) -> TaskRequest:
    """What a task asks of a dataset: who asks, why, under which law, with which protections."""
    return TaskRequest(
        purpose=purpose,
        coordinator_key=coordinator_key,
        jurisdiction=governance.jurisdiction,
        legal_basis=governance.legal_basis,
        accepted_licences=tuple(governance.accepted_licences),
        retention_days=governance.retention_days,
        min_cohort=min_cohort,
        dp_enabled=not cost.unprotected and cost.private is not None,
        epsilon_per_release=cost.epsilon_per_release,
        encrypted=encrypted,
        today=today or date.today(),
    )
