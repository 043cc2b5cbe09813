"""The study file: what a coordinator asks of the partners, validated before anything is sent.

A study is TOML validated by pydantic; unknown fields are errors, and every error names
the file and the field. Model files are hashed here, so the SHA-256 that goes into the
trail and the task is the hash of the bytes that are actually sent.
"""

from __future__ import annotations

import math
import itertools
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
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


_PRIVACY_FIELDS_SINCE_V1: dict[str, object] = {"noise": "local", "honest_required": None}


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
    # "distributed" (needs [encryption]): a partner whose contract allows it adds only a share N(0, σ²/t) of
    # the noise, so the decrypted sum of n shares carries at least one central release's σ² while at least
    # t = `honest_required` of the n contributors are honest; other partners add the full local noise.
    noise: Literal["local", "distributed"] = "local"
    honest_required: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="t: honest contributors the distributed guarantee needs (default ⌈n/2⌉ of the cohort)")

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # Schema evolution: fields added after v1 are left out at their defaults, so a spec that does not
        # use them hashes exactly as before (signed task hashes, old evidence packs).
        data: dict[str, object] = handler(self)
        for name, default in _PRIVACY_FIELDS_SINCE_V1.items():
            if getattr(self, name) == default:
                data.pop(name, None)
        return data

    @model_validator(mode="after")
    def _share_only_when_distributed(self) -> EvaluationPrivacy:
        if self.noise == "distributed" and not self.enabled:
            raise ValueError("noise = \"distributed\" needs enabled = true")
        if self.honest_required is not None and self.noise != "distributed":
            raise ValueError("honest_required: only used with noise = \"distributed\"")
        return self

    def honest_required_of(self, cohort: int) -> int:
        """t for a cohort of n contributors: the study's `honest_required`, else an honest majority ⌈n/2⌉."""
        return self.honest_required if self.honest_required is not None else max(1, -(-cohort // 2))


class RegressionSettings(Strict):
    """A regression study's statistics (`federated.evaluation.regression`): the residual histogram's edges
    (prediction − outcome, in the outcome's units) and the range outcomes and predictions are clipped to.

    `value_range` bounds what one record adds to every sum: DP and encryption need it (the noise's
    sensitivity, the slots' bounds). When set it is always applied, so choose it to cover plausible values."""

    residual_edges: list[float] = Field(min_length=2, max_length=1001)
    value_range: tuple[float, float] | None = None

    @field_validator("residual_edges")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if any(not b > a for a, b in itertools.pairwise(value)):
            raise ValueError("must be strictly ascending")
        return value

    @field_validator("value_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError("must be [low, high] with low < high")
        return value


# Fields added after specs were first signed: left out of a dump while at their default, so a spec
# that does not use them hashes (RFC 8785) exactly as before they existed. New fields are optional.
_EVALUATION_FIELDS_SINCE_V1 = {"task": "classification", "regression": None}


class EvaluationSettings(Strict):
    """How predictions are summarised into sufficient statistics.

    `task`: "classification" (probabilities, the default) or "regression" (one number per record, with
    the `[evaluation.regression]` table); the classification fields are then unused.
    """

    metrics: list[Metric] = Field(default_factory=lambda: list(METRICS))
    num_classes: Annotated[int, Field(ge=2, le=1000)] = 2
    positive_class: Annotated[int, Field(ge=0)] = 1
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    score_bins: Annotated[int, Field(ge=10, le=10000)] = 1000
    calibration_bins: Annotated[int, Field(ge=2, le=100)] = 10
    subgroup_levels: list[str] = Field(default_factory=list)
    privacy: EvaluationPrivacy = EvaluationPrivacy()
    task: Literal["classification", "regression"] = "classification"
    regression: RegressionSettings | None = None

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        for name, default in _EVALUATION_FIELDS_SINCE_V1.items():
            if getattr(self, name) == default:
                data.pop(name, None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationSettings:
        if self.task == "regression" and self.regression is None:
            raise ValueError('task = "regression" needs an [evaluation.regression] table (residual_edges, value_range)')
        if self.task != "regression" and self.regression is not None:
            raise ValueError('[evaluation.regression] is set but task is not "regression"')
        if self.regression is not None and self.privacy.enabled and self.regression.value_range is None:
            raise ValueError("regression.value_range: DP needs the range outcomes and predictions are clipped to "
                             "(it bounds what one record adds to each sum)")
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


# What a monitoring study compares besides the study's metrics: the share of positives (prevalence shift)
# and mean predicted minus observed positives (calibration-in-the-large); both drift either way.
DRIFT_METRICS = ("prevalence", "calibration_in_the_large")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


class MetricThreshold(Strict):
    """When a period's metric counts as degraded: it moved the wrong way by more than `max_drop` from the
    baseline, and the move is significant at level `alpha` (one-sided; two-sided for prevalence and
    calibration-in-the-large) once sampling and DP noise are accounted for."""

    max_drop: Annotated[float, Field(ge=0)]
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.01


class MonitoringSettings(Strict):
    """The `[monitoring]` table of a monitoring study: one evaluation round per period.

    `schedule = "interval"`: a period every `interval_s` seconds; `"snapshots"`: period p evaluates each
    partner's p-th data snapshot, declared in its data manifest with its own SHA-256. `baseline`: the
    first period, or `"reference"`: the `monitoring-baseline.json` of an earlier monitoring study
    (`reference`). Alerts go to the coordinator's trail, and to `alert_file` (JSON lines) and
    `webhook_url` (HTTP POST) when set.
    """

    schedule: Literal["interval", "snapshots"]
    interval_s: Annotated[float, Field(ge=0)] | None = None
    periods: Annotated[int, Field(ge=1, le=10000)]
    baseline: Literal["first_period", "reference"] = "first_period"
    reference: Path | None = None
    thresholds: dict[str, MetricThreshold] = Field(min_length=1)
    alert_file: Path | None = None
    webhook_url: str | None = None
    webhook_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0

    @field_validator("reference", "alert_file")
    @classmethod
    def _resolved(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not _URL.match(value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("thresholds")
    @classmethod
    def _known_metrics(cls, value: dict[str, MetricThreshold]) -> dict[str, MetricThreshold]:
        unknown = sorted(set(value) - set(METRICS) - set(DRIFT_METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}: use {[*METRICS, *DRIFT_METRICS]}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> MonitoringSettings:
        if self.schedule == "interval" and self.interval_s is None:
            raise ValueError("interval_s: required when schedule = \"interval\" (seconds between periods)")
        if self.schedule == "snapshots" and self.interval_s is not None:
            raise ValueError("interval_s: not used when schedule = \"snapshots\" (a period per declared snapshot)")
        if self.baseline == "reference" and self.reference is None:
            raise ValueError("reference: required when baseline = \"reference\" (an earlier study's monitoring-baseline.json)")
        if self.baseline == "reference" and not self.reference.is_file():  # type: ignore[union-attr]
            raise ValueError(f"reference: file not found: {self.reference}")
        if self.baseline == "first_period" and self.reference is not None:
            raise ValueError("reference: only used when baseline = \"reference\"")
        if self.baseline == "first_period" and self.periods < 2:
            raise ValueError("periods: the first period is the baseline, so a monitoring study needs at least 2")
        return self


class ShiftSettings(Strict):
    """The `[shift]` table: distribution shift between partners (`federated.evaluation.shift`).

    Partners count each listed feature (named as in their data manifests) on the study's fixed `edges`
    (ascending; values outside fall in the first or last bin) and release these histograms with their
    statistics, once per round and DP-noised like everything else. The coordinator computes each
    partner's PSI and Jensen–Shannon distance against `reference`: "pooled" (every partner together),
    "others" (the other partners pooled, so a shifted partner does not pull its own reference), or a
    partner's name; a feature is flagged above `psi_threshold` or `js_threshold`. Per-partner values exist
    only for partners whose contracts release per-partner statistics (never under encryption).
    """

    features: list[str] = Field(min_length=1, max_length=100)
    edges: dict[str, list[float]]
    reference: str = "pooled"
    psi_threshold: Annotated[float, Field(gt=0)] = 0.25
    js_threshold: Annotated[float, Field(gt=0, le=1)] = 0.2

    @model_validator(mode="after")
    def _edges_per_feature(self) -> ShiftSettings:
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"features must be distinct (got {self.features})")
        missing, extra = sorted(set(self.features) - set(self.edges)), sorted(set(self.edges) - set(self.features))
        if missing or extra:
            raise ValueError(f"edges: one list per feature; missing {missing}, not among features {extra}")
        for name in self.features:
            edges = self.edges[name]
            if not 2 <= len(edges) <= 101:
                raise ValueError(f"edges.{name}: 2 to 101 edges (1 to 100 bins), got {len(edges)}")
            if any(not math.isfinite(e) for e in edges) or any(not b > a for a, b in zip(edges, edges[1:])):
                raise ValueError(f"edges.{name}: finite and strictly ascending, got {edges}")
        return self


class Study(Strict):
    """A study as the coordinator submits it."""

    id: str
    purpose: Literal["evaluation", "training", "monitoring"]
    title: str = ""
    models: list[CandidateModel] = Field(default_factory=list)
    training: TrainingSettings | None = None
    evaluation: EvaluationSettings = EvaluationSettings()
    validation: ValidationSettings = ValidationSettings()
    encryption: EncryptionSettings = EncryptionSettings()
    governance: Governance = Governance()
    monitoring: MonitoringSettings | None = None
    shift: ShiftSettings | None = None
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
        if self.purpose in ("evaluation", "monitoring") and not self.models:
            raise ValueError(f"an {self.purpose} study needs at least one [[models]] entry")
        if self.purpose == "monitoring":
            self._fits_monitoring()
        elif self.monitoring is not None:
            raise ValueError(f"monitoring: a [monitoring] table needs purpose = \"monitoring\" (got {self.purpose!r})")
        if self.purpose == "training" and self.training is None:
            raise ValueError("a training study needs a [training] table")
        if self.purpose == "training" and self.models:
            raise ValueError("a training study evaluates its own global model; remove [[models]]")
        if self.purpose != "evaluation" and self.evaluation.task == "regression":
            raise ValueError(f'evaluation.task: task = "regression" is for evaluation studies (this one is {self.purpose!r})')
        if self.evaluation.task == "regression" and self.evaluation.privacy.noise != "local":
            raise ValueError('evaluation.privacy.noise: regression statistics take local noise only (noise = "local")')
        regression = self.evaluation.regression
        if self.encryption.enabled and regression is not None and regression.value_range is None:
            raise ValueError("evaluation.regression.value_range: encryption needs the range outcomes and predictions are "
                             "clipped to (it bounds every encrypted sum)")
        if self.evaluation.privacy.noise == "distributed" and not self.encryption.enabled:
            raise ValueError("evaluation.privacy.noise: \"distributed\" noise is only a share of a release, safe only "
                             "inside an encrypted sum; enable [encryption] or use noise = \"local\"")
        if self.evaluation.privacy.noise == "distributed" and self.evaluation.task == "regression":
            raise ValueError("evaluation.privacy.noise: distributed noise is built for classification statistics; a "
                             "regression study uses noise = \"local\"")
        if self.encryption.enabled and self.training is not None and self.training.aggregator != "fedavg":
            raise ValueError(
                f"encryption.enabled: the {self.training.aggregator!r} aggregator needs each partner's update in "
                "plaintext, and with encryption the coordinator only sees their sum; use aggregator = \"fedavg\" "
                "(robustness then rests on partner-side update checks and DP clipping) or turn encryption off"
            )
        return self


    @model_validator(mode="after")
    def _shift_fits(self) -> Study:
        shift = self.shift
        if shift is None:
            return self
        if self.evaluation.task != "classification":
            raise ValueError('shift: feature shift is computed for classification studies (evaluation.task = "classification")')
        named = shift.reference not in ("pooled", "others")
        if named and isinstance(self.expected_partners, list) and shift.reference not in self.expected_partners:
            raise ValueError(f"shift.reference: {shift.reference!r} is neither \"pooled\", \"others\" nor one of "
                             f"expected_partners {self.expected_partners}")
        return self

    def _fits_monitoring(self) -> None:
        if self.monitoring is None:
            raise ValueError("monitoring: a monitoring study needs a [monitoring] table (schedule, periods, thresholds)")
        if self.rounds != 1:
            raise ValueError("rounds: a monitoring study runs one round per period; set [monitoring] periods instead")
        if self.training is not None:
            raise ValueError("training: a monitoring study evaluates deployed [[models]]; remove [training]")
        needed = {name for name in self.monitoring.thresholds if name not in DRIFT_METRICS}
        missing = sorted(needed - set(self.evaluation.metrics))
        if missing:
            raise ValueError(f"monitoring.thresholds: {missing} not among evaluation.metrics {self.evaluation.metrics}")
        if self.evaluation.task != "classification" or self.evaluation.num_classes != 2:
            raise ValueError("evaluation: monitoring compares binary classifiers (task = \"classification\", num_classes = 2)")


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
