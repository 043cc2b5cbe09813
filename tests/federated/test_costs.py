"""What a round costs a partner: DP parts add up, anything without DP is named."""

from __future__ import annotations

import math

import pytest

from federated.client.costs import dp_sgd_cost, round_cost
from federated.study import (
    DPSGDSettings,
    EvaluationPrivacy,
    EvaluationSettings,
    TrainingSettings,
)
from privacy import epsilon

PRIVATE_EVAL = EvaluationSettings(privacy=EvaluationPrivacy(enabled=True, epsilon=0.5, delta=1e-6))


def _training(**privacy) -> TrainingSettings:
    return TrainingSettings(architecture="mlp", num_features=4, batch_size=32, local_epochs=2,
                            privacy=DPSGDSettings(**privacy))


def test_dp_sgd_plan_uses_the_steps_opacus_takes():
    plan = dp_sgd_cost(_training(noise_multiplier=1.0), round_number=3, num_examples=100)
    assert (plan.sample_rate, plan.steps, plan.release) == (0.25, 8, "round-3/dpsgd")
    assert plan.epsilon == epsilon(noise_multiplier=1.0, sample_rate=0.25, steps=8, delta=1e-5)


def test_target_epsilon_is_never_exceeded():
    plan = dp_sgd_cost(_training(target_epsilon=2.0), round_number=1, num_examples=500)
    assert plan.epsilon <= 2.0


def test_training_round_pays_for_dp_sgd_and_the_noisy_evaluation():
    cost = round_cost(evaluation=PRIVATE_EVAL, training=_training(noise_multiplier=1.0), round_number=1, num_examples=100)
    dpsgd = dp_sgd_cost(_training(noise_multiplier=1.0), round_number=1, num_examples=100)
    assert cost.private.epsilon == pytest.approx(dpsgd.epsilon + 0.5)
    assert cost.private.delta == pytest.approx(1e-5 + 1e-6)
    assert cost.private.release == "round-1/dpsgd+evaluation"
    assert cost.unprotected == "" and cost.epsilon_per_release == cost.private.epsilon


def test_releases_without_dp_are_named():
    cost = round_cost(evaluation=EvaluationSettings(), training=_training(enabled=False), round_number=1, num_examples=10)
    assert cost.private is None
    assert cost.unprotected == "model updates and evaluation statistics"
    partly = round_cost(evaluation=EvaluationSettings(), training=_training(noise_multiplier=1.0), round_number=1, num_examples=10)
    assert partly.unprotected == "evaluation statistics" and partly.epsilon_per_release is None
    assert not math.isnan(partly.private.epsilon)
