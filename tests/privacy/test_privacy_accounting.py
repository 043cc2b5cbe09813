"""Privacy accounting: honest (never below the true ε), tight (within 2% of dp_accounting's PLD),
monotone, invertible, and with an account whose state round-trips and fails precisely."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from dp_accounting import GaussianDpEvent, NeighboringRelation, PoissonSampledDpEvent
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

import privacy.composition
from privacy.composition import Segment, accountant_names, create_accountant
from privacy.accounting import PrivacyAccount, epsilon, noise_multiplier
from privacy.errors import AccountingError
from privacy.gaussian import gaussian_delta

DELTA = 1e-5
QS = [0.001, 0.01, 0.1, 1.0]
SIGMAS = [0.6, 1.0, 2.0, 5.0]
STEPS = [1, 10, 100, 1000]
# A Latin square over the grid: every (q, σ), (q, steps) and (σ, steps) pair appears once.
# The full 64-point grid runs in `python -m benchmarks.privacy_accounting_grid`.
GRID = [(q, s, STEPS[(j - i) % 4]) for i, q in enumerate(QS) for j, s in enumerate(SIGMAS)]


def pld_reference(*events: tuple[object, int], interval: float = 1e-4) -> float:
    """dp_accounting's PLD ε (add/remove) of `(event, count)`s, refined until its pessimism is < 0.1% of ε.

    With the default 1e-4 value discretisation, the PLD bound overstates small ε (by 2% at ε≈1e-3);
    a finer grid is still a certified upper bound, just a closer one. A single Gaussian event is
    tight even on a coarse grid (`interval`), which keeps large-ε references fast.
    """

    def pld(interval: float) -> float:
        accountant = PLDAccountant(
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            value_discretization_interval=interval,
        )
        for event, count in events:
            accountant.compose(event, count)
        return accountant.get_epsilon(DELTA)

    coarse = pld(interval)
    return pld(coarse * 1e-3) if coarse < 0.1 else coarse


def subsampled_gaussian(q: float, sigma: float) -> object:
    return PoissonSampledDpEvent(q, GaussianDpEvent(sigma))


@pytest.mark.parametrize(("q", "sigma", "steps"), [cell for cell in GRID if cell[0] < 1])
def test_prv_epsilon_is_never_below_and_within_2_percent_of_dp_accounting_pld(q, sigma, steps):
    ours = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)
    reference = pld_reference((subsampled_gaussian(q, sigma), steps))
    assert reference <= ours <= 1.02 * reference


@pytest.mark.parametrize(("q", "sigma", "steps"), [cell for cell in GRID if cell[0] == 1])
def test_unsubsampled_gaussian_epsilon_is_exact_and_matches_dp_accounting(q, sigma, steps):
    ours = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)
    # n Gaussian steps with σ are exactly one Gaussian with σ/√n (Dong, Roth & Su 2019)
    assert gaussian_delta(epsilon=ours, mu=math.sqrt(steps) / sigma) <= DELTA
    coarse_enough = 1e-4 if ours < 10 else 1e-3  # a finer grid for large ε only costs time
    reference = pld_reference((GaussianDpEvent(sigma / math.sqrt(steps)), 1), interval=coarse_enough)
    assert reference <= ours <= 1.02 * reference


def test_account_of_mixed_releases_is_never_below_and_within_2_percent_of_pld():
    account = PrivacyAccount()
    account.add_dpsgd(noise_multiplier=1.0, sample_rate=0.01, steps=300)
    account.add_gaussian_release(sigma=30.0, l2_sensitivity=2.0)
    account.add_dpsgd(noise_multiplier=2.0, sample_rate=0.1, steps=20)
    account.add_gaussian_release(sigma=40.0, l2_sensitivity=2.0)
    reference = pld_reference(
        (subsampled_gaussian(0.01, 1.0), 300),
        (GaussianDpEvent(15.0), 1),
        (subsampled_gaussian(0.1, 2.0), 20),
        (GaussianDpEvent(20.0), 1),
    )
    assert reference <= account.epsilon(delta=DELTA) <= 1.02 * reference


@pytest.mark.parametrize(("q", "sigma", "steps"), [(0.01, 1.0, 100), (0.1, 2.0, 10)])
def test_rdp_accountant_is_an_upper_bound_too(q, sigma, steps):
    rdp = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA, accountant="rdp")
    assert rdp >= pld_reference((subsampled_gaussian(q, sigma), steps))


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_epsilon_grows_with_steps(accountant):
    values = [
        epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=n, delta=DELTA, accountant=accountant)
        for n in STEPS
    ]
    assert values == sorted(values) and len(set(values)) == len(values)


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_epsilon_shrinks_as_noise_grows(accountant):
    values = [
        epsilon(noise_multiplier=s, sample_rate=0.1, steps=100, delta=DELTA, accountant=accountant)
        for s in SIGMAS
    ]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values)


@pytest.mark.parametrize(
    ("target", "q", "steps", "accountant"),
    [(1.0, 0.01, 1000, "prv"), (4.0, 0.1, 100, "prv"), (0.5, 1.0, 1, "prv"), (2.0, 0.01, 500, "rdp")],
)
def test_noise_multiplier_round_trips_to_at_most_the_target(target, q, steps, accountant):
    common = {"sample_rate": q, "steps": steps, "delta": DELTA, "accountant": accountant}
    sigma = noise_multiplier(target_epsilon=target, **common)
    reached = epsilon(noise_multiplier=sigma, **common)
    assert 0.98 * target <= reached <= target


def test_noise_multiplier_refuses_an_unreachable_target():
    # 10¹² unsampled steps: even σ = 10⁶ leaves ε ≈ 4
    with pytest.raises(AccountingError, match="no noise_multiplier"):
        noise_multiplier(target_epsilon=1e-3, sample_rate=1.0, steps=10**12, delta=DELTA)


def test_prv_falls_back_to_the_rdp_bound_when_the_prv_computation_fails(monkeypatch):
    def broken(history, *, delta):
        raise RuntimeError("Discrete mean differs significantly from continuous mean.")

    monkeypatch.setattr(privacy.composition, "_prv_upper_bound", broken)
    common = {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 100, "delta": DELTA}
    assert epsilon(**common) == epsilon(**common, accountant="rdp")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"noise_multiplier": 0.0}, "noise_multiplier"),
        ({"noise_multiplier": math.nan}, "noise_multiplier"),
        ({"sample_rate": 0.0}, "sample_rate"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"steps": True}, "steps"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"accountant": "gdp"}, "unknown accountant 'gdp'"),
    ],
)
def test_invalid_parameters_raise_a_value_error_naming_the_field(kwargs, field):
    arguments = {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 10, "delta": DELTA} | kwargs
    with pytest.raises(AccountingError, match=field) as caught:
        epsilon(**arguments)
    assert isinstance(caught.value, ValueError)


def test_privacy_parameters_are_keyword_only():
    with pytest.raises(TypeError):
        epsilon(1.0, 0.01, 10, DELTA)  # type: ignore[misc]


def test_registry_creates_each_named_accountant_and_lists_the_names_on_a_typo():
    assert accountant_names() == ("rdp", "prv")
    assert [create_accountant(name).name for name in accountant_names()] == ["rdp", "prv"]
    with pytest.raises(AccountingError, match="choose one of 'rdp', 'prv'"):
        create_accountant("PRV")


def test_empty_account_has_spent_nothing():
    assert PrivacyAccount().epsilon(delta=DELTA) == 0.0


def test_account_equals_the_one_shot_epsilon_for_a_single_segment():
    account = PrivacyAccount(accountant="rdp")
    account.add_dpsgd(noise_multiplier=1.0, sample_rate=0.01, steps=40)
    account.add_dpsgd(noise_multiplier=1.0, sample_rate=0.01, steps=60)
    one_shot = epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=100, delta=DELTA, accountant="rdp")
    assert account.epsilon(delta=DELTA) == pytest.approx(one_shot, rel=1e-12)


def test_invalid_release_leaves_the_account_unchanged():
    account = PrivacyAccount()
    account.add_gaussian_release(sigma=10.0, l2_sensitivity=1.0)
    with pytest.raises(AccountingError, match="l2_sensitivity"):
        account.add_gaussian_release(sigma=10.0, l2_sensitivity=0.0)
    with pytest.raises(AccountingError, match="sample_rate"):
        account.add_dpsgd(noise_multiplier=1.0, sample_rate=2.0, steps=1)
    assert account.segments == (Segment(10.0, 1.0, 1),)


def test_state_dict_round_trips_the_history_and_the_epsilon():
    account = PrivacyAccount()
    account.add_dpsgd(noise_multiplier=1.1, sample_rate=0.02, steps=50)
    account.add_gaussian_release(sigma=12.0, l2_sensitivity=3.0)
    restored = PrivacyAccount()
    restored.load_state_dict(account.state_dict())
    assert restored.segments == account.segments
    assert restored.epsilon(delta=DELTA) == account.epsilon(delta=DELTA)


def _valid_state() -> dict:
    return {"version": 1, "accountant": "prv", "segments": [[1.0, 0.01, 10]]}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({}, "empty"),
        (None, "empty or not a mapping"),
        ({k: v for k, v in _valid_state().items() if k != "segments"}, "no key 'segments'"),
        ({k: v for k, v in _valid_state().items() if k != "accountant"}, "no key 'accountant'"),
        (_valid_state() | {"version": 2}, "version 2"),
        (_valid_state() | {"accountant": "rdp"}, "written by accountant 'rdp'"),
        (_valid_state() | {"accountant": "moments"}, "'moments' \\(unknown\\)"),
        (_valid_state() | {"segments": "1.0,0.01,10"}, "must be a list"),
        (_valid_state() | {"segments": [[1.0, 0.01]]}, r"segments'\]\[0\] must be"),
        (_valid_state() | {"segments": [[1.0, 0.01, 10], [-1.0, 0.01, 10]]}, r"\[1\]: noise_multiplier"),
    ],
)
def test_load_state_dict_raises_a_precise_value_error_and_changes_nothing(state, message):
    account = PrivacyAccount()
    account.add_gaussian_release(sigma=5.0, l2_sensitivity=1.0)
    before = account.state_dict()
    with pytest.raises(AccountingError, match=message) as caught:
        account.load_state_dict(state)
    assert isinstance(caught.value, ValueError)
    assert account.state_dict() == before


def test_importing_privacy_loads_neither_torch_nor_opacus_nor_federated():
    code = (
        "import sys, privacy\n"
        "loaded = [m for m in ('torch', 'opacus', 'federated') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert set(privacy.__all__) <= set(dir(privacy))\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)
