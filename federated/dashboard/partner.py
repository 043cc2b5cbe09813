"""What a partner's dashboard shows of its own node: tasks accepted and refused (with the clause), ε spent and
remaining per study, and its data contract in words.

Tasks come from the node's trail (checked with `read_entries`: a damaged trail is shown as such, never read
past); ε from its privacy ledger when one is named (the caps it enforces), else from the trail's
`privacy_spent` entries with the contract's caps. This module must never write to the trail or the ledger.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federated.audit.trail import TrailError, read_entries
from privacy import BudgetLedger, LedgerError
from privacy.contract import ContractError, DataContract, load_contract


@dataclass(frozen=True)
class PartnerSources:
    trail: Path
    ledger: Path | None = None
    contract: Path | None = None


@dataclass
class PartnerView:
    partner: str | None = None
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    budget: list[dict[str, Any]] = field(default_factory=list)  # per study: spent, remaining, releases
    budget_source: str = ""
    total: dict[str, Any] = field(default_factory=dict)
    contract: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _tasks(view: PartnerView, entries: list[dict[str, Any]]) -> None:
    received: dict[tuple[Any, Any], dict[str, Any]] = {}
    for entry in entries:
        where = (entry.get("study"), entry.get("round"))
        details = entry.get("details", {})
        if entry["kind"] == "task_received":
            received[where] = details
        elif entry["kind"] == "task_accepted":
            view.accepted.append({"time": entry["time"], "study": where[0], "round": where[1],
                                  "step": received.get(where, {}).get("step", "evaluate/train"), "count": details.get("count")})
        elif entry["kind"] == "task_refused":
            view.refused.append({"time": entry["time"], "study": where[0], "round": where[1],
                                 "clause": details.get("clause"), "reason": details.get("reason")})


def _budget_from_ledger(view: PartnerView, path: Path) -> None:
    ledger = BudgetLedger.open_existing(path)
    studies = sorted({spend.study_id for spend in ledger.spends()})
    for study in studies:
        spends = ledger.spends(study_id=study)
        view.budget.append({"study": study, "spent": ledger.spent(study_id=study), "remaining": ledger.remaining(study_id=study),
                            "cap": ledger.max_epsilon_per_study, "releases": len(spends)})
    view.total = {"spent": ledger.spent(), "remaining": ledger.remaining(), "cap": ledger.max_epsilon_total}
    view.budget_source = f"privacy ledger {path.name}"


def _budget_from_trail(view: PartnerView, entries: list[dict[str, Any]], contract: DataContract | None) -> None:
    spent: dict[str, list[float]] = defaultdict(list)
    for entry in entries:
        if entry["kind"] == "privacy_spent":
            spent[str(entry.get("study"))].append(float(entry["details"].get("epsilon", 0.0)))
    study_cap = contract.budget.max_epsilon_per_study if contract else None
    total_cap = contract.budget.max_epsilon_total if contract else None
    total = math.fsum(e for values in spent.values() for e in values)
    for study, values in sorted(spent.items()):
        used = math.fsum(values)
        left = None if study_cap is None or total_cap is None else max(0.0, min(study_cap - used, total_cap - total))
        view.budget.append({"study": study, "spent": used, "remaining": left, "cap": study_cap, "releases": len(values)})
    view.total = {"spent": total, "remaining": None if total_cap is None else max(0.0, total_cap - total), "cap": total_cap}
    view.budget_source = "the trail's privacy_spent entries" + (" and the contract's caps" if contract else "")


def contract_in_words(contract: DataContract) -> list[str]:
    """The contract's clauses as sentences a steering committee reads."""
    p, d = contract.protections, contract.disclosure
    dp = ("every release must be differentially private" + (f", at most ε = {p.max_epsilon_per_release:g} per release"
                                                             if p.max_epsilon_per_release else "")
          if p.require_dp else "exact statistics are allowed (no DP), under disclosure control" if d.enabled
          else "exact statistics are allowed, without disclosure control")
    lines = [
        (f"Dataset {contract.dataset_id} ({contract.sensitivity.replace('_', ' ')}), licence {contract.licence}; "
         f"provenance: {contract.provenance}."),
        f"Data SHA-256 {contract.data_sha256}.",
        f"Purposes allowed: {', '.join(contract.allowed_purposes)}.",
        f"Coordinators allowed (key fingerprints): {', '.join(contract.allowed_coordinators)}.",
        (f"Jurisdictions: {', '.join(contract.jurisdictions)}; legal bases: {', '.join(contract.legal_bases)}"
         + (f"; consent scope: {contract.consent_scope}." if contract.consent_scope else ".")),
        f"Privacy: {dp}; encryption {'required' if p.require_encryption else 'not required'}.",
        (f"Distributed noise allowed: under encryption the node adds only a share of the noise when a study's "
         f"guarantee needs at most {p.max_honest_required} honest contributors (the ledger records the share's own ε "
         "beside the release's)." if p.allow_distributed_noise else
         "Distributed noise not allowed: the node always adds the full noise of a release itself."),
        (f"Budget: ε ≤ {contract.budget.max_epsilon_per_study:g} per study and ≤ {contract.budget.max_epsilon_total:g} "
         "in total (basic composition)."),
        (f"Per-partner results {'may' if contract.release_per_partner else 'may not'} be released; a study needs at "
         f"least {contract.min_cohort} partners."),
        f"Results kept at most {contract.retention_days} days; the contract expires on {contract.expires.isoformat()}.",
    ]
    if not p.require_dp and d.enabled:
        lines.append(f"Disclosure control: cells under {d.min_cell_count} records withheld, one score bin per "
                     f"{d.min_records_per_score_bin} records, ≤ {d.max_models_per_task} models per task and "
                     f"{d.max_models_per_study} per study, ≤ {d.max_subgroup_levels} subgroup levels of ≥ "
                     f"{d.min_subgroup_size} records, ≤ {d.max_tasks_per_study} exact tasks per study.")
    return lines


def load_partner(sources: PartnerSources) -> PartnerView:
    view = PartnerView()
    try:
        entries = read_entries(sources.trail)
    except TrailError as exc:
        entries = []
        view.problems.append(f"the trail fails verification: {exc}")
    if entries:
        view.partner = str(entries[0].get("actor"))
    _tasks(view, entries)
    contract = None
    if sources.contract is not None:
        try:
            contract = load_contract(sources.contract)
            view.contract = contract_in_words(contract)
        except (ContractError, OSError) as exc:
            view.problems.append(str(exc))
    if sources.ledger is not None:
        try:
            _budget_from_ledger(view, sources.ledger)
        except (LedgerError, OSError) as exc:
            view.problems.append(str(exc))
    if not view.budget_source:
        _budget_from_trail(view, entries, contract)
    return view
