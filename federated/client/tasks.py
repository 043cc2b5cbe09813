"""The two kinds of task a partner runs: evaluate candidate models, train the global model."""

from __future__ import annotations

from typing import Any

from flwr.app import RecordDict

from accord.errors import AccordError
from accord.hashing import sha256_bytes
from federated.client.evaluation import evaluate_task
from federated.client.pipeline import PrivacyCost, Refusal, TaskKind
from federated.data import PartnerData
from federated.dp_evaluation import privatize
from federated.errors import FederatedError
from federated.protocol import EvaluationReply, EvaluationTask, NoiseInfo, PartnerInfo, build_reply, parse_task


def _evaluation_cost(task: EvaluationTask, size: int) -> PrivacyCost | None:
    privacy = task.spec.evaluation.privacy
    if not privacy.enabled:
        return None
    return PrivacyCost(release=f"round-{task.spec.round}/evaluation", epsilon=privacy.epsilon, delta=privacy.delta)


def _evaluate(task: EvaluationTask, data: PartnerData, info: PartnerInfo) -> tuple[RecordDict, dict[str, Any]]:
    try:
        statistics = evaluate_task(task, data)
    except FederatedError as exc:
        raise Refusal("model", str(exc)) from None
    privacy = task.spec.evaluation.privacy
    if privacy.enabled:
        statistics, release = privatize(statistics, privacy)
        info = info.model_copy(update={"noise": NoiseInfo(**release.as_record())})
    payload_sha256 = EvaluationReply(info=info, statistics=statistics).payload_sha256()
    return build_reply(info, statistics), {"payload_sha256": payload_sha256}


EVALUATE = TaskKind(
    parse=parse_task,
    task_sha256=lambda task: task.sha256,
    where=lambda task: {"study": task.spec.study, "round": task.spec.round},
    received=lambda task: {"models": {m.name: m.sha256 for m in task.spec.models}},
    cost=_evaluation_cost,
    run=_evaluate,
)


def _train_cost(task: Any, size: int) -> PrivacyCost | None:
    from federated.training.partner import plan_privacy

    return plan_privacy(task, size)


def _train(task: Any, data: PartnerData, info: PartnerInfo) -> tuple[RecordDict, dict[str, Any]]:
    from federated.training.partner import train_round
    from federated.training.protocol import arrays_sha256, build_train_reply

    try:
        local = train_round(task, data)
    except AccordError as exc:
        raise Refusal("training", str(exc)) from None
    content = build_train_reply(
        info, arrays=local.arrays, num_examples=local.num_examples, train_loss=local.train_loss,
        privacy=local.privacy, statistics=local.statistics,
    )
    return content, {"update_sha256": arrays_sha256(local.arrays), "num_examples": local.num_examples}


def _parse_train(content: RecordDict) -> Any:
    from federated.training.protocol import parse_train_task  # torch-free, but only training needs it

    return parse_train_task(content)


TRAIN = TaskKind(
    parse=_parse_train,
    task_sha256=lambda task: sha256_bytes(task.spec.model_dump_json().encode()),
    where=lambda task: {"study": task.spec.study, "round": task.spec.round},
    received=lambda task: {"global_sha256": task.spec.global_sha256, "onnx_sha256": task.spec.onnx_sha256},
    cost=_train_cost,
    run=_train,
)

