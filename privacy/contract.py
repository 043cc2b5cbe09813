"""A partner's data contract: the law its node applies to every task, before touching data.

One TOML file per dataset, validated by pydantic (unknown fields are errors, every error
names the file and the field). `DataContract.check(request)` compares one task's request
with every clause and raises `ContractViolation` naming the first clause that fails and the
value that failed it; `DataContract.evaluate(request)` reports every clause, for the
`python -m federated.client check` dry run. The node also refuses to start with a contract
whose data hash does not match its data, or that has expired.

DP is required unless the contract says `protections.allow_exact_statistics = true`. A release
without DP is then held to the `[disclosure]` clauses: caps on the task's shape (score bins per
record, models per task and per study, subgroup levels, tasks per study), checked here, and
small-cell suppression, applied by the node (`federated.evaluation.disclosure`) after the
statistics are computed. Under DP those clauses do not apply: the noise and the ledger protect.

This module must never import `federated`, and never treat a missing value in a request as
permission: a clause that needs a value the study does not declare fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from accord.config_files import load_toml_model
from accord.errors import ExitCode
from accord.models import Strict
from privacy.errors import PrivacyError

Purpose = Literal["evaluation", "training", "monitoring"]
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
    """What every task must apply to this dataset.

    DP is required unless the contract opts out in so many words: `allow_exact_statistics = true`
    (then `require_dp` defaults to false). `require_dp = false` alone is an error, so that no
    contract releases exact statistics by leaving a line out.
    """

    require_dp: bool = True
    allow_exact_statistics: bool = False
    max_epsilon_per_release: Annotated[float, Field(gt=0)] | None = None
    require_encryption: bool = False
    # Distributed noise (opt-in): under encryption the node adds only a share N(0, σ²/t) of a release's noise
    # when the study's t (honest contributors its guarantee needs, this partner counted) is at most
    # `max_honest_required`; otherwise it adds the full local noise. The ledger charges the release's ε
    # (which holds while at least t contributors are honest) and records the share's own ε beside it.
    allow_distributed_noise: bool = False
    max_honest_required: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _dp_follows_the_opt_out(cls, data: object) -> object:
        if isinstance(data, dict) and "require_dp" not in data and data.get("allow_exact_statistics") is True:
            return {**data, "require_dp": False}
        return data

    @model_validator(mode="after")
    def _exact_only_when_said(self) -> Protections:
        if not self.require_dp and not self.allow_exact_statistics:
            raise ValueError("require_dp = false releases exact statistics: the contract must also say "
                             "allow_exact_statistics = true")
        if self.require_dp and self.allow_exact_statistics:
            raise ValueError("allow_exact_statistics = true contradicts require_dp = true")
        if self.allow_distributed_noise and self.max_honest_required is None:
            raise ValueError("allow_distributed_noise = true needs max_honest_required: the most honest contributors "
                             "(this partner counted) the node accepts that a study's guarantee relies on")
        if self.max_honest_required is not None and not self.allow_distributed_noise:
            raise ValueError("max_honest_required is only used with allow_distributed_noise = true")
        return self


class Disclosure(Strict):
    """Disclosure control on releases without DP (DataSHIELD-style filters, stricter defaults).

    Defaults: no released cell (a count, a histogram bin, a bin's score sum, a subgroup cell) stands
    for fewer than 5 records: DataSHIELD's `nfilter.tab` is 3 and its authors call it easy to get
    around; 5 is the small-number rule many health statistics publishers apply (counts 1-4
    withheld). At most one score bin per 5 records; 5 models per task and 10 per study; 10 subgroup
    levels (DataSHIELD allows 40), each of at least 10 records; 10 exact tasks per study.
    `enabled = false` releases exact statistics as computed (only with `allow_exact_statistics`).
    """

    enabled: bool = True
    min_cell_count: Annotated[int, Field(ge=1)] = 5
    min_records_per_score_bin: Annotated[int, Field(ge=1)] = 5
    max_models_per_task: Annotated[int, Field(ge=1)] = 5
    max_models_per_study: Annotated[int, Field(ge=1)] = 10
    max_subgroup_levels: Annotated[int, Field(ge=0)] = 10
    min_subgroup_size: Annotated[int, Field(ge=1)] = 10
    max_tasks_per_study: Annotated[int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _consistent(self) -> Disclosure:
        if self.min_subgroup_size < self.min_cell_count:
            raise ValueError(f"min_subgroup_size ({self.min_subgroup_size}) is below min_cell_count ({self.min_cell_count})")
        if self.max_models_per_study < self.max_models_per_task:
            raise ValueError(f"max_models_per_study ({self.max_models_per_study}) is below max_models_per_task "
                             f"({self.max_models_per_task})")
        return self


class MonitoringTerms(Strict):
    """What a monitoring study (purpose "monitoring": one evaluation per period) may ask of this dataset.

    Every period is a release charged to the ledger under the budget's caps; these terms cap it further:
    ε per period, and how many periods one study may run here (the node counts its own monitoring tasks
    of the study, whatever period number the coordinator claims). `allow_snapshots`: a period may read
    a data snapshot the partner declared in its data manifest (with its own SHA-256) instead of the
    data file this contract names.
    """

    max_epsilon_per_period: Annotated[float, Field(gt=0)] | None = None
    max_periods: Annotated[int, Field(ge=1)] | None = None
    allow_snapshots: bool = False


class Budget(Strict):
    """ε caps fed to the partner's ledger (the node CLI may only lower them)."""

    max_epsilon_per_study: Annotated[float, Field(gt=0)]
    max_epsilon_total: Annotated[float, Field(gt=0)]


class DataContract(Strict):
    """One dataset's contract (field by field in docs/contracts.md)."""

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
    disclosure: Disclosure = Disclosure()
    monitoring: MonitoringTerms = MonitoringTerms()
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

    def noise_shares(self, request: TaskRequest) -> int:
        """t when the node adds only a share N(0, σ²/t) of the noise (distributed noise); 1: the full local noise.

        A share only when the study asks for distributed noise, the contract allows it for the study's t, and
        the task is encrypted over a cohort of at least t; a task the clause `protections.allow_distributed_noise`
        refuses gets 1 here (it is refused before any noise is drawn)."""
        if not _distributed_noise(self, request).ok:
            return 1
        terms, wanted = self.protections, request.honest_required
        if request.noise != "distributed" or wanted is None or request.cohort is None or not terms.allow_distributed_noise:
            return 1
        return wanted if terms.max_honest_required is not None and wanted <= terms.max_honest_required else 1


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
    records: int | None = None  # the partner's record count (None: unknown, as in a dry run without data)
    release: ReleaseShape | None = None  # what the task's statistics hold (None: undeclared)
    monitoring_periods: int | None = None  # a monitoring task: periods of the study including this one (None: not one)
    snapshot: bool = False  # the task reads a data snapshot declared in the manifest
    noise: str = "local"  # "distributed": the study asks partners to add only a share of the noise
    honest_required: int | None = None  # the study's t, resolved for the announced cohort
    cohort: int | None = None  # the announced cohort's size (None: the task is not encrypted)


@dataclass(frozen=True)
class ReleaseShape:
    """What one task's statistics hold, and what the node released exactly in this study before it."""

    score_bins: int
    models: tuple[str, ...]  # the models' identities (SHA-256)
    subgroup_levels: int
    study_tasks: int = 0  # tasks of this study the node admitted for exact release before this one
    study_models: frozenset[str] = frozenset()  # models those tasks ran


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


def _distributed_noise(c: DataContract, r: TaskRequest) -> ClauseResult:
    """Which noise the node adds (`DataContract.noise_shares`); a task that asks this opted-in node for a share
    whose sum could not carry the central noise (not encrypted, or a cohort of fewer than t) fails."""
    clause, terms, wanted = "protections.allow_distributed_noise", c.protections, r.honest_required
    if r.noise != "distributed" or wanted is None:
        return ClauseResult(clause, True, "local noise (the study does not ask for distributed noise)")
    if not terms.allow_distributed_noise or terms.max_honest_required is None:
        return ClauseResult(clause, True, "the node adds the full local noise: the contract does not allow distributed noise")
    if r.cohort is None:
        return ClauseResult(clause, False, "the study asks for distributed noise on a task that is not encrypted: "
                            "a share of the noise would leave in plaintext")
    if wanted > terms.max_honest_required:
        return ClauseResult(clause, True, f"the node adds the full local noise: the study's guarantee needs {wanted} honest "
                            f"contributors, more than the contract's max_honest_required {terms.max_honest_required}")
    if r.cohort < wanted:
        return ClauseResult(clause, False, f"the task's cohort has {r.cohort} contributors, fewer than the {wanted} honest "
                            "ones the distributed guarantee needs: its sum could not carry one central release's noise")
    return ClauseResult(clause, True, f"distributed noise: a share σ²/{wanted}; the release's ε holds while at least "
                        f"{wanted} of the {r.cohort} contributors are honest")


def _monitoring(c: DataContract, r: TaskRequest) -> ClauseResult:
    """The `[monitoring]` terms on a monitoring task (purpose "monitoring" itself is `allowed_purposes`)."""
    if r.purpose != "monitoring":
        return ClauseResult("monitoring", True, "not a monitoring task")
    terms = c.monitoring
    periods = r.monitoring_periods
    if terms.max_periods is not None and (periods is None or periods > terms.max_periods):
        return ClauseResult("monitoring.max_periods", False,
                            f"this would be monitoring period {periods} of the study here, the contract allows {terms.max_periods}")
    cap = terms.max_epsilon_per_period
    if cap is not None and (r.epsilon_per_release is None or r.epsilon_per_release > cap):
        return ClauseResult("monitoring.max_epsilon_per_period", False,
                            f"ε per period {r.epsilon_per_release} exceeds the contract's {cap}")
    if r.snapshot and not terms.allow_snapshots:
        return ClauseResult("monitoring.allow_snapshots", False,
                            "the period reads a declared data snapshot and the contract does not allow snapshots")
    return ClauseResult("monitoring", True, f"monitoring period {periods} within the contract's terms")


def _disclosure(c: DataContract, r: TaskRequest) -> ClauseResult:
    """The `[disclosure]` caps on a release without DP (the first that fails, or one verdict for all)."""
    terms = c.disclosure
    if r.dp_enabled:
        return ClauseResult("disclosure", True, "DP on: the noise and the ledger protect the release")
    if not terms.enabled:
        return ClauseResult("disclosure", True, "disclosure control disabled by the contract: exact statistics")
    shape = r.release
    if shape is None or r.records is None:
        return ClauseResult("disclosure", False, "the release's shape or this partner's record count is unknown (not checked)")
    models = len(set(shape.models))
    in_study = len(shape.study_models | set(shape.models))
    for clause, ok, failed in (
        ("disclosure.max_models_per_task", models <= terms.max_models_per_task,
         f"the task evaluates {models} models, the contract allows {terms.max_models_per_task} per task"),
        ("disclosure.max_models_per_study", in_study <= terms.max_models_per_study,
         f"the study would have run {in_study} distinct models here, the contract allows {terms.max_models_per_study}"),
        ("disclosure.max_tasks_per_study", shape.study_tasks < terms.max_tasks_per_study,
         f"this node already answered {shape.study_tasks} tasks of the study without DP, the contract allows "
         f"{terms.max_tasks_per_study}"),
        ("disclosure.max_subgroup_levels", shape.subgroup_levels <= terms.max_subgroup_levels,
         f"the study asks for {shape.subgroup_levels} subgroup levels, the contract allows {terms.max_subgroup_levels}"),
        # The last two depend on the record count: their text names the contract's terms, not the count.
        ("disclosure.min_cell_count", r.records >= terms.min_cell_count,
         f"this partner holds fewer records than the contract's minimum cell count {terms.min_cell_count}"),
        ("disclosure.min_records_per_score_bin", shape.score_bins * terms.min_records_per_score_bin <= r.records,
         f"{shape.score_bins} score bins exceed this partner's cap of one bin per "
         f"{terms.min_records_per_score_bin} records"),
    ):
        if not ok:
            return ClauseResult(clause, False, failed)
    return ClauseResult("disclosure", True, f"{models} models, {shape.score_bins} score bins, {shape.subgroup_levels} "
                                            f"subgroup levels within the caps; cells under {terms.min_cell_count} records suppressed")


_CLAUSES = (
    _expiry, _purpose, _coordinator, _jurisdiction, _legal_basis, _licence, _retention, _cohort, _dp, _encryption,
    _distributed_noise, _disclosure, _monitoring,
)


def load_contract(path: Path) -> DataContract:
    """Validate a contract file; `ContractError` names the file and the field."""
    return load_toml_model(Path(path), DataContract, error=ContractError)
