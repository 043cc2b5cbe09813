"""The node's contract gate: the partner's data contract decides before a task uses data.

The contract (if the node has one) must govern the data file (same SHA-256) and be in
force; then every clause is checked against what the task asks: purpose, coordinator key,
jurisdiction, legal basis, licence, retention, minimum cohort, DP and encryption. A failed
clause is a `Refusal` naming it and the value that failed. The contract's ε caps tighten
the node's own, and its `release_per_partner` replaces the manifest's.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from accord.errors import AccordError
from federated.client.contract_request import task_request
from federated.client.costs import TaskCost
from federated.client.settings import NodeSettings
from federated.errors import RefusalError
from privacy.contract import ContractViolation, DataContract, load_contract


def enforce_contract(
    settings: NodeSettings, *, purpose: str, spec: Any, cost: TaskCost, data_sha256: str, coordinator_key: str | None
) -> tuple[NodeSettings, DataContract | None]:
    """Check the task against the node's contract; return settings with the contract's caps applied."""
    if settings.contract is None:
        return settings, None
    try:
        contract = load_contract(settings.contract)
        contract.check_data(data_sha256, today=date.today(), source=str(settings.contract))
    except AccordError as exc:
        raise RefusalError("contract", str(exc)) from None
    request = task_request(
        purpose=purpose, governance=spec.governance, min_cohort=spec.min_cohort, cost=cost,
        encrypted=getattr(spec, "encryption", None) is not None, coordinator_key=coordinator_key,
    )
    try:
        contract.check(request)
    except ContractViolation as exc:
        raise RefusalError(exc.clause, str(exc)) from None
    capped = dataclasses.replace(
        settings,
        max_epsilon_total=min(settings.max_epsilon_total, contract.budget.max_epsilon_total),
        max_epsilon_per_study=min(settings.max_epsilon_per_study, contract.budget.max_epsilon_per_study),
    )
    return capped, contract
