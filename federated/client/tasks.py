"""The kinds of task a partner runs: evaluate candidate models, train the global model, decrypt
an encrypted aggregate (`federated.client.encryption`) and seal a finished study.

`TASK_KINDS`, keyed by Flower message type, is the one list of them: the ClientApp registers a
handler for each, the in-process grid runs that ClientApp, and `python -m federated.client check`
looks up the kind of every task a study sends."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flwr.app import RecordDict

from accord.errors import AccordError
from federated.client.costs import TaskCost, round_cost
from federated.client.data import PartnerData, PartnerFile
from federated.client.evaluation import evaluate_partner_file
from federated.client.task_kind import NodeKeys, TaskKind
from federated.errors import DataFileError, FederatedError, RefusalError
from federated.evaluation.disclosure import CellSuppression
from federated.evaluation.dp_release import privatize
from federated.evaluation.regression import RegressionStatistics, privatize_regression
from federated.evaluation.statistics import EvaluationStatistics
from federated.messages.common import DistributedNoise, NoiseInfo, PartnerInfo
from federated.messages.encryption_spec import DECRYPT_MESSAGE_TYPE
from federated.messages.evaluation import (
    MESSAGE_TYPE,
    EvaluationReply,
    EvaluationTask,
    ModelStatistics,
    build_reply,
    parse_task,
)
from federated.messages.seal import SEAL_MESSAGE_TYPE, parse_seal_task
from federated.messages.training import TRAIN_MESSAGE_TYPE, parse_train_task
from privacy.release import GaussianRelease


def _release(
    statistics: Mapping[str, ModelStatistics], task: EvaluationTask, info: PartnerInfo, suppression: CellSuppression | None,
    noise_shares: int = 1,
) -> tuple[dict[str, ModelStatistics], PartnerInfo]:
    """Statistics as they may leave the node: with the study's DP noise, if it asks for DP; without DP,
    with the cells under the contract's minimum count zeroed (`federated.evaluation.disclosure`).
    With DP the noise protects every cell, small ones included, so nothing is suppressed. `noise_shares`
    = t > 1 (distributed noise, the contract opted in and the task is encrypted): a share σ²/t of the noise."""
    privacy = task.spec.evaluation.privacy
    if not privacy.enabled:
        if suppression is None:
            return dict(statistics), info
        kept, suppressed = suppression.apply_all(statistics)
        return kept, info.model_copy(update={"suppressed_cells": suppressed})
    regression = {name: stats for name, stats in statistics.items() if isinstance(stats, RegressionStatistics)}
    if regression:  # a regression study: every model's sums, scaled to the study's value range
        noisy, release = privatize_regression(regression, epsilon=privacy.epsilon, delta=privacy.delta)
        released: dict[str, ModelStatistics] = dict(noisy)
    else:
        classified = {name: stats for name, stats in statistics.items() if isinstance(stats, EvaluationStatistics)}
        if noise_shares > 1 and task.spec.encryption is None:  # the contract gate refuses this first: never in plaintext
            raise RefusalError("privacy", "a share of the noise is only ever added inside an encrypted sum")
        noisy_classes, release = (privatize(classified, privacy, honest_required=noise_shares) if noise_shares > 1
                                  else privatize(classified, privacy))
        released = dict(noisy_classes)
        if noise_shares > 1:
            return released, info.model_copy(update={"noise": _distributed_noise(release, task, noise_shares), "count": 0})
    # The exact record count is not covered by ε (add/remove neighbours): withhold it.
    return released, info.model_copy(update={"noise": NoiseInfo.model_validate(release.as_record()), "count": 0})


def _distributed_noise(share: GaussianRelease, task: EvaluationTask, shares: int) -> NoiseInfo:
    """What a partner reports of its share: the σ it added, the release's ε (under the assumption) and the share's own."""
    privacy, encryption = task.spec.evaluation.privacy, task.spec.encryption
    assert encryption is not None  # checked by the caller
    central = math.sqrt(shares) * share.sigma
    return NoiseInfo(epsilon=privacy.epsilon, delta=share.delta, l2_sensitivity=share.l2_sensitivity, sigma=share.sigma,
                     distributed=DistributedNoise(honest_required=shares, cohort=len(encryption.cohort),
                                                  central_sigma=central, share_epsilon=share.epsilon))


def _loaded(data: PartnerData | PartnerFile | None) -> PartnerData:
    """The pipeline loads the data for every kind that `uses_data`; a kind that runs on data without it is a bug."""
    if not isinstance(data, PartnerData):
        raise RefusalError("internal", "the task needs the partner's loaded data, which the pipeline did not load")
    return data


def _evaluate(
    task: EvaluationTask, data: PartnerData | PartnerFile | None, info: PartnerInfo, keys: NodeKeys
) -> tuple[RecordDict, dict[str, Any]]:
    if not isinstance(data, PartnerFile):
        raise RefusalError("internal", "an evaluation task reads the partner's file, which the pipeline did not open")
    try:
        # One pass: read, check, hash, predict and sum per batch. The pass ends with the hash check (and
        # the pre-pass count's), so statistics of a file that does not match its manifest never get here.
        statistics = evaluate_partner_file(task, data)
    except DataFileError as exc:  # the file, not the models: a node-state refusal, as when loading it failed
        raise RefusalError("data", str(exc)) from None
    except FederatedError as exc:
        raise RefusalError("model", str(exc)) from None
    statistics, info = _release(statistics, task, info, keys.suppression, keys.noise_shares)
    if task.spec.encryption is not None:
        from federated.client.encryption import encrypt_evaluation

        content, details = encrypt_evaluation(task.spec, statistics, info, keys, records=data.size)
        return content, {**details, **_suppressed(info)}
    payload_sha256 = EvaluationReply(info=info, statistics=statistics).payload_sha256()
    return build_reply(info, statistics), {"payload_sha256": payload_sha256, **_suppressed(info)}


def _suppressed(info: PartnerInfo) -> dict[str, int]:
    """For the trail: how many cells were suppressed (when any were), never which."""
    return {"suppressed_cells": info.suppressed_cells} if info.suppressed_cells else {}


EVALUATE = TaskKind(
    message_type=MESSAGE_TYPE,
    parse=parse_task,
    task_sha256=lambda task: task.sha256,
    where=lambda task: {"study": task.spec.study, "round": task.spec.round},
    received=lambda task: {"models": {m.name: m.sha256 for m in task.spec.models}},
    cost=lambda spec, size: round_cost(
        evaluation=spec.evaluation, training=None, round_number=spec.round, num_examples=size
    ),
    run=_evaluate,
    encryption=lambda task: task.spec.encryption.fingerprint if task.spec.encryption else None,
    streams=True,
)


def _train(task: Any, data: PartnerData | PartnerFile | None, info: PartnerInfo, keys: NodeKeys) -> tuple[RecordDict, dict[str, Any]]:
    from accord.hashing import arrays_sha256
    from federated.client.training import train_round
    from federated.messages.training import build_train_reply

    data = _loaded(data)
    try:
        local = train_round(task, data)
    except AccordError as exc:
        raise RefusalError("training", str(exc)) from None
    statistics, info = _release(local.statistics, task.evaluation_task(), info, keys.suppression, keys.noise_shares)
    if local.privacy is None:
        weight, loss = local.num_examples, local.train_loss
    else:
        # ε covers the weights only: the example count and the training loss would leak beyond
        # it, so a DP partner withholds both and FedAvg weighs it like every other partner.
        weight, loss, info = 1, None, info.model_copy(update={"count": 0})
    if task.spec.encryption is not None:
        from federated.client.encryption import encrypt_training

        # Encrypted, the loss is withheld too: it is one partner's own number, not part of any sum.
        content = build_train_reply(info, num_examples=weight, privacy=local.privacy)
        content, details = encrypt_training(task, local.arrays, weight=weight, statistics=statistics, info=info,
                                            keys=keys, records=data.size, content=content)
        return content, {"update_sha256": arrays_sha256(local.arrays), "weight": weight, **details, **_suppressed(info)}
    content = build_train_reply(
        info, arrays=local.arrays, num_examples=weight, train_loss=loss, privacy=local.privacy, statistics=statistics,
    )
    return content, {"update_sha256": arrays_sha256(local.arrays), "weight": weight, **_suppressed(info)}


TRAIN = TaskKind(
    message_type=TRAIN_MESSAGE_TYPE,
    parse=parse_train_task,
    task_sha256=lambda task: task.spec.sha256(),
    where=lambda task: {"study": task.spec.study, "round": task.spec.round},
    received=lambda task: {"global_sha256": task.spec.global_sha256, "onnx_sha256": task.spec.onnx_sha256},
    cost=lambda spec, size: round_cost(
        evaluation=spec.evaluation, training=spec.training, round_number=spec.round, num_examples=size
    ),
    run=_train,
    encryption=lambda task: task.spec.encryption.fingerprint if task.spec.encryption else None,
    purpose="training",
)


def _parse_decrypt(content: RecordDict) -> Any:
    from federated.messages.encryption import (
        parse_decrypt_task,  # TenSEAL only for decryption tasks
    )

    return parse_decrypt_task(content)


def _decrypt(task: Any, data: PartnerData | PartnerFile | None, info: PartnerInfo, keys: NodeKeys) -> tuple[RecordDict, dict[str, Any]]:
    from federated.client.encryption import run_decryption

    return run_decryption(task, info, keys)


DECRYPT = TaskKind(
    message_type=DECRYPT_MESSAGE_TYPE,
    parse=_parse_decrypt,
    task_sha256=lambda task: task.spec.sha256(),
    where=lambda task: {"study": task.spec.study, "round": task.spec.round},
    received=lambda task: {"step": "decryption", "aggregate_sha256": task.spec.aggregate_sha256,
                           "contributors": [c.partner for c in task.spec.contributions]},
    cost=lambda spec, size: TaskCost(),  # never asked: a decryption uses no data
    run=_decrypt,
    encryption=lambda task: task.spec.fingerprint,
    uses_data=False,
)


def _seal(task: Any, data: PartnerData | PartnerFile | None, info: PartnerInfo, keys: NodeKeys) -> tuple[RecordDict, dict[str, Any]]:
    from federated.messages.common import payload_sha256
    from federated.messages.seal import build_seal_reply

    # The cosignature of the coordinator's final checkpoint is made by the pipeline's audit check;
    # the reply only names the partner.
    return build_seal_reply(info), {"payload_sha256": payload_sha256(info), "step": "seal"}


SEAL = TaskKind(
    message_type=SEAL_MESSAGE_TYPE,
    parse=parse_seal_task,
    task_sha256=lambda task: task.sha256(),
    where=lambda task: {"study": task.study, "round": None},
    received=lambda task: {"step": "seal", "status": task.status, "rounds": task.rounds},
    cost=lambda spec, size: TaskCost(),  # never asked: a seal uses no data
    run=_seal,
    uses_data=False,
)

TASK_KINDS: dict[str, TaskKind[Any]] = {kind.message_type: kind for kind in (EVALUATE, TRAIN, DECRYPT, SEAL)}
