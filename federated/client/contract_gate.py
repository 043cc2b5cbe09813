"""The node's gate: what decides, before a task uses data, whether the node runs it.

Two checks, in this order, for every task that uses data: the partner's data contract (if the node
has one), then the privacy budget. The contract must govern the data file (same SHA-256) and be in
force; then every clause is checked against what the task asks (`task_request`): purpose,
coordinator key, jurisdiction, legal basis, licence, retention, minimum cohort, DP and encryption.
The contract's ε caps tighten the node's own, and its `release_per_partner` replaces the manifest's.
The budget check refuses a release without DP on a node that caps ε (unless its contract does not
require DP) and a release the ledger cannot pay for. Every failure is a `RefusalError` naming the clause.

The pipeline (`federated.client.pipeline`) and the dry run (`federated.client.check`) both call these
functions: what `check` reports is what the node decides.

A task that releases anything without DP, under a contract with `[disclosure]` on, is also held to
the disclosure caps (score bins per record, models per task and per study, subgroup levels, tasks
per study: clauses `disclosure.*`); the study's history comes from the node's register of exact
releases (`federated.client.exact_releases`), which counts the task in the same transaction as the
check. `suppression` gives the small-cell suppression its statistics get before they leave.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from accord.errors import AccordError
from federated.client.contract_request import released_models, task_request
from federated.client.costs import DistributedShare, TaskCost
from federated.client.exact_releases import ExactReleases, StudyHistory
from federated.client.settings import NodeSettings
from federated.errors import RefusalError
from federated.evaluation.disclosure import CellSuppression
from privacy import BudgetExceededError, BudgetLedger
from privacy.contract import (
    ClauseResult,
    ContractViolation,
    DataContract,
    load_contract,
)


def contract_verdicts(
    contract: DataContract, *, purpose: str, spec: Any, cost: TaskCost, coordinator_key: str | None, today: date | None = None,
    records: int | None = None, history: StudyHistory | None = None,
) -> list[ClauseResult]:
    """Every clause's verdict on one task (`enforce_contract` refuses on the first that fails)."""
    return contract.evaluate(task_request(purpose=purpose, spec=spec, cost=cost, coordinator_key=coordinator_key, today=today,
                                          records=records, history=history))


def suppression(contract: DataContract | None) -> CellSuppression | None:
    """The small-cell suppression a release without DP gets under `contract` (None: none, no contract or disabled)."""
    if contract is None or not contract.disclosure.enabled:
        return None
    terms = contract.disclosure
    return CellSuppression(min_cell_count=terms.min_cell_count, min_subgroup_size=terms.min_subgroup_size)


def enforce_contract(
    settings: NodeSettings, *, purpose: str, spec: Any, cost: TaskCost, data_sha256: str, coordinator_key: str | None,
    records: int | None = None, periods: int | None = None,
) -> tuple[NodeSettings, DataContract | None]:
    """Check the task against the node's contract; return settings with the contract's caps applied.

    `records` is the partner's record count (the disclosure caps need it; unknown fails them).
    """
    if settings.contract is None:
        return settings, None
    try:
        contract = load_contract(settings.contract)
        contract.check_data(data_sha256, today=date.today(), source=str(settings.contract))
    except AccordError as exc:
        raise RefusalError("contract", str(exc)) from None

    def check(history: StudyHistory | None = None) -> None:
        contract.check(task_request(purpose=purpose, spec=spec, cost=cost, coordinator_key=coordinator_key,
                                    records=records, history=history, periods=periods))

    try:
        if cost.unprotected and contract.disclosure.enabled:
            register = ExactReleases.beside(settings.trail)
            with register.admitting(study=spec.study, task_sha256=spec.sha256(), models=released_models(spec)) as history:
                check(history)
        else:
            check()
    except ContractViolation as exc:
        raise RefusalError(exc.clause, str(exc)) from None
    capped = dataclasses.replace(
        settings,
        max_epsilon_total=min(settings.max_epsilon_total, contract.budget.max_epsilon_total),
        max_epsilon_per_study=min(settings.max_epsilon_per_study, contract.budget.max_epsilon_per_study),
    )
    return capped, contract


def open_ledger(
    path: Path, *, max_epsilon_total: float, max_epsilon_per_study: float,
    on_spend: Callable[[dict[str, Any]], object] | None = None,
) -> BudgetLedger:
    """The node's budget ledger under the node's caps ("no cap" is stored as the largest float,
    which no sum of ε reaches: the ledger keeps finite caps)."""
    return BudgetLedger(path, max_epsilon_total=min(max_epsilon_total, sys.float_info.max),
                        max_epsilon_per_study=min(max_epsilon_per_study, sys.float_info.max), on_spend=on_spend)


def check_budget(
    cost: TaskCost, *, study: str, max_epsilon_total: float, max_epsilon_per_study: float, unprotected_allowed: bool,
    ledger: Callable[[], BudgetLedger],
) -> BudgetLedger | None:
    """Refuse, before the data is used, a task the budget cannot pay for; the ledger to charge, if any.

    A release without DP has unbounded ε: a node with an ε cap refuses it, unless its data
    contract explicitly does not require DP (then the caps govern the DP releases only).
    `ledger` opens the node's ledger; it is opened only for a task with a DP part.
    """
    capped = max_epsilon_total != float("inf") or max_epsilon_per_study != float("inf")
    if cost.unprotected and capped and not unprotected_allowed:
        raise RefusalError(
            "privacy",
            f"the study releases {cost.unprotected} without differential privacy (unbounded ε), and this node caps ε at "
            f"{min(max_epsilon_total, max_epsilon_per_study):g}",
        )
    if cost.private is None:
        return None
    opened = ledger()
    try:
        opened.check(study_id=study, epsilon=cost.private.epsilon, release=cost.private.release)
    except BudgetExceededError as exc:
        raise RefusalError("privacy", str(exc)) from None
    return opened


def charge(ledger: BudgetLedger, cost: TaskCost, *, study: str) -> None:
    """Spend the task's DP release from the ledger once its result is ready (`PrivacyError` if it no longer fits)."""
    spent = cost.private
    if spent is None:
        return
    share = spent.distributed
    ledger.spend(study_id=study, release=spent.release, epsilon=spent.epsilon, delta=spent.delta,
                 noise_multiplier=spent.noise_multiplier, sample_rate=spent.sample_rate, steps=spent.steps,
                 share_epsilon=share.share_epsilon if share else None,
                 honest_required=share.honest_required if share else None, cohort=share.cohort if share else None)


def noise_shares(contract: DataContract | None, *, purpose: str, spec: Any, cost: TaskCost,
                 coordinator_key: str | None) -> int:
    """t when the node adds only a share N(0, σ²/t) of its evaluation noise (distributed noise, opted into by
    its contract: `DataContract.noise_shares`); 1, the full local noise, otherwise and without a contract."""
    if contract is None or cost.private is None:
        return 1
    return contract.noise_shares(task_request(purpose=purpose, spec=spec, cost=cost, coordinator_key=coordinator_key))


def distributed_cost(cost: TaskCost, spec: Any, *, shares: int) -> TaskCost:
    """The cost with its distributed share recorded (what the ledger stores beside the charged ε)."""
    if shares == 1 or cost.private is None or spec.encryption is None:
        return cost
    # lazy: scipy only for DP tasks
    from federated.evaluation.dp_release import calibrate
    from privacy.release import noise_share

    evaluation = spec if hasattr(spec, "layout") else spec.evaluation_spec()  # training: its incoming model's statistics
    privacy = evaluation.evaluation.privacy
    share = noise_share(calibrate(evaluation.layout(), privacy, len(evaluation.models)), honest_required=shares)
    return cost.with_share(DistributedShare(share.epsilon, shares, len(spec.encryption.cohort)),
                           evaluation_epsilon=privacy.epsilon)
