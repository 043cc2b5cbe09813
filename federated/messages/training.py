"""Training messages: the global model out, a partner's locally trained weights back.

A train task carries the global weights (numeric arrays; Flower serialises them with
`np.save(allow_pickle=False)`), the same model as ONNX bytes for the evaluation path, and
a JSON spec naming both by hash. A reply carries the partner's new weights, its example
count, the privacy it spent and the statistics of the global model on its data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, MetricRecordValues, RecordDict
from pydantic import Field, ValidationError

from accord.config_files import describe_validation_error
from accord.hashing import arrays_sha256, sha256_bytes
from accord.models import Strict, StrictWithArrays
from federated.errors import MessageError
from federated.evaluation.statistics import EvaluationStatistics
from federated.messages.common import (
    MAX_MODEL_BYTES,
    PartnerInfo,
    SignedSpec,
    parse_spec,
    payload_sha256,
)
from federated.messages.encryption_spec import EncryptionSpec
from federated.messages.evaluation import (
    EvaluationReply,
    EvaluationTask,
    ModelRef,
    ModelStatistics,
    TaskSpec,
    build_reply,
    parse_reply,
)
from federated.study import EvaluationSettings, Governance, TrainingSettings

TRAIN_MESSAGE_TYPE = "train"
GLOBAL_MODEL = "global"


class TrainSpec(SignedSpec):
    """The JSON part of a train task."""

    study: str
    round: int = Field(ge=1)
    study_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    global_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    training: TrainingSettings
    evaluation: EvaluationSettings
    encryption: EncryptionSpec | None = None  # set: update and statistics travel as one encrypted bundle
    governance: Governance = Governance()  # checked against partners' data contracts
    min_cohort: int = Field(default=1, ge=1)

    def evaluation_spec(self) -> TaskSpec:
        """The evaluation of the incoming global model, as the evaluation path expects it (with the
        round's encryption, whose bundle also carries the update)."""
        return TaskSpec(
            study=self.study, round=self.round, study_sha256=self.study_sha256,
            models=[ModelRef(name=GLOBAL_MODEL, sha256=self.onnx_sha256, output="probabilities")],
            evaluation=self.evaluation, encryption=self.encryption, governance=self.governance,
            min_cohort=self.min_cohort,
        )


class TrainTask(StrictWithArrays):
    spec: TrainSpec
    arrays: dict[str, np.ndarray]
    onnx: bytes

    def evaluation_task(self) -> EvaluationTask:
        return EvaluationTask(spec=self.spec.evaluation_spec(), model_bytes={GLOBAL_MODEL: self.onnx})


def _array_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array.from_numpy_ndarray(np.ascontiguousarray(a)) for name, a in arrays.items()})


def build_train_task(spec: TrainSpec, arrays: dict[str, np.ndarray], onnx: bytes) -> RecordDict:
    return RecordDict({
        "task": ConfigRecord({"spec": spec.canonical().decode("utf-8")}),
        "arrays": _array_record(arrays),
        "models": ConfigRecord({GLOBAL_MODEL: onnx}),
    })


def parse_train_task(content: RecordDict) -> TrainTask:
    """Validate an incoming train task; `MessageError` names the part that is wrong."""
    try:
        spec_text = content.config_records["task"]["spec"]
        record = content.array_records["arrays"]
        onnx = content.config_records["models"][GLOBAL_MODEL]
    except KeyError as exc:
        raise MessageError(f"train task lacks {exc.args[0]!r}") from None
    spec = parse_spec(spec_text, TrainSpec, what="train task spec")
    if not isinstance(onnx, bytes) or len(onnx) > MAX_MODEL_BYTES:
        raise MessageError("train task's ONNX model is missing or over the size limit")
    if sha256_bytes(onnx) != spec.onnx_sha256:
        raise MessageError(f"global ONNX model hashes to {sha256_bytes(onnx)}, the task declares {spec.onnx_sha256}")
    arrays = {name: array.numpy() for name, array in record.items()}
    if arrays_sha256(arrays) != spec.global_sha256:
        raise MessageError(f"global weights hash to {arrays_sha256(arrays)}, the task declares {spec.global_sha256}")
    return TrainTask(spec=spec, arrays=arrays, onnx=onnx)


class PrivacySpent(Strict):
    """What one partner's local training cost in privacy (absent when DP is off)."""

    epsilon: float | None
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    accountant: str
    grad_sample_mode: str


class TrainReply(StrictWithArrays):
    info: PartnerInfo
    arrays: dict[str, np.ndarray] = Field(default_factory=dict)
    num_examples: int = 0
    train_loss: float | None = None  # withheld under DP: the guarantee does not cover it
    privacy: PrivacySpent | None = None
    statistics: dict[str, EvaluationStatistics] = Field(default_factory=dict)
    encrypted: Any = None  # federated.messages.encryption.SignedBundle: update and statistics, encrypted

    def payload_sha256(self) -> str:
        """Hash of what the partner sent: its header, its example count, its weights and its statistics."""
        arrays = {f"weights/{name}": value for name, value in self.arrays.items()}
        arrays.update({f"{name}/{key}": np.ascontiguousarray(value, dtype=np.float64)
                       for name, stats in self.statistics.items() for key, value in stats.arrays.items()})
        digests = {"bundle_sha256": self.encrypted.bundle.digest} if self.encrypted is not None else {}
        return payload_sha256(self.info, arrays, num_examples=str(self.num_examples), **digests)


def build_train_reply(
    info: PartnerInfo,
    *,
    arrays: dict[str, np.ndarray] | None = None,
    num_examples: int = 0,
    train_loss: float | None = None,
    privacy: PrivacySpent | None = None,
    statistics: Mapping[str, ModelStatistics] | None = None,
) -> RecordDict:
    content = build_reply(info, statistics or {})
    if arrays is not None:
        content["arrays"] = _array_record(arrays)
    if arrays is not None or num_examples:  # an encrypted reply carries its weight without plaintext arrays
        metrics: dict[str, MetricRecordValues] = {"num-examples": int(num_examples)}
        if train_loss is not None:
            metrics["train-loss"] = float(train_loss)
        content["metrics"] = MetricRecord(metrics)
    if privacy is not None:
        content["privacy"] = ConfigRecord({"json": privacy.model_dump_json()})
    return content


def parse_train_reply(content: RecordDict, spec: TrainSpec) -> TrainReply:
    """Validate a partner's train reply; `MessageError` if any part does not fit."""
    evaluation: EvaluationReply = parse_reply(content, spec.evaluation_spec())
    fields: dict[str, Any] = {"info": evaluation.info, "statistics": evaluation.statistics, "encrypted": evaluation.encrypted}
    if evaluation.info.status == "ok":
        try:
            record = content.array_records["arrays"] if evaluation.encrypted is None else {}
            metrics = content.metric_records["metrics"]
        except KeyError as exc:
            raise MessageError(f"train reply from {evaluation.info.partner!r} lacks {exc.args[0]!r}") from None
        num_examples, train_loss = metrics["num-examples"], metrics.get("train-loss")
        if not isinstance(num_examples, (int, float)) or not isinstance(train_loss, (int, float, type(None))):
            raise MessageError(f"train reply from {evaluation.info.partner!r}: num-examples and train-loss must be numbers")
        fields["arrays"] = {name: array.numpy() for name, array in record.items()}
        fields["num_examples"] = int(num_examples)
        fields["train_loss"] = float(train_loss) if train_loss is not None else None
        if "privacy" in content.config_records:
            raw_privacy = content.config_records["privacy"]["json"]
            if not isinstance(raw_privacy, (str, bytes)):
                raise MessageError(f"privacy of {evaluation.info.partner!r} must be a JSON string")
            try:
                fields["privacy"] = PrivacySpent.model_validate_json(raw_privacy)
            except ValidationError as exc:
                raise MessageError(describe_validation_error(f"privacy of {evaluation.info.partner!r}", exc)) from None
    return TrainReply(**fields)
