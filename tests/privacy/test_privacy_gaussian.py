"""The analytic Gaussian mechanism: σ for one release, checked against dp_accounting's PLD."""

from __future__ import annotations

import math

import pytest
from dp_accounting import GaussianDpEvent, NeighboringRelation
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

from privacy.errors import AccountingError
from privacy.gaussian import (
    classic_gaussian_sigma,
    gaussian_delta,
    gaussian_epsilon,
    gaussian_sigma,
)


def pld_epsilon(noise_multiplier: float, delta: float) -> float:
    accountant = PLDAccountant(neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE)
    accountant.compose(GaussianDpEvent(noise_multiplier))
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 1.0, 2.0, 5.0, 10.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-8])
@pytest.mark.parametrize("l2_sensitivity", [1.0, 3.5])
def test_gaussian_sigma_gives_exactly_the_requested_epsilon_per_dp_accounting(epsilon, delta, l2_sensitivity):
    sigma = gaussian_sigma(epsilon=epsilon, delta=delta, l2_sensitivity=l2_sensitivity)
    assert gaussian_delta(epsilon=epsilon, mu=l2_sensitivity / sigma) <= delta
    assert pld_epsilon(sigma / l2_sensitivity, delta) == pytest.approx(epsilon, rel=1e-5)


@pytest.mark.parametrize("epsilon", [0.05, 0.3, 0.9])
def test_gaussian_sigma_is_tighter_than_the_classic_bound_below_epsilon_one(epsilon):
    exact = gaussian_sigma(epsilon=epsilon, delta=1e-5, l2_sensitivity=1.0)
    assert exact < classic_gaussian_sigma(epsilon=epsilon, delta=1e-5, l2_sensitivity=1.0)


def test_gaussian_sigma_is_valid_where_the_classic_bound_is_not_proven():
    # the classic formula is only proven for ε < 1; the analytic σ for ε = 8 still holds exactly
    sigma = gaussian_sigma(epsilon=8.0, delta=1e-6, l2_sensitivity=1.0)
    assert pld_epsilon(sigma, 1e-6) <= 8.0 * (1 + 1e-5)


def test_gaussian_sigma_scales_linearly_with_sensitivity():
    one = gaussian_sigma(epsilon=1.0, delta=1e-5, l2_sensitivity=1.0)
    assert gaussian_sigma(epsilon=1.0, delta=1e-5, l2_sensitivity=4.0) == pytest.approx(4 * one, rel=1e-9)


@pytest.mark.parametrize("epsilon", [0.01, 1.0, 30.0])
def test_gaussian_epsilon_inverts_gaussian_sigma_from_above(epsilon):
    sigma = gaussian_sigma(epsilon=epsilon, delta=1e-5, l2_sensitivity=1.0)
    recovered = gaussian_epsilon(mu=1 / sigma, delta=1e-5)
    assert recovered == pytest.approx(epsilon, rel=1e-5)
    assert gaussian_delta(epsilon=recovered, mu=1 / sigma) <= 1e-5


def test_gaussian_epsilon_is_zero_when_delta_already_covers_everything():
    assert gaussian_epsilon(mu=1e-9, delta=0.5) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epsilon": 0.0, "delta": 1e-5, "l2_sensitivity": 1.0}, "epsilon"),
        ({"epsilon": math.inf, "delta": 1e-5, "l2_sensitivity": 1.0}, "epsilon"),
        ({"epsilon": 1.0, "delta": 0.0, "l2_sensitivity": 1.0}, "delta"),
        ({"epsilon": 1.0, "delta": 1.0, "l2_sensitivity": 1.0}, "delta"),
        ({"epsilon": 1.0, "delta": 1e-5, "l2_sensitivity": -1.0}, "l2_sensitivity"),
    ],
)
def test_gaussian_sigma_rejects_invalid_parameters_naming_them(kwargs, field):
    with pytest.raises(AccountingError, match=field):
        gaussian_sigma(**kwargs)


def test_gaussian_sigma_parameters_are_keyword_only():
    with pytest.raises(TypeError):
        gaussian_sigma(1.0, 1e-5, 1.0)  # type: ignore[misc]
