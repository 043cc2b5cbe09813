"""The study file: what a coordinator asks of the partners, validated before anything is sent.

A study is TOML validated by pydantic; unknown fields are errors, and every error names
the file and the field. Model files are hashed here, so the SHA-256 that goes into the
trail and the task is the hash of the bytes that are actually sent.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from accord.config_files import load_toml_model
from accord.hashing import sha256_file
from accord.models import Strict
from federated.errors import ConfigError
from privacy.dp_sgd_plan import DPSGDSettings  # the `[training.privacy]` table: the trainer's own settings

METRICS: tuple[Metric, ...] = ("accuracy", "precision", "recall", "f1", "auroc", "brier", "ece", "log_loss")
Metric = Literal["accuracy", "precision", "recall", "f1", "auroc", "brier", "ece", "log_loss"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _resolve(path: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    return (Path(base) / path).resolve() if base is not None and not path.is_absolute() else path


class CandidateModel(Strict):
    """One ONNX model to evaluate: float32 input [N, features] -> probabilities [N, classes]."""

    name: str
    path: Path
    sha256: str | None = Field(default=None, description="If given, the file must hash to it.")
    output: str = "probabilities"

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("path")
    @classmethod
    def _path_exists(cls, value: Path, info: ValidationInfo) -> Path:
        value = _resolve(value, info)
        if not value.is_file():
            raise ValueError(f"model file not found: {value}")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be 64 lowercase hex characters")
        return value


class EvaluationPrivacy(Strict):
    """Differential privacy for evaluation statistics: one Gaussian release per partner per round.

    The neighbouring relation is add/remove one record. `epsilon` and `delta` cover one
    round's release of every model's statistics together; each record's log loss is clipped
    to `loss_bound` so that its contribution is bounded.
    """

    enabled: bool = False
    epsilon: Annotated[float, Field(gt=0)] = 1.0
    delta: Annotated[float, Field(gt=0, lt=1)] = 1e-6
    loss_bound: Annotated[float, Field(gt=0, le=100)] = 10.0


class EvaluationSettings(Strict):
    """How predictions are summarised into sufficient statistics."""

    metrics: list[Metric] = Field(default_factory=lambda: list(METRICS))
    num_classes: Annotated[int, Field(ge=2, le=1000)] = 2
    positive_class: Annotated[int, Field(ge=0)] = 1
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    score_bins: Annotated[int, Field(ge=10, le=10000)] = 1000
    calibration_bins: Annotated[int, Field(ge=2, le=100)] = 10
    subgroup_levels: list[str] = Field(default_factory=list)
    privacy: EvaluationPrivacy = EvaluationPrivacy()

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationSettings:
        if self.positive_class >= self.num_classes:
            raise ValueError(f"positive_class {self.positive_class} >= num_classes {self.num_classes}")
        if self.score_bins % self.calibration_bins:
            raise ValueError(
                f"score_bins ({self.score_bins}) must be a multiple of calibration_bins "
                f"({self.calibration_bins})"
            )
        if len(set(self.subgroup_levels)) != len(self.subgroup_levels):
            raise ValueError("subgroup_levels must be distinct")
        return self


AGGREGATORS = ("fedavg", "fedmedian", "trimmed_mean", "krum", "multikrum")


class ValidationSettings(Strict):
    """What a validation report adds to the pooled metrics: operating points, targets and decision-curve
    thresholds (coordinator-side post-processing of the released sums; partners never see this section)."""

    thresholds: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(
        default_factory=list, description="extra thresholds for sensitivity/specificity/PPV/NPV (the study's own is always reported)")
    target_specificities: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(default_factory=lambda: [0.9, 0.95])
    target_sensitivities: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(default_factory=lambda: [0.9, 0.95])
    net_benefit_thresholds: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(
        default_factory=lambda: [0.05, 0.1, 0.2, 0.3])
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95


class TrainingSettings(Strict):
    """What partners train and how the coordinator combines their updates."""

    architecture: str
    num_features: Annotated[int, Field(ge=1)]
    architecture_options: dict[str, int | float | str | list[int]] = Field(default_factory=dict)
    initial_weights: Path | None = None
    initial_weights_sha256: str | None = None
    seed: int = 0
    local_epochs: Annotated[int, Field(ge=1, le=1000)] = 1
    batch_size: Annotated[int, Field(ge=1)] = 64
    learning_rate: Annotated[float, Field(gt=0)] = 0.1
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    aggregator: Literal["fedavg", "fedmedian", "trimmed_mean", "krum", "multikrum"] = "fedavg"
    trim_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.2
    krum_byzantine: Annotated[int, Field(ge=0)] = 1
    max_update_norm: Annotated[float, Field(gt=0)] = 100.0
    privacy: DPSGDSettings = DPSGDSettings(enabled=False)

    @field_validator("initial_weights")
    @classmethod
    def _weights_exist(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value = _resolve(value, info)
        if not value.is_file():
            raise ValueError(f"initial weights file not found: {value}")
        return value


class EncryptionSettings(Strict):
    """Homomorphically encrypted aggregation (BFV, `crypto.he_*`): the coordinator only adds ciphertexts.

    `public_context` is the coordinator's public context file from `python -m crypto.keys init`
    (no key of any kind; a file holding a secret key is refused). `decryptors` are the partners
    asked, in order, to decrypt a round's aggregate (default: every contributor, in the order their
    results arrived). `max_records_per_partner` bounds what one partner may add to any sum: it sets
    the encoding's bounds, and a partner holding more records refuses the task.
    """

    enabled: bool = False
    public_context: Path | None = None
    decryptors: list[str] | None = None
    max_records_per_partner: Annotated[int, Field(ge=1, le=10**7)] = 100_000

    @field_validator("public_context")
    @classmethod
    def _context_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value = _resolve(value, info)
        if not value.is_file():
            raise ValueError(f"public context file not found: {value}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> EncryptionSettings:
        if self.enabled and self.public_context is None:
            raise ValueError("encryption is enabled but public_context is not set (the he-public-context.json file)")
        if self.decryptors is not None and (not self.decryptors or len(set(self.decryptors)) != len(self.decryptors)):
            raise ValueError("decryptors must be a non-empty list of distinct partner ids (or left out: all partners)")
        return self


class Governance(Strict):
    """What the study declares for partners' data contracts and the record of processing.

    Partners' nodes compare these with their contracts: jurisdiction, legal basis, the
    licences the coordinator accepts, how long results are kept. Undeclared values fail
    any contract clause that needs them.
    """

    controller: str = ""
    jurisdiction: str | None = None
    legal_basis: str | None = None
    accepted_licences: list[str] = Field(default_factory=list)
    retention_days: Annotated[int, Field(ge=0)] | None = None
    recipients: list[str] = Field(default_factory=list)


class Study(Strict):
    """A study as the coordinator submits it."""

    id: str
    purpose: Literal["evaluation", "training"]
    title: str = ""
    models: list[CandidateModel] = Field(default_factory=list)
    training: TrainingSettings | None = None
    evaluation: EvaluationSettings = EvaluationSettings()
    validation: ValidationSettings = ValidationSettings()
    encryption: EncryptionSettings = EncryptionSettings()
    governance: Governance = Governance()
    rounds: Annotated[int, Field(ge=1, le=10000)] = 1
    min_cohort: Annotated[int, Field(ge=1)] = 2
    round_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    cohort_timeout_s: Annotated[float, Field(gt=0)] = 300.0
    # Who should join: partner names (their partner ids) or a count. The study starts once `min_cohort`
    # nodes are connected and either all expected partners are, or `expected_wait_s` (default:
    # cohort_timeout_s) has passed since it began waiting; the report names expected partners that never answered.
    expected_partners: list[str] | Annotated[int, Field(ge=1)] | None = None
    expected_wait_s: Annotated[float, Field(ge=0)] | None = None
    output_dir: Path

    @property
    def expected_count(self) -> int:
        """How many partners the study waits for: the expected ones, else the minimum cohort."""
        if self.expected_partners is None:
            return self.min_cohort
        return len(self.expected_partners) if isinstance(self.expected_partners, list) else self.expected_partners

    @field_validator("id")
    @classmethod
    def _id_is_simple(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("output_dir")
    @classmethod
    def _resolve_output(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)

    @model_validator(mode="after")
    def _fits_purpose(self) -> Study:
        names = [model.name for model in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be distinct (got {names})")
        if isinstance(self.expected_partners, list) and len(set(self.expected_partners)) != len(self.expected_partners):
            raise ValueError(f"expected_partners: names must be distinct (got {self.expected_partners})")
        if self.expected_partners is not None and self.expected_count < self.min_cohort:
            raise ValueError(f"expected_partners: {self.expected_count} expected, fewer than min_cohort = {self.min_cohort}")
        if self.purpose == "evaluation" and not self.models:
            raise ValueError("an evaluation study needs at least one [[models]] entry")
        if self.purpose == "training" and self.training is None:
            raise ValueError("a training study needs a [training] table")
        if self.purpose == "training" and self.models:
            raise ValueError("a training study evaluates its own global model; remove [[models]]")
        if self.encryption.enabled and self.training is not None and self.training.aggregator != "fedavg":
            raise ValueError(
                f"encryption.enabled: the {self.training.aggregator!r} aggregator needs each partner's update in "
                "plaintext, and with encryption the coordinator only sees their sum; use aggregator = \"fedavg\" "
                "(robustness then rests on partner-side update checks and DP clipping) or turn encryption off"
            )
        return self


class ResolvedModel(Strict):
    """A candidate model with the hash of the bytes that will be sent."""

    name: str
    path: Path
    sha256: str
    output: str


def load_study(path: Path) -> Study:
    """Validate the study file at `path`; raise `ConfigError` naming the file and field."""
    return load_toml_model(Path(path), Study, error=ConfigError)


def resolve_models(study: Study, source: Path) -> list[ResolvedModel]:
    """Hash every model file; a declared `sha256` that does not match is a `ConfigError`."""
    resolved = []
    for index, model in enumerate(study.models):
        digest = sha256_file(model.path)
        if model.sha256 is not None and model.sha256 != digest:
            raise ConfigError(
                f"{source}: models.{index}.sha256: {model.path} hashes to {digest}, "
                f"not the declared {model.sha256}"
            )
        resolved.append(ResolvedModel(name=model.name, path=model.path, sha256=digest, output=model.output))
    return resolved
