"""`python -m federated.client check`: would this node accept this study, and if not, why?

Runs every task the coordinator would send for the study (`federated.messages.study_tasks`: each
round, a training study's final evaluation, the decryptions of an encrypted study, the closing seal)
through the node's own gate (`federated.client.contract_gate`), before the study starts: every clause,
its verdict and the value it looked at, per task and merged per clause. The budget is checked against
a fresh ledger under the contract's caps, charged task by task as the node would: a study whose
rounds together exceed the per-study cap is refused at the round that would exceed it.

With `--data`/`--manifest` the data is loaded to check the contract's data hash and to compute a
training round's DP-SGD ε for this dataset's size; without them, `--records N` gives the size.
A task that uses no data (a decryption, the seal) is not checked against the contract; the node
checks only the coordinator's signatures and checkpoint, which need the running study.

With `--coordinator HOST:PORT` it also tries a TCP connection to the coordinator's SuperLink (a short
timeout; verdict `connectivity`), and with `--manifest` it checks that every model of the study takes as
many features as the manifest lists (verdict `model_fit`: an ONNX model's input width, a training
study's `num_features`).

Exit codes: 0 every clause passes · 3 invalid contract, study or data · 5 a clause (or connectivity, or model fit) fails.
"""

from __future__ import annotations

import json
import socket
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from accord.errors import AccordError, ExitCode
from accord.hashing import sha256_file
from federated.audit.keys import pinned_fingerprint
from federated.client.contract_gate import (
    charge,
    check_budget,
    contract_verdicts,
    open_ledger,
)
from federated.client.contract_request import released_models
from federated.client.costs import TaskCost
from federated.client.data import DataManifest, load_manifest, load_partner_data
from federated.client.exact_releases import StudyHistory
from federated.client.tasks import TASK_KINDS
from federated.client.task_kind import task_purpose
from federated.errors import RefusalError
from federated.messages.study_tasks import study_tasks
from federated.runtime.flower import parse_address
from federated.study import Study, load_study
from privacy import BudgetLedger
from privacy.contract import ClauseResult, DataContract, load_contract

console = Console(stderr=True, soft_wrap=True)


@dataclass(frozen=True)
class TaskVerdict:
    """The node's decision on one task of the study: each check's verdict (none for a task without data)."""

    label: str
    message_type: str
    clauses: list[ClauseResult]

    @property
    def accepted(self) -> bool:
        return all(clause.ok for clause in self.clauses)


def _budget_verdict(cost: TaskCost, contract: DataContract, ledger: BudgetLedger, study: str) -> ClauseResult:
    try:
        check_budget(
            cost, study=study, max_epsilon_total=contract.budget.max_epsilon_total,
            max_epsilon_per_study=contract.budget.max_epsilon_per_study,
            unprotected_allowed=not contract.protections.require_dp, ledger=lambda: ledger,
        )
    except RefusalError as exc:
        return ClauseResult(exc.clause, False, str(exc))
    if cost.private is None:
        return ClauseResult("privacy", True, f"no DP release ({cost.unprotected} without DP, allowed by the contract)")
    return ClauseResult("privacy", True, f"ε {cost.private.epsilon:.4g} fits the budget "
                                         f"({ledger.remaining(study_id=study) - cost.private.epsilon:.4g} left in this study)")


def check_tasks(
    contract: DataContract, study: Study, *, study_sha256: str, coordinator_key: str | None, records: int,
    today: date,
) -> list[TaskVerdict]:
    """The gate's verdict on every task of `study`, in the order the coordinator sends them."""
    verdicts: list[TaskVerdict] = []
    exact = StudyHistory()
    with tempfile.TemporaryDirectory(prefix="accord-check-") as scratch:
        ledger = open_ledger(Path(scratch) / "budget.sqlite", max_epsilon_total=contract.budget.max_epsilon_total,
                             max_epsilon_per_study=contract.budget.max_epsilon_per_study)
        for planned in study_tasks(study, study_sha256=study_sha256):
            kind = TASK_KINDS[planned.message_type]
            if not kind.uses_data:
                verdicts.append(TaskVerdict(planned.label, planned.message_type, []))
                continue
            cost = kind.cost(planned.spec, records)
            clauses = contract_verdicts(contract, purpose=task_purpose(kind, planned.spec), spec=planned.spec, cost=cost,
                                        coordinator_key=coordinator_key, today=today, records=records, history=exact)
            clauses.append(_budget_verdict(cost, contract, ledger, study.id))
            verdict = TaskVerdict(planned.label, planned.message_type, clauses)
            if verdict.accepted:  # the node spends only for a task it runs
                charge(ledger, cost, study=study.id)
                if cost.unprotected:  # and counts an exact release against the disclosure caps
                    exact = StudyHistory(exact.tasks + 1, exact.models | set(released_models(planned.spec)))
            verdicts.append(verdict)
    return verdicts


def merge_verdicts(tasks: list[TaskVerdict]) -> list[ClauseResult]:
    """One verdict per clause over all tasks: refused if any task is refused, naming the first such task."""
    seen: dict[str, list[tuple[str, ClauseResult]]] = {}
    for task in tasks:
        for clause in task.clauses:
            seen.setdefault(clause.clause, []).append((task.label, clause))
    merged = []
    for name, verdicts in seen.items():
        failed = [(label, clause) for label, clause in verdicts if not clause.ok]
        if not failed:
            merged.append(verdicts[0][1])
            continue
        label, first = failed[0]
        also = f" (refused in {len(failed)} of {len(verdicts)} tasks: {', '.join(lb for lb, _ in failed)})" if len(failed) > 1 else ""
        merged.append(ClauseResult(name, False, f"{label}: {first.detail}{also}"))
    return merged


def check_study_tasks(
    contract_path: Path, study_path: Path, *, coordinator_key: str | None, data: Path | None, manifest: Path | None,
    records: int | None, today: date | None = None,
) -> tuple[list[ClauseResult], list[TaskVerdict]]:
    """The study-wide verdicts (data hash, dataset size) and the gate's verdict on every task."""
    contract = load_contract(contract_path)
    study = load_study(study_path)
    today = today or date.today()
    results: list[ClauseResult] = []
    if data is not None and manifest is not None:
        loaded = load_partner_data(data, load_manifest(manifest))
        records = loaded.size
        try:
            contract.check_data(loaded.data_sha256, today=today, source=str(contract_path))
            results.append(ClauseResult("data_sha256", True, f"governs {data} ({loaded.data_sha256[:16]}…)"))
        except AccordError as exc:
            results.append(ClauseResult("data_sha256", False, str(exc)))
    if study.training is not None and study.training.privacy.enabled and records is None:
        results.append(ClauseResult("records", False, "training ε depends on the dataset size: give --data/--manifest or --records"))
    exact = not (study.evaluation.privacy.enabled and (study.training is None or study.training.privacy.enabled))
    if exact and records is None and not contract.protections.require_dp and contract.disclosure.enabled:
        results.append(ClauseResult("records", False, "the disclosure caps depend on the dataset size: give --data/--manifest or --records"))
    tasks = check_tasks(contract, study, study_sha256=sha256_file(study_path), coordinator_key=coordinator_key,
                        records=records or 1, today=today)
    return results, tasks


def connectivity(address: str, *, timeout_s: float = 3.0) -> ClauseResult:
    """Whether a TCP connection to the coordinator's SuperLink opens within `timeout_s` (no TLS, no Flower)."""
    host, port = parse_address(address, option="--coordinator")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        return ClauseResult("connectivity", False, f"cannot reach {address} within {timeout_s:g} s ({exc.strerror or exc})")
    return ClauseResult("connectivity", True, f"{address} accepts connections")


def model_fit(study: Study, manifest: DataManifest) -> list[ClauseResult]:
    """Each model's input width against the manifest's feature count."""
    width = len(manifest.features)
    if study.training is not None:
        wanted = study.training.num_features
        return [ClauseResult("model_fit", wanted == width,
                             f"training model ({study.training.architecture}) takes {wanted} features, the manifest lists {width}")]
    results = []
    if study.evaluation.task != "regression" and manifest.label_type == "number":
        results.append(ClauseResult("model_fit", False, 'the study evaluates classifiers; the manifest declares its label '
                                    'as numbers (label_type = "number"), so every task would be refused'))
    for model in study.models:
        expected = onnx_input_width(model.path.read_bytes())
        if expected is None:
            results.append(ClauseResult("model_fit", True, f"{model.name}: input width not fixed in the model; the manifest lists {width}"))
        else:
            results.append(ClauseResult("model_fit", expected == width, f"{model.name} takes {expected} features, the manifest lists {width}"))
    return results


def onnx_input_width(model_bytes: bytes) -> int | None:
    """The second dimension of an ONNX model's one input, if fixed (None otherwise or if unreadable)."""
    import onnxruntime as ort  # the node's extra

    try:
        inputs = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"]).get_inputs()
    except Exception:  # onnxruntime raises untyped errors; the task would name the problem
        return None
    shape = inputs[0].shape if len(inputs) == 1 else []
    return shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None


def check_study(
    contract_path: Path, study_path: Path, *, coordinator_key: str | None, data: Path | None, manifest: Path | None,
    records: int | None, today: date | None = None,
) -> list[ClauseResult]:
    """Every clause's verdict over all the study's tasks, as the node would decide them."""
    results, tasks = check_study_tasks(contract_path, study_path, coordinator_key=coordinator_key, data=data,
                                       manifest=manifest, records=records, today=today)
    return results + merge_verdicts(tasks)


def check(
    contract: Annotated[Path, typer.Option(help="The partner's data contract (TOML).")],
    study: Annotated[Path, typer.Option(help="The study file the coordinator proposes.")],
    coordinator_key: Annotated[str | None, typer.Option(help="The coordinator's public key (PEM file) or fingerprint.")] = None,
    data: Annotated[Path | None, typer.Option(help="The data file the contract governs (checks its hash; sizes DP-SGD).")] = None,
    manifest: Annotated[Path | None, typer.Option(help="The data's manifest (with --data).")] = None,
    records: Annotated[int | None, typer.Option(min=1, help="Dataset size, if --data is not given (sizes DP-SGD's ε).")] = None,
    coordinator: Annotated[str | None, typer.Option(help="The coordinator's SuperLink, HOST:PORT: check that it accepts a TCP connection.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON on stdout.")] = False,
) -> None:
    """Check STUDY against CONTRACT clause by clause, as the partner's node would.

    With `--manifest`, also whether the study's models take the manifest's features; with `--coordinator`,
    whether the coordinator can be reached."""
    key = pinned_fingerprint(coordinator_key) if coordinator_key else None
    study_wide, tasks = check_study_tasks(contract, study, coordinator_key=key, data=data, manifest=manifest, records=records)
    results = study_wide + merge_verdicts(tasks)
    if manifest is not None:
        results += model_fit(load_study(study), load_manifest(manifest))
    if coordinator is not None:
        results.append(connectivity(coordinator))
    accepted = all(result.ok for result in results)
    if json_output:
        print(json.dumps({"accepted": accepted, "clauses": [r.__dict__ for r in results],
                          "tasks": [{"task": t.label, "message_type": t.message_type, "accepted": t.accepted,
                                     "clauses": [c.__dict__ for c in t.clauses]} for t in tasks]}, indent=2))
    else:
        table = Table(title=f"{contract} vs {study}")
        for column in ("clause", "verdict", "detail"):
            table.add_column(column)
        for result in results:
            table.add_row(result.clause, "[green]ok[/]" if result.ok else "[red]refused[/]", result.detail)
        console.print(table)
        for task in tasks:
            verdict = ("[green]would accept[/]" if task.accepted else "[red]would refuse[/]") if task.clauses else "uses no data"
            console.print(f"{task.label} ({task.message_type}): {verdict}")
        console.print("[green]this node would accept the study[/]" if accepted else "[red]this node would refuse the study[/]")
    if not accepted:
        raise typer.Exit(int(ExitCode.REFUSED))
