"""The partner's side of a training round: evaluate the incoming global model, train locally.

One message does both, because Flower starts a process per message. The global model is
evaluated through the same ONNX path as an evaluation study; local training is DP-SGD
(Opacus) when the study asks for it. With DP on, the training seed comes from the
operating system's CSPRNG, never from the coordinator, so the coordinator cannot predict
a partner's noise.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from federated.client.costs import dp_sgd_cost
from federated.client.data import PartnerData
from federated.client.evaluation import evaluate_task
from federated.messages.evaluation import ModelStatistics
from federated.messages.training import GLOBAL_MODEL, PrivacySpent, TrainTask
from privacy import PrivacyError


@dataclass(frozen=True)
class LocalRound:
    arrays: dict[str, np.ndarray]
    num_examples: int
    train_loss: float
    privacy: PrivacySpent | None
    statistics: dict[str, ModelStatistics]


def train_round(task: TrainTask, data: PartnerData) -> LocalRound:
    """Evaluate the global model on local data, then train from it; return only weights and sums."""
    import torch  # only training pays for torch; evaluation-only partners never import it

    from federated.training.models import create_model
    from federated.training.weights import load_arrays
    from privacy.dp_sgd import train_locally

    statistics = evaluate_task(task.evaluation_task(), data)
    torch.set_num_threads(1)
    settings = task.spec.training
    model = create_model(
        settings.architecture, num_features=settings.num_features,
        num_classes=task.spec.evaluation.num_classes, **settings.architecture_options,
    )
    load_arrays(model, task.arrays)
    dp = settings.privacy
    seed = secrets.randbits(31) if dp.enabled else settings.seed + task.spec.round
    result = train_locally(
        model, data.features, data.labels, epochs=settings.local_epochs, batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, optimizer=settings.optimizer, momentum=settings.momentum,
        dp=dp if dp.enabled else None, seed=seed,
    )
    planned = dp_sgd_cost(task.spec.training, round_number=task.spec.round, num_examples=data.size)
    if planned is not None and (result.epsilon is None or result.epsilon > planned.epsilon * (1 + 1e-9)):
        raise PrivacyError(
            f"local training spent ε={result.epsilon} but the budget was checked for ε={planned.epsilon}; "
            "nothing is released"
        )
    privacy = None
    if dp.enabled:
        if result.delta is None or result.accountant is None or result.grad_sample_mode is None:
            raise PrivacyError("DP-SGD training reported no δ, accountant or grad-sample mode; nothing is released")
        privacy = PrivacySpent(
            epsilon=result.epsilon, delta=result.delta, noise_multiplier=result.noise_multiplier,
            sample_rate=result.sample_rate, steps=result.steps, accountant=result.accountant,
            grad_sample_mode=result.grad_sample_mode,
        )
    return LocalRound(
        arrays=result.arrays, num_examples=result.num_examples, train_loss=result.mean_loss,
        privacy=privacy, statistics={GLOBAL_MODEL: statistics[GLOBAL_MODEL]},
    )
