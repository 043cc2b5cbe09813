"""What travels between coordinator and partner, and the checks on both ends.

A task is a `RecordDict` with a JSON spec (validated by pydantic, unknown fields refused)
and the candidate models as ONNX bytes, each checked against its declared SHA-256 before
use. A reply carries a status, the partner's identity and hashes, and per-model
statistics as numeric arrays (Flower serialises them with `np.save(allow_pickle=False)`).
Nothing here ever unpickles, and nothing raw from the partner's data is placed in a reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import rfc8785
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from pydantic import Field, ValidationError

from accord.config_files import describe_validation_error
from accord.hashing import sha256_bytes
from accord.models import Strict, StrictWithArrays
from federated.errors import MessageError
from federated.evaluation.dp_release import shared_arrays
from federated.evaluation.regression import RegressionLayout, RegressionStatistics
from federated.evaluation.statistics import EvaluationStatistics, StatisticsLayout
from federated.messages.common import (
    MAX_MODEL_BYTES,
    PartnerInfo,
    SignedSpec,
    parse_spec,
    payload_sha256,
)
from federated.messages.encryption_spec import EncryptionSpec
from federated.study import EvaluationSettings, Governance, ShiftSettings

MESSAGE_TYPE = "query.evaluate"

# One model's statistics as they travel: classification (probabilities) or regression (numbers).
ModelStatistics = EvaluationStatistics | RegressionStatistics


class ModelRef(Strict):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    output: str


class MonitoringTask(Strict):
    """What makes an evaluation task a monitoring period: partners' contracts see the purpose "monitoring".

    `snapshot`: the partner evaluates the data snapshot of that number declared in its manifest (None:
    its current data file)."""

    period: int = Field(ge=1)
    periods: int = Field(ge=1)
    snapshot: int | None = Field(default=None, ge=1)


class TaskSpec(SignedSpec):
    """The part of an evaluation task that is not model bytes."""

    study: str
    round: int = Field(ge=1)
    study_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    models: list[ModelRef] = Field(min_length=1)
    evaluation: EvaluationSettings
    encryption: EncryptionSpec | None = None  # set: statistics travel as one encrypted bundle
    governance: Governance = Governance()  # checked against partners' data contracts
    min_cohort: int = Field(default=1, ge=1)
    monitoring: MonitoringTask | None = None  # set: one period of a monitoring study
    shift: ShiftSettings | None = None  # set: partners also release feature histograms on the study's edges

    @property
    def purpose(self) -> str:
        """What the task uses the data for, as data contracts name it."""
        return "monitoring" if self.monitoring is not None else "evaluation"

    def canonical(self) -> bytes:
        # An evaluation task without monitoring hashes as it did before the field existed.
        document = self.model_dump(mode="json")
        if document.get("monitoring") is None:
            document.pop("monitoring", None)
        if document.get("shift") is None:  # likewise a task without shift histograms
            document.pop("shift", None)
        return rfc8785.dumps(document)

    def layout(self) -> StatisticsLayout:
        settings = self.evaluation
        return StatisticsLayout(
            num_classes=settings.num_classes,
            score_bins=settings.score_bins,
            subgroup_levels=tuple(settings.subgroup_levels),
            threshold=settings.threshold,
            positive_class=settings.positive_class,
            loss_bound=settings.privacy.loss_bound if settings.privacy.enabled else None,
            feature_edges=tuple(tuple(self.shift.edges[f]) for f in self.shift.features) if self.shift else (),
            shift_features=tuple(self.shift.features) if self.shift else (),
        )

    def regression_layout(self) -> RegressionLayout | None:
        """The regression statistics' layout when the study's task is regression, else None."""
        settings = self.evaluation.regression
        if self.evaluation.task != "regression" or settings is None:
            return None
        return RegressionLayout(residual_edges=tuple(settings.residual_edges),
                                subgroup_levels=tuple(self.evaluation.subgroup_levels), value_range=settings.value_range)


class EvaluationTask(Strict):
    spec: TaskSpec
    model_bytes: dict[str, bytes]

    @property
    def sha256(self) -> str:
        """The task's hash; the spec names every model by hash, so this covers the models too."""
        return self.spec.sha256()


def build_task(spec: TaskSpec, model_bytes: dict[str, bytes]) -> RecordDict:
    return RecordDict(
        {
            "task": ConfigRecord({"spec": spec.canonical().decode("utf-8")}),
            "models": ConfigRecord(dict(model_bytes)),
        }
    )


def parse_task(content: RecordDict) -> EvaluationTask:
    """Validate an incoming task; raise `MessageError` saying which part is wrong."""
    try:
        spec_text = content.config_records["task"]["spec"]
        models = content.config_records["models"]
    except KeyError as exc:
        raise MessageError(f"task message lacks {exc.args[0]!r}") from None
    spec = parse_spec(spec_text, TaskSpec, what="task spec")
    model_bytes: dict[str, bytes] = {}
    for ref in spec.models:
        blob = models.get(ref.name)
        if not isinstance(blob, bytes):
            raise MessageError(f"task carries no bytes for model {ref.name!r}")
        if len(blob) > MAX_MODEL_BYTES:
            raise MessageError(f"model {ref.name!r} is {len(blob)} bytes, over the {MAX_MODEL_BYTES} byte limit")
        digest = sha256_bytes(blob)
        if digest != ref.sha256:
            raise MessageError(f"model {ref.name!r} hashes to {digest}, the task declares {ref.sha256}")
        model_bytes[ref.name] = blob
    extra = sorted(set(models) - set(model_bytes))
    if extra:
        raise MessageError(f"task carries models not named in its spec: {extra}")
    return EvaluationTask(spec=spec, model_bytes=model_bytes)


class EvaluationReply(StrictWithArrays):
    info: PartnerInfo
    statistics: dict[str, ModelStatistics]
    encrypted: Any = None  # federated.messages.encryption.SignedBundle when the task is encrypted

    def payload_sha256(self) -> str:
        arrays = {f"{name}/{key}": np.ascontiguousarray(value, dtype=np.float64)
                  for name, stats in self.statistics.items() for key, value in stats.arrays.items()}
        digests = {"bundle_sha256": self.encrypted.bundle.digest} if self.encrypted is not None else {}
        return payload_sha256(self.info, arrays, **digests)


def build_reply(info: PartnerInfo, statistics: Mapping[str, ModelStatistics]) -> RecordDict:
    records: dict[str, ArrayRecord | MetricRecord | ConfigRecord] = {"info": ConfigRecord({"json": info.model_dump_json()})}
    for name, stats in statistics.items():
        records[f"stats.{name}"] = ArrayRecord(
            {key: Array.from_numpy_ndarray(np.ascontiguousarray(value, dtype=np.float64)) for key, value in stats.arrays.items()}
        )
    return RecordDict(records)


def parse_reply(content: RecordDict, spec: TaskSpec) -> EvaluationReply:
    """Validate a partner's reply against the task it answers; raise `MessageError` if it does not fit."""
    try:
        raw_info = content.config_records["info"]["json"]
        if not isinstance(raw_info, (str, bytes)):
            raise MessageError("reply info must be a JSON string")
        info = PartnerInfo.model_validate_json(raw_info)
    except KeyError:
        raise MessageError("reply lacks its 'info' record") from None
    except (ValidationError, TypeError) as exc:
        detail = describe_validation_error("reply info", exc) if isinstance(exc, ValidationError) else str(exc)
        raise MessageError(detail) from None
    statistics: dict[str, ModelStatistics] = {}
    if info.status == "ok" and spec.encryption is not None:
        from federated.messages.encryption import (
            SignedBundle,  # TenSEAL only for encrypted studies
        )

        return EvaluationReply(info=info, statistics={}, encrypted=SignedBundle.read(content, info.partner, spec))
    if info.status == "ok":
        layout, regression = spec.layout(), spec.regression_layout()
        for ref in spec.models:
            record = content.array_records.get(f"stats.{ref.name}")
            if record is None:
                raise MessageError(f"reply from {info.partner!r} lacks statistics for model {ref.name!r}")
            arrays = {key: array.numpy() for key, array in record.items()}
            for key, value in arrays.items():
                if value.dtype != np.float64:
                    raise MessageError(f"reply from {info.partner!r}: {ref.name}.{key} is {value.dtype}, expected float64")
            try:
                statistics[ref.name] = (EvaluationStatistics(layout, arrays) if regression is None
                                        else RegressionStatistics(regression, arrays))
            except MessageError as exc:
                raise MessageError(f"reply from {info.partner!r}, model {ref.name!r}: {exc}") from None
        try:  # the label counts are released once for all models: every model must carry the same
            shared_arrays({name: stats for name, stats in statistics.items() if isinstance(stats, EvaluationStatistics)})
        except MessageError as exc:
            raise MessageError(f"reply from {info.partner!r}: {exc}") from None
    return EvaluationReply(info=info, statistics=statistics)
