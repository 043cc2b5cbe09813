"""The tasks a study sends each partner, in the order it sends them, and the spec of each.

One description for both sides: the coordinator builds every round's spec here, and
`python -m federated.client check` walks the same list through the node's own gate, so that what a
partner is told it would accept is what the coordinator will ask. A training study, for example,
ends with an evaluation of the final model: an evaluation task (`query.evaluate`, purpose
"evaluation"), not a train task.

Some values exist only once the study runs (each round's global model and its ONNX export, the HE
bundle layout, how many partners are connected); `study_tasks` puts `NOT_YET_KNOWN` in their place.
No contract clause and no privacy cost depends on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from federated.errors import ConfigError
from federated.messages.encryption_spec import DECRYPT_MESSAGE_TYPE, EncryptionSpec
from federated.messages.evaluation import MESSAGE_TYPE, ModelRef, MonitoringTask, TaskSpec
from federated.messages.seal import SEAL_MESSAGE_TYPE, SealSpec
from federated.messages.training import GLOBAL_MODEL, TRAIN_MESSAGE_TYPE, TrainSpec
from federated.study import Study

NOT_YET_KNOWN = "0" * 64  # a digest the run itself produces


@dataclass(frozen=True)
class PlannedTask:
    """One task of a study: how a person names it, its Flower message type (which task kind the node
    runs) and its spec (None for a decryption, whose spec names the round's encrypted aggregate)."""

    label: str
    message_type: str
    spec: TaskSpec | TrainSpec | SealSpec | None


def evaluation_spec(study: Study, *, round_number: int, study_sha256: str, models: list[ModelRef]) -> TaskSpec:
    """Round `round_number` of an evaluation study: the candidate models on every partner's data."""
    return TaskSpec(
        study=study.id, round=round_number, study_sha256=study_sha256, models=models, evaluation=study.evaluation,
        governance=study.governance, min_cohort=study.min_cohort, shift=study.shift,
    )


def monitoring_spec(study: Study, *, period: int, round_number: int, study_sha256: str, models: list[ModelRef]) -> TaskSpec:
    """Period `period` of a monitoring study, sent as round `round_number` (a resumed study's rounds go on
    from the last one sent, so a node never sees a round number twice): purpose "monitoring"."""
    if study.monitoring is None:
        raise ConfigError(f"study {study.id!r} has no [monitoring] table: it sends no monitoring periods")
    settings = study.monitoring
    task = MonitoringTask(period=period, periods=settings.periods,
                          snapshot=period if settings.schedule == "snapshots" else None)
    spec = evaluation_spec(study, round_number=round_number, study_sha256=study_sha256, models=models)
    return spec.model_copy(update={"monitoring": task})


def training_spec(study: Study, *, round_number: int, study_sha256: str, global_sha256: str, onnx_sha256: str) -> TrainSpec:
    """Round `round_number` of a training study: evaluate the global model, then train from it."""
    if study.training is None:
        raise ConfigError(f"study {study.id!r} has no [training] table: it sends no train tasks")
    return TrainSpec(
        study=study.id, round=round_number, study_sha256=study_sha256, global_sha256=global_sha256,
        onnx_sha256=onnx_sha256, training=study.training.model_copy(update={"initial_weights": None}),
        evaluation=study.evaluation, governance=study.governance, min_cohort=study.min_cohort,
    )


def final_evaluation_spec(study: Study, *, study_sha256: str, onnx_sha256: str) -> TaskSpec:
    """The evaluation of a training study's final model, one round after the last training round.

    It is an evaluation task: partners' contracts see the purpose "evaluation".
    """
    model = ModelRef(name=GLOBAL_MODEL, sha256=onnx_sha256, output="probabilities")
    return evaluation_spec(study, round_number=study.rounds + 1, study_sha256=study_sha256, models=[model])


def seal_spec(study: Study, *, completed: bool) -> SealSpec:
    """The closing task: every partner cosigns the checkpoint that covers the whole study."""
    return SealSpec(study=study.id, rounds=study.rounds, status="completed" if completed else "failed")


def study_tasks(study: Study, *, study_sha256: str) -> list[PlannedTask]:
    """Every task a partner may receive in `study`, in order, for a study that completes."""
    encryption = None
    if study.encryption.enabled:
        encryption = EncryptionSpec(
            fingerprint=NOT_YET_KNOWN, key_study=study.id, partners=study.min_cohort,
            max_records_per_partner=study.encryption.max_records_per_partner, layout_sha256=NOT_YET_KNOWN,
        )
    tasks: list[PlannedTask] = []
    for round_number in range(1, (study.monitoring.periods if study.monitoring is not None else study.rounds) + 1):
        spec: TaskSpec | TrainSpec
        if study.monitoring is not None:
            models = [ModelRef(name=m.name, sha256=m.sha256 or NOT_YET_KNOWN, output=m.output) for m in study.models]
            spec = monitoring_spec(study, period=round_number, round_number=round_number, study_sha256=study_sha256,
                                   models=models)
            message_type = MESSAGE_TYPE
        elif study.training is not None:
            spec = training_spec(study, round_number=round_number, study_sha256=study_sha256,
                                 global_sha256=NOT_YET_KNOWN, onnx_sha256=NOT_YET_KNOWN)
            message_type = TRAIN_MESSAGE_TYPE
        else:
            models = [ModelRef(name=m.name, sha256=m.sha256 or NOT_YET_KNOWN, output=m.output) for m in study.models]
            spec = evaluation_spec(study, round_number=round_number, study_sha256=study_sha256, models=models)
            message_type = MESSAGE_TYPE
        tasks.append(PlannedTask(f"round {round_number}", message_type, spec.model_copy(update={"encryption": encryption})))
        if encryption is not None:
            tasks.append(PlannedTask(f"round {round_number}: decryption of the aggregate (if asked)", DECRYPT_MESSAGE_TYPE, None))
    if study.training is not None:
        final = final_evaluation_spec(study, study_sha256=study_sha256, onnx_sha256=NOT_YET_KNOWN)
        tasks.append(PlannedTask(f"round {final.round}: final evaluation", MESSAGE_TYPE, final.model_copy(update={"encryption": encryption})))
        if encryption is not None:
            tasks.append(PlannedTask(f"round {final.round}: decryption of the aggregate (if asked)", DECRYPT_MESSAGE_TYPE, None))
    tasks.append(PlannedTask("seal", SEAL_MESSAGE_TYPE, seal_spec(study, completed=True)))
    return tasks
