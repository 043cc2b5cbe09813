"""A data contract's `[monitoring]` terms, and the node's choice of a period's data (snapshots)."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest
import tomli_w

from federated.client.data import DataManifest
from federated.client.snapshots import snapshot_source
from federated.errors import RefusalError
from federated.messages.evaluation import MonitoringTask
from privacy.contract import ContractViolation, TaskRequest, load_contract

COORDINATOR = "c" * 64
CONTRACT = {
    "dataset_id": "site-a", "data_sha256": "a" * 64, "licence": "l", "provenance": "p", "sensitivity": "internal",
    "jurisdictions": ["EU"], "legal_bases": ["consent"], "allowed_purposes": ["monitoring"],
    "allowed_coordinators": [COORDINATOR], "protections": {"require_dp": True},
    "monitoring": {"max_epsilon_per_period": 1.0, "max_periods": 3, "allow_snapshots": False},
    "budget": {"max_epsilon_per_study": 3.0, "max_epsilon_total": 10.0}, "min_cohort": 2, "retention_days": 365,
    "expires": date(2030, 12, 31),
}
PERIOD = TaskRequest(
    purpose="monitoring", coordinator_key=COORDINATOR, jurisdiction="EU", legal_basis="consent", accepted_licences=("l",),
    retention_days=30, min_cohort=2, dp_enabled=True, epsilon_per_release=1.0, encrypted=False, today=date(2026, 11, 30),
    monitoring_periods=1,
)


@pytest.fixture
def contract(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "contract.toml"
    path.write_text(tomli_w.dumps(CONTRACT))
    return load_contract(path)


def test_a_period_within_the_terms_is_accepted(contract) -> None:  # type: ignore[no-untyped-def]
    contract.check(PERIOD)


@pytest.mark.parametrize(("change", "clause", "named"), [
    ({"monitoring_periods": 4}, "monitoring.max_periods", "period 4 of the study here, the contract allows 3"),
    ({"epsilon_per_release": 1.5}, "monitoring.max_epsilon_per_period", "1.5 exceeds the contract's 1.0"),
    ({"snapshot": True}, "monitoring.allow_snapshots", "does not allow snapshots"),
    ({"purpose": "training"}, "allowed_purposes", "'training'"),
])
def test_a_period_beyond_the_terms_is_refused_naming_the_clause(contract, change, clause, named) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractViolation) as caught:
        contract.check(dataclasses.replace(PERIOD, **change))
    assert caught.value.clause == clause and named in str(caught.value)


def test_an_evaluation_task_is_not_a_monitoring_period(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(tomli_w.dumps({**CONTRACT, "allowed_purposes": ["evaluation"]}))
    with pytest.raises(ContractViolation, match="allowed_purposes"):
        load_contract(path).check(PERIOD)
    load_contract(path).check(dataclasses.replace(PERIOD, purpose="evaluation", monitoring_periods=None))


class _Spec:
    def __init__(self, monitoring: MonitoringTask | None) -> None:
        self.monitoring = monitoring


MANIFEST = DataManifest(dataset_id="site-a", features=["x"], label="y", sha256="a" * 64,
                        snapshots=[{"number": 1, "path": "snap-1.csv", "sha256": "b" * 64}])  # type: ignore[list-item]


def test_a_snapshot_period_reads_the_declared_snapshot_against_its_own_hash(tmp_path: Path) -> None:
    path, manifest = snapshot_source(_Spec(MonitoringTask(period=1, periods=3, snapshot=1)), tmp_path / "data.csv",
                                     tmp_path / "site-a.toml", MANIFEST)
    assert path == tmp_path / "snap-1.csv" and manifest.sha256 == "b" * 64


def test_an_interval_period_reads_the_data_file(tmp_path: Path) -> None:
    path, manifest = snapshot_source(_Spec(MonitoringTask(period=2, periods=3)), tmp_path / "data.csv",
                                     tmp_path / "site-a.toml", MANIFEST)
    assert path == tmp_path / "data.csv" and manifest.sha256 == "a" * 64


def test_an_undeclared_snapshot_is_refused_with_its_clause(tmp_path: Path) -> None:
    with pytest.raises(RefusalError) as caught:
        snapshot_source(_Spec(MonitoringTask(period=2, periods=3, snapshot=2)), tmp_path / "d.csv", tmp_path / "m.toml", MANIFEST)
    assert caught.value.clause == "monitoring.snapshot" and "number 2" in str(caught.value)
