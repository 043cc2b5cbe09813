"""Privacy accounting for what a partner releases: ε of DP-SGD, the σ for a target ε, running totals.

- `epsilon(...)`: ε of `steps` Poisson-subsampled Gaussian steps (DP-SGD) at δ.
- `noise_multiplier(...)`: the inverse, a σ whose ε is ≤ the target (and within ~1% of it).
- `PrivacyAccount`: one running total over heterogeneous releases (DP-SGD segments and Gaussian
  releases of evaluation statistics), with Opacus-style `state_dict`/`load_state_dict`.
- `gaussian_sigma(...)`: σ for one Gaussian release, exact (see `privacy.gaussian`).

Every number is keyword-only. The accountants behind these (`privacy.composition`, "prv" by
default) report certified upper bounds: this module must never report an ε smaller than the true
one, nor a σ whose ε exceeds the target. Neighbouring datasets differ by adding or removing one
record (add/remove adjacency), as in Opacus and dp_accounting's ADD_OR_REMOVE_ONE.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from privacy.composition import Accountant, Segment, accountant_names, create_accountant
from privacy.errors import AccountingError
from privacy.gaussian import gaussian_sigma
from privacy.validation import require_delta, require_number

__all__ = ["PrivacyAccount", "epsilon", "gaussian_sigma", "noise_multiplier", "create_accountant"]

_STATE_VERSION = 1
_MAX_SIGMA = 1e6
_MIN_SIGMA = 1e-3
# noise_multiplier stops once ε(σ) is within this fraction below the target.
_INVERSE_RELATIVE_TOLERANCE = 0.005


def epsilon(
    *, noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "prv"
) -> float:
    """An upper bound on ε after `steps` Poisson-subsampled Gaussian steps at `delta`."""
    segment = Segment(noise_multiplier, sample_rate, steps)
    return create_accountant(accountant).epsilon([segment], delta=delta)


def noise_multiplier(
    *,
    target_epsilon: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "prv",
) -> float:
    """A noise multiplier σ with `epsilon(noise_multiplier=σ, ...) <= target_epsilon`, as small as found.

    Bisection on log σ; every candidate returned has had its ε computed and checked, so the
    guarantee does not rest on ε being monotone in σ. Raises `AccountingError` when no σ up to
    1e6 reaches the target.
    """
    require_number("target_epsilon", target_epsilon, positive=True)
    require_delta(delta)
    Segment(1.0, sample_rate, steps)  # validate before any search
    engine = create_accountant(accountant)
    cache: dict[float, float] = {}

    def eps_at(sigma: float) -> float:
        if sigma not in cache:
            cache[sigma] = engine.epsilon([Segment(sigma, sample_rate, steps)], delta=delta)
        return cache[sigma]

    low, high = 0.5, 1.0  # invariant once bracketed: ε(low) > target ≥ ε(high)
    while eps_at(high) > target_epsilon:
        low, high = high, high * 2
        if high > _MAX_SIGMA:
            raise AccountingError(
                f"no noise_multiplier up to {_MAX_SIGMA:g} reaches target_epsilon={target_epsilon!r} "
                f"with sample_rate={sample_rate!r}, steps={steps!r}, delta={delta!r}"
            )
    while eps_at(low) <= target_epsilon:
        if low < _MIN_SIGMA:
            return low
        low, high = low / 2, low
    for _ in range(100):
        if eps_at(high) >= target_epsilon * (1 - _INVERSE_RELATIVE_TOLERANCE) or high / low < 1 + 1e-9:
            break
        middle = math.sqrt(low * high)
        if eps_at(middle) <= target_epsilon:
            high = middle
        else:
            low = middle
    return high


class PrivacyAccount:
    """A running total of ε over everything released from one dataset, composed by one accountant.

    Records DP-SGD segments (σ, q, steps) and Gaussian releases of statistics (σ/Δ, 1, 1) and
    reports ε for any δ. Adding is check-then-change: an invalid release leaves the account as it
    was. Deterministic: the same history gives the same ε.
    """

    def __init__(self, *, accountant: str = "prv") -> None:
        self._accountant: Accountant = create_accountant(accountant)
        self._segments: list[Segment] = []

    @property
    def accountant(self) -> str:
        """The name of the accountant that composes this account."""
        return self._accountant.name

    @property
    def segments(self) -> tuple[Segment, ...]:
        """Everything recorded so far, in order."""
        return tuple(self._segments)

    def __len__(self) -> int:
        return len(self._segments)

    def add_dpsgd(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> None:
        """Record `steps` DP-SGD steps with noise multiplier σ and Poisson sampling rate q."""
        self._segments.append(Segment(noise_multiplier, sample_rate, steps))

    def add_gaussian_release(self, *, sigma: float, l2_sensitivity: float) -> None:
        """Record one release of a statistic with L2 sensitivity Δ plus N(0, σ²) noise."""
        sigma = require_number("sigma", sigma, positive=True)
        l2_sensitivity = require_number("l2_sensitivity", l2_sensitivity, positive=True)
        self._segments.append(Segment(sigma / l2_sensitivity, 1.0, 1))

    def epsilon(self, *, delta: float) -> float:
        """An upper bound on the ε of everything recorded, at `delta` (0.0 when nothing is)."""
        return self._accountant.epsilon(self._segments, delta=delta)

    def state_dict(self) -> dict[str, Any]:
        """The account as plain JSON-able data: accountant name, version and segments."""
        return {
            "version": _STATE_VERSION,
            "accountant": self.accountant,
            "segments": [[s.noise_multiplier, s.sample_rate, s.steps] for s in self._segments],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Replace the history with `state_dict`'s, after validating all of it.

        Raises `AccountingError` (a `ValueError`) naming the problem: empty or not a mapping, a
        missing key, another version or accountant, or a malformed segment. On error nothing changes.
        """
        if not isinstance(state_dict, Mapping) or len(state_dict) == 0:
            raise AccountingError(
                "state_dict is empty or not a mapping and cannot be loaded into a PrivacyAccount"
            )
        for key in ("version", "accountant", "segments"):
            if key not in state_dict:
                raise AccountingError(f"state_dict has no key {key!r}; cannot load it into a PrivacyAccount")
        if state_dict["version"] != _STATE_VERSION:
            raise AccountingError(
                f"state_dict has version {state_dict['version']!r}; "
                f"this PrivacyAccount reads version {_STATE_VERSION}"
            )
        if state_dict["accountant"] != self.accountant:
            known = state_dict["accountant"] in accountant_names()
            raise AccountingError(
                f"state_dict was written by accountant {state_dict['accountant']!r}"
                f"{'' if known else ' (unknown)'} and cannot be loaded into a PrivacyAccount "
                f"using accountant {self.accountant!r}"
            )
        raw = state_dict["segments"]
        if not isinstance(raw, (list, tuple)):
            raise AccountingError(f"state_dict['segments'] must be a list, got {type(raw).__name__}")
        segments = []
        for index, item in enumerate(raw):
            if not isinstance(item, (list, tuple)) or len(item) != 3:
                raise AccountingError(
                    f"state_dict['segments'][{index}] must be "
                    f"[noise_multiplier, sample_rate, steps], got {item!r}"
                )
            try:
                segments.append(Segment(*item))
            except AccountingError as error:
                raise AccountingError(f"state_dict['segments'][{index}]: {error}") from None
        self._segments = segments
