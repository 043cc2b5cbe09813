"""Local training with and without DP-SGD: reproducibility, the ε it reports, and what it refuses."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.utils.uniform_sampler import UniformWithReplacementSampler

from federated.training import create_model, model_arrays
from privacy.dp_sgd import (
    DPSGDSettings,
    LocalTrainer,
    LocalTrainingError,
    LocalTrainingResult,
    auto_grad_sample_mode,
    train_locally,
)
from privacy.errors import PrivacyError

DELTA = 1e-5


def _model(architecture: str = "mlp") -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(architecture, num_features=64, num_classes=10)


def _dp(**overrides) -> DPSGDSettings:
    settings = {"max_grad_norm": 1.0, "delta": DELTA, "noise_multiplier": 1.0} | overrides
    return DPSGDSettings(**settings)


def _loss(model: torch.nn.Module, arrays: dict, features: np.ndarray, labels: np.ndarray) -> float:
    from federated.training import load_arrays

    load_arrays(model, arrays)
    with torch.no_grad():
        logits = model(torch.from_numpy(features))
        return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)))


def test_non_private_training_reduces_the_loss_on_digits(digits):
    features, labels = digits
    model = _model()
    before = _loss(_model(), model_arrays(model), features, labels)
    result = train_locally(model, features, labels, epochs=5, batch_size=64, learning_rate=0.1, momentum=0.9)
    after = _loss(_model(), result.arrays, features, labels)
    assert after < 0.3 * before
    assert result.epsilon is None and result.noise_multiplier == 0.0 and result.grad_sample_mode is None
    assert result.num_examples == len(labels) and result.steps == 5 * math.ceil(len(labels) / 64)


def test_dp_training_still_learns_on_digits(digits):
    features, labels = digits
    result = train_locally(_model(), features, labels, epochs=4, batch_size=128, learning_rate=0.5, dp=_dp())
    assert _loss(_model(), result.arrays, features, labels) < 0.6 * math.log(10)


def test_a_fixed_seed_reproduces_the_same_dp_weights_and_another_seed_does_not(digits):
    features, labels = digits[0][:400], digits[1][:400]
    settings = {"epochs": 1, "batch_size": 64, "learning_rate": 0.1, "dp": _dp()}
    runs = [train_locally(_model("cnn"), features, labels, **settings, seed=seed) for seed in (7, 7, 8)]
    assert runs[0].arrays.keys() == runs[2].arrays.keys()
    assert all(np.array_equal(runs[0].arrays[n], runs[1].arrays[n]) for n in runs[0].arrays)
    assert not all(np.array_equal(runs[0].arrays[n], runs[2].arrays[n]) for n in runs[0].arrays)
    assert runs[0].epsilon == runs[1].epsilon == runs[2].epsilon


def test_the_callers_model_is_left_untouched_and_names_match_a_fresh_model(digits):
    model = _model("cnn")
    before = model_arrays(model)
    result = train_locally(model, *digits, epochs=1, batch_size=256, learning_rate=0.1, dp=_dp())
    assert list(result.arrays) == list(model_arrays(_model("cnn")))  # no "_module." prefixes
    assert all(a.dtype == np.float32 for a in result.arrays.values())
    assert all(np.array_equal(before[n], a) for n, a in model_arrays(model).items())


def test_poisson_rate_steps_and_sigma_are_those_of_the_run(digits):
    features, labels = digits[0][:1000], digits[1][:1000]
    result = train_locally(
        _model(), features, labels, epochs=3, batch_size=100, learning_rate=0.1, dp=_dp(noise_multiplier=1.3)
    )
    assert isinstance(result, LocalTrainingResult)
    assert (result.sample_rate, result.steps, result.noise_multiplier) == (0.1, 30, 1.3)
    assert (result.delta, result.accountant) == (DELTA, "prv")


def test_rdp_epsilon_is_what_opacus_rdp_accountant_reports_for_the_same_history(digits):
    dp = _dp(accountant="rdp", noise_multiplier=1.1)
    result = train_locally(_model(), *digits, epochs=2, batch_size=256, learning_rate=0.1, dp=dp)
    accountant = RDPAccountant()
    accountant.history = [(1.1, 1 / math.ceil(len(digits[1]) / 256), 2 * math.ceil(len(digits[1]) / 256))]
    assert result.accountant == "rdp"
    assert result.epsilon == pytest.approx(accountant.get_epsilon(DELTA), rel=1e-12)


def test_prv_epsilon_is_opacus_prv_bound_for_the_same_history_and_never_below_the_true_epsilon(digits):
    result = train_locally(_model(), *digits, epochs=2, batch_size=256, learning_rate=0.1, dp=_dp())
    steps, sample_rate = 2 * math.ceil(len(digits[1]) / 256), 1 / math.ceil(len(digits[1]) / 256)
    accountant = PRVAccountant()
    accountant.history = [(1.0, sample_rate, steps)]
    opacus_bound = accountant.get_epsilon(DELTA)  # estimate + 0.01: what Opacus reports
    error = 1e-3
    lower, _, upper = accountant._get_dprv(eps_error=error, delta_error=DELTA / 1000).compute_epsilon(
        DELTA, DELTA / 1000, error
    )
    assert lower <= result.epsilon  # a certified lower bound on the true ε
    assert result.epsilon <= upper + 0.01 * result.epsilon  # at most 1% above it
    assert result.epsilon == pytest.approx(opacus_bound, abs=0.01 + 0.01 * result.epsilon)


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_a_target_epsilon_is_never_exceeded_and_nearly_reached(digits, accountant):
    dp = DPSGDSettings(max_grad_norm=1.0, delta=DELTA, target_epsilon=2.0, accountant=accountant)
    result = train_locally(_model(), *digits, epochs=2, batch_size=256, learning_rate=0.1, dp=dp)
    assert 0.95 * 2.0 <= result.epsilon <= 2.0
    assert result.noise_multiplier > 0


def test_a_run_sized_for_a_target_epsilon_refuses_an_extra_epoch(digits):
    dp = DPSGDSettings(max_grad_norm=1.0, delta=DELTA, target_epsilon=3.0, accountant="rdp")  # rdp: faster
    trainer = LocalTrainer(_model(), digits[0][:200], digits[1][:200], batch_size=50, learning_rate=0.1, dp=dp)
    trainer.run_epoch()
    with pytest.raises(LocalTrainingError, match="σ was sized for 1 epoch"):
        trainer.run_epoch()
    assert trainer.result().epsilon <= 3.0


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_every_grad_sample_mode_gives_the_same_weights_so_auto_is_exact(digits, architecture):
    features, labels = digits[0][:300], digits[1][:300]
    weights, epsilons = {}, set()
    for mode in ("hooks", "ew", "functorch", "ghost"):
        result = train_locally(
            _model(architecture), features, labels, epochs=1, batch_size=64, learning_rate=0.1,
            dp=_dp(grad_sample_mode=mode),
        )
        assert result.grad_sample_mode == mode
        weights[mode] = result.arrays
        epsilons.add(result.epsilon)
    assert len(epsilons) == 1
    for mode in ("ew", "functorch", "ghost"):
        for name, array in weights["hooks"].items():
            np.testing.assert_allclose(weights[mode][name], array, rtol=0, atol=1e-5, err_msg=f"{mode} {name}")


def test_auto_picks_ghost_for_linear_models_and_ew_for_the_cnn():
    assert auto_grad_sample_mode(_model("logistic_regression")) == "ew"
    assert auto_grad_sample_mode(_model("mlp")) == "ghost"
    assert auto_grad_sample_mode(_model("cnn")) == "ew"
    assert auto_grad_sample_mode(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.PReLU())) == "hooks"


@pytest.mark.parametrize("mode", ["hooks", "ew", "functorch", "ghost"])
def test_empty_poisson_batches_still_take_a_noisy_step_in_every_mode(mode):
    features = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    labels = np.array([0, 1, 2])
    result, reference = (
        train_locally(
            _model("cnn"), features, labels, epochs=4, batch_size=2, learning_rate=0.1,
            dp=_dp(grad_sample_mode=m, accountant="rdp"), seed=3,
        )
        for m in (mode, "hooks")
    )
    assert result.steps == 8 and result.sample_rate == 0.5
    # the precondition: Opacus's Poisson sampler, seeded as train_locally seeds it, does draw empty batches
    generator = torch.Generator().manual_seed(3)
    sampler = UniformWithReplacementSampler(num_samples=3, sample_rate=0.5, generator=generator)
    assert any(len(batch) == 0 for _ in range(4) for batch in sampler)
    for name, array in reference.arrays.items():
        np.testing.assert_allclose(result.arrays[name], array, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"noise_multiplier": 1.0, "target_epsilon": 1.0}, "exactly one of noise_multiplier and target_epsilon"),
        ({}, "exactly one of noise_multiplier and target_epsilon"),
        ({"noise_multiplier": 1.0, "max_grad_norm": 0.0}, "max_grad_norm must be a finite number > 0, got 0.0"),
        ({"noise_multiplier": 1.0, "max_grad_norm": -1}, "max_grad_norm must be a finite number > 0, got -1"),
        ({"noise_multiplier": 1.0, "max_grad_norm": math.nan}, "max_grad_norm must be a finite number > 0"),
        ({"noise_multiplier": 0.0}, "noise_multiplier must be a finite number > 0, got 0.0"),
        ({"target_epsilon": -1.0}, "target_epsilon must be a finite number > 0, got -1.0"),
        ({"noise_multiplier": 1.0, "delta": 0.0}, "delta must be a number in (0, 1), got 0.0"),
        ({"noise_multiplier": 1.0, "delta": 1.0}, "delta must be a number in (0, 1), got 1.0"),
        ({"noise_multiplier": 1.0, "accountant": "gdp"}, "accountant must be one of ['rdp', 'prv'], got 'gdp'"),
        ({"noise_multiplier": 1.0, "grad_sample_mode": "fast"}, "grad_sample_mode must be one of"),
    ],
)
def test_invalid_dp_settings_are_refused_naming_the_field(settings, fragment):
    with pytest.raises(LocalTrainingError) as caught:
        DPSGDSettings(**({"max_grad_norm": 1.0, "delta": DELTA} | settings))
    assert fragment in str(caught.value)
    assert isinstance(caught.value, PrivacyError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("features", "labels", "fragment"),
    [
        (np.zeros((0, 64), np.float32), np.zeros(0, np.int64), "non-empty 2-D array"),
        (np.zeros(64, np.float32), np.zeros(1, np.int64), "non-empty 2-D array"),
        (np.full((2, 64), np.nan, np.float32), np.zeros(2, np.int64), "finite numbers (found NaN"),
        (np.zeros((2, 64), np.float32), np.array([0, 10]), "labels must lie in [0, 9] for this 10-class model"),
        (np.zeros((2, 64), np.float32), np.array([-1, 0]), "labels must lie in [0, 9]"),
        (np.zeros((2, 64), np.float32), np.array([0.0, 1.0]), "labels must be integers"),
        (np.zeros((2, 64), np.float32), np.array([0, 1, 2]), "labels must have shape (2,)"),
        (np.zeros((2, 30), np.float32), np.array([0, 1]), "cannot take features of shape [n, 30]"),
    ],
)
def test_invalid_data_is_refused_precisely(features, labels, fragment):
    with pytest.raises(LocalTrainingError) as caught:
        train_locally(_model(), features, labels, epochs=1, batch_size=8, learning_rate=0.1, dp=_dp())
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"epochs": 0}, "epochs must be an integer ≥ 1, got 0"),
        ({"batch_size": 0}, "batch_size must be an integer ≥ 1, got 0"),
        ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of ['sgd', 'adam'], got 'rmsprop'"),
        ({"momentum": 1.0}, "momentum must be a number in [0, 1), got 1.0"),
        ({"optimizer": "adam", "momentum": 0.9}, "momentum applies to optimizer 'sgd' only"),
        ({"seed": -1}, "seed must be None or an integer in [0, 2**63), got -1"),
    ],
)
def test_invalid_hyperparameters_are_refused_naming_them(digits, arguments, fragment):
    settings = {"epochs": 1, "batch_size": 8, "learning_rate": 0.1} | arguments
    with pytest.raises(LocalTrainingError) as caught:
        train_locally(_model(), digits[0][:16], digits[1][:16], **settings)
    assert fragment in str(caught.value)


def test_dp_sgd_does_not_import_federated():
    code = "import sys, privacy.dp_sgd; sys.exit(any(m.split('.')[0] == 'federated' for m in sys.modules))"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
