"""DP-SGD's settings and its plan: the (q, steps, σ) of one local run and the ε they spend, known before it runs.

One rule for everyone who needs it: the partner's trainer (`privacy.dp_sgd`) runs exactly this plan,
and the partner's node charges its budget from it before the data is used (`federated.client.costs`).
An epoch is ceil(n / batch_size) Poisson-sampled steps at q = 1 / ceil(n / batch_size), which is
what Opacus does with a data loader of that length; with a target ε, σ is the smallest found whose ε
over all planned steps is ≤ the target.

`DPSGDSettings` is also the `[training.privacy]` table of a study file (`federated.study`). Built
directly, an invalid value raises `LocalTrainingError` naming the field; inside a study file it is a
validation error of that file.

This module must stay import-light (no torch, no opacus: the accountants load them when they compute)
and must never import `federated`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import Field, ValidationError, model_validator

from accord.config_files import describe_validation_error
from accord.errors import ExitCode
from accord.models import Strict
from privacy.errors import PrivacyError

GRAD_SAMPLE_MODES = ("auto", "hooks", "ew", "functorch", "ghost")


class LocalTrainingError(PrivacyError, ValueError):
    """Invalid DP-SGD settings, training hyperparameters or training data; the message names which."""

    exit_code = ExitCode.INVALID_INPUT


class DPSGDSettings(Strict):
    """How local training is made differentially private: give exactly one of noise_multiplier/target_epsilon.

    `enabled = false` turns DP-SGD off (then no noise source is needed). `grad_sample_mode = "auto"`
    picks the fastest mode measured exact for the model's layers (`privacy.dp_sgd.auto_grad_sample_mode`).
    """

    enabled: bool = True
    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = Field(default=None, description="ε each partner may spend per round of local training")
    delta: float = 1e-5
    accountant: str = "prv"
    grad_sample_mode: str = "auto"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            for error in exc.errors():
                if isinstance(error.get("ctx", {}).get("error"), LocalTrainingError):
                    raise error["ctx"]["error"] from None
            raise LocalTrainingError(describe_validation_error("DPSGDSettings", exc)) from None

    @model_validator(mode="after")
    def _valid(self) -> DPSGDSettings:
        from privacy.composition import accountant_names

        if self.enabled and (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise LocalTrainingError(
                "DPSGDSettings needs exactly one of noise_multiplier and target_epsilon, got "
                f"noise_multiplier={self.noise_multiplier!r}, target_epsilon={self.target_epsilon!r}"
            )
        for name in ("max_grad_norm", "noise_multiplier", "target_epsilon"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise LocalTrainingError(f"DPSGDSettings.{name} must be a finite number > 0, got {value!r}")
        if not 0 < self.delta < 1:
            raise LocalTrainingError(f"DPSGDSettings.delta must be a number in (0, 1), got {self.delta!r}")
        if self.accountant not in accountant_names():
            raise LocalTrainingError(
                f"DPSGDSettings.accountant must be one of {list(accountant_names())}, got {self.accountant!r}"
            )
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise LocalTrainingError(
                f"DPSGDSettings.grad_sample_mode must be one of {list(GRAD_SAMPLE_MODES)}, got {self.grad_sample_mode!r}"
            )
        return self


@dataclass(frozen=True, kw_only=True)
class DPSGDPlan:
    """One local DP-SGD run: Poisson sampling rate q, steps, noise multiplier σ, and the ε they spend at δ."""

    sample_rate: float
    steps: int
    noise_multiplier: float
    delta: float
    accountant: str

    @cached_property
    def epsilon(self) -> float:
        """An upper bound on the run's ε at `delta` (computed once, when first asked)."""
        from privacy.accounting import epsilon

        return epsilon(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate, steps=self.steps,
                       delta=self.delta, accountant=self.accountant)


def plan_dp_sgd(dp: DPSGDSettings, *, num_examples: int, batch_size: int, epochs: int) -> DPSGDPlan:
    """The plan of `epochs` epochs of DP-SGD over `num_examples` records in batches of `batch_size`."""
    for name, value in (("num_examples", num_examples), ("batch_size", batch_size), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LocalTrainingError(f"{name} must be an integer ≥ 1, got {value!r}")
    if not dp.enabled:
        raise LocalTrainingError("DP-SGD is disabled in these settings: there is nothing to plan")
    batches = math.ceil(num_examples / batch_size)
    sample_rate, steps = 1.0 / batches, epochs * batches
    sigma = dp.noise_multiplier
    if sigma is None:
        from privacy.accounting import noise_multiplier

        assert dp.target_epsilon is not None  # DPSGDSettings requires one of the two
        sigma = noise_multiplier(target_epsilon=dp.target_epsilon, sample_rate=sample_rate, steps=steps,
                                 delta=dp.delta, accountant=dp.accountant)
    return DPSGDPlan(sample_rate=sample_rate, steps=steps, noise_multiplier=sigma, delta=dp.delta,
                     accountant=dp.accountant)
