"""A partner's data contract: the law its node applies to every task, before touching data.

One TOML file per dataset, validated by pydantic (unknown fields are errors, every error
names the file and the field). `DataContract.check(request)` compares one task's request
with every clause and raises `ContractViolation` naming the first clause that fails and the
value that failed it; `DataContract.evaluate(request)` reports every clause, for the
`python -m federated.client check` dry run. The node also refuses to start with a contract
whose data hash does not match its data, or that has expired.

This module must never import `federated`, and never treat a missing value in a request as
permission: a clause that needs a value the study does not declare fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from accord.config_files import load_toml_model
from accord.errors import ExitCode
from accord.models import Strict
from privacy.errors import PrivacyError

Purpose = Literal["evaluation", "training"]
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class ContractError(PrivacyError):
    """A contract file is malformed, or does not fit the data it governs."""

    exit_code = ExitCode.INVALID_INPUT


class ContractViolation(PrivacyError):
    """A task breaks a clause of the partner's contract."""

    exit_code = ExitCode.REFUSED

    def __init__(self, clause: str, message: str) -> None:
        super().__init__(f"contract clause {clause!r}: {message}")
        self.clause = clause


class Protections(Strict):
    """What every task must apply to this dataset."""

    require_dp: bool = True
    max_epsilon_per_release: Annotated[float, Field(gt=0)] | None = None
    require_encryption: bool = False


class Budget(Strict):
    """ε caps fed to the partner's ledger (the node CLI may only lower them)."""

    max_epsilon_per_study: Annotated[float, Field(gt=0)]
    max_epsilon_total: Annotated[float, Field(gt=0)]


class DataContract(Strict):
    """One dataset's contract (field by field in the README)."""

    dataset_id: str
    data_sha256: str
    licence: str
    provenance: str
    sensitivity: Literal["public", "internal", "confidential", "special_category"]
    jurisdictions: list[str] = Field(min_length=1)
    legal_bases: list[str] = Field(min_length=1)
    consent_scope: str = ""
    allowed_purposes: list[Purpose] = Field(min_length=1)
    allowed_coordinators: list[str] = Field(min_length=1)
    release_per_partner: bool = False
    protections: Protections = Protections()
    budget: Budget
    min_cohort: Annotated[int, Field(ge=1)] = 2
    retention_days: Annotated[int, Field(ge=0)]
    expires: date

    @field_validator("data_sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not _FINGERPRINT.match(value):
            raise ValueError("must be 64 lowercase hex characters")
        return value

    @field_validator("allowed_coordinators")
    @classmethod
    def _fingerprints(cls, value: list[str]) -> list[str]:
        bad = [item for item in value if not _FINGERPRINT.match(item)]
        if bad:
            raise ValueError(f"must be SHA-256 key fingerprints (64 lowercase hex characters), got {bad}")
        return value

    def check_data(self, data_sha256: str, *, today: date, source: str = "contract") -> None:
        """Refuse a contract that does not govern this data file, or that has expired."""
        if data_sha256 != self.data_sha256:
            raise ContractError(f"{source}: data_sha256 {self.data_sha256} does not match the data ({data_sha256})")
        if today > self.expires:
            raise ContractError(f"{source}: expired on {self.expires.isoformat()}")

    def evaluate(self, request: TaskRequest) -> list[ClauseResult]:
        """Every clause's verdict on `request`, in a fixed order."""
        return [clause(self, request) for clause in _CLAUSES]

    def check(self, request: TaskRequest) -> None:
        """Raise `ContractViolation` for the first clause `request` breaks."""
        for result in self.evaluate(request):
            if not result.ok:
                raise ContractViolation(result.clause, result.detail)


@dataclass(frozen=True)
class TaskRequest:
    """What a task asks of the dataset, as the node's contract check sees it."""

    purpose: str
    coordinator_key: str | None
    jurisdiction: str | None
    legal_basis: str | None
    accepted_licences: tuple[str, ...]
    retention_days: int | None
    min_cohort: int
    dp_enabled: bool
    epsilon_per_release: float | None
    encrypted: bool
    today: date = field(default_factory=date.today)


@dataclass(frozen=True)
class ClauseResult:
    clause: str
    ok: bool
    detail: str


def _result(clause: str, ok: bool, failed: str, passed: str) -> ClauseResult:
    return ClauseResult(clause, ok, passed if ok else failed)


def _expiry(c: DataContract, r: TaskRequest) -> ClauseResult:
    return _result("expires", r.today <= c.expires, f"the contract expired on {c.expires}", f"valid until {c.expires}")


def _purpose(c: DataContract, r: TaskRequest) -> ClauseResult:
    return _result("allowed_purposes", r.purpose in c.allowed_purposes,
                   f"purpose {r.purpose!r} is not among {c.allowed_purposes}", f"purpose {r.purpose!r} allowed")


def _coordinator(c: DataContract, r: TaskRequest) -> ClauseResult:
    if r.coordinator_key is None:
        return ClauseResult("allowed_coordinators", False, "the coordinator's key is unknown (not checked)")
    return _result("allowed_coordinators", r.coordinator_key in c.allowed_coordinators,
                   f"coordinator key {r.coordinator_key} is not among the allowed coordinators",
                   f"coordinator key {r.coordinator_key[:16]}… allowed")


def _jurisdiction(c: DataContract, r: TaskRequest) -> ClauseResult:
    return _result("jurisdictions", r.jurisdiction in c.jurisdictions,
                   f"the study's jurisdiction {r.jurisdiction!r} is not among {c.jurisdictions}",
                   f"jurisdiction {r.jurisdiction!r} allowed")


def _legal_basis(c: DataContract, r: TaskRequest) -> ClauseResult:
    return _result("legal_bases", r.legal_basis in c.legal_bases,
                   f"the study's legal basis {r.legal_basis!r} is not among {c.legal_bases}",
                   f"legal basis {r.legal_basis!r} covered")


def _licence(c: DataContract, r: TaskRequest) -> ClauseResult:
    return _result("licence", c.licence in r.accepted_licences,
                   f"the study does not accept this dataset's licence {c.licence!r} (it accepts {list(r.accepted_licences)})",
                   f"licence {c.licence!r} accepted by the study")


def _retention(c: DataContract, r: TaskRequest) -> ClauseResult:
    ok = r.retention_days is not None and r.retention_days <= c.retention_days
    return _result("retention_days", ok,
                   f"the study keeps results {r.retention_days} days, the contract allows {c.retention_days}",
                   f"retention {r.retention_days} ≤ {c.retention_days} days")


def _cohort(c: DataContract, r: TaskRequest) -> ClauseResult:
    return _result("min_cohort", r.min_cohort >= c.min_cohort,
                   f"the study's minimum cohort {r.min_cohort} is below the contract's {c.min_cohort}",
                   f"minimum cohort {r.min_cohort} ≥ {c.min_cohort}")


def _dp(c: DataContract, r: TaskRequest) -> ClauseResult:
    if not c.protections.require_dp:
        return ClauseResult("protections.require_dp", True, "DP not required")
    if not r.dp_enabled:
        return ClauseResult("protections.require_dp", False, "the study releases results without differential privacy")
    cap = c.protections.max_epsilon_per_release
    if cap is not None and (r.epsilon_per_release is None or r.epsilon_per_release > cap):
        return ClauseResult("protections.max_epsilon_per_release", False,
                            f"ε per release {r.epsilon_per_release} exceeds the contract's {cap}")
    return ClauseResult("protections.require_dp", True, f"DP on, ε per release {r.epsilon_per_release}")


def _encryption(c: DataContract, r: TaskRequest) -> ClauseResult:
    ok = r.encrypted or not c.protections.require_encryption
    return _result("protections.require_encryption", ok, "the study does not encrypt what partners send",
                   "encryption on" if r.encrypted else "encryption not required")


_CLAUSES = (_expiry, _purpose, _coordinator, _jurisdiction, _legal_basis, _licence, _retention, _cohort, _dp, _encryption)


def load_contract(path: Path) -> DataContract:
    """Validate a contract file; `ContractError` names the file and the field."""
    return load_toml_model(Path(path), DataContract, error=ContractError)
