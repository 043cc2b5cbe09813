"""Composition: the privacy accountants that turn a history of Gaussian segments into one ε for a δ, and their registry.

(`privacy.accounting` is built on these: ε of a DP-SGD run, σ for a target ε, running totals.)

A `Segment` is `steps` compositions of a Poisson-subsampled Gaussian mechanism with noise
multiplier σ (noise std / L2 sensitivity) and sampling rate q; a Gaussian release of an evaluation
statistic is the segment (σ/Δ, 1, 1). Accountants are stateless and looked up by name through
`create_accountant` (modelled on opacus/accountants/registry.py) instead of if/else chains:

- "prv" (default): Opacus's PRV accountant (Gopi, Lee & Wutschitz 2021) reporting its certified
  *upper* bound, never its estimate, with the error band tightened to 1% of ε (`_PRV_RELATIVE_ERROR`)
  so that the bound is within ~2% of the true ε instead of Opacus's fixed ±0.01. Segments with
  q = 1 (plain Gaussian releases) compose exactly into one Gaussian (Dong, Roth & Su 2019); when
  nothing is subsampled, ε comes from the exact analytic profile (`privacy.gaussian`). If the PRV
  computation fails (float overflow for ε ≳ 700, δ too small for the grid) the RDP bound, always
  valid and looser, is reported instead. Opacus's PRV models the remove-one pair; the tests and
  `benchmarks/privacy_accounting_grid.py` check it against dp_accounting's PLD, which takes the
  worse of add and remove, and it is never below it.
- "rdp": Opacus's RDP accountant (Mironov 2017; Balle et al. 2020 conversion), always an upper
  bound, usually a loose one.

Every accountant here must never report an ε smaller than the true one: only upper bounds,
rounded up. Opacus (and with it torch) is imported lazily, inside the computations, so that
importing `privacy` stays fast for partner processes.
"""

from __future__ import annotations

import abc
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from privacy.errors import AccountingError
from privacy.gaussian import gaussian_epsilon
from privacy.validation import require_delta, require_number

# The PRV bound is estimate + eps_error; eps_error = 1% of ε keeps the reported value within
# ~1-1.5% of the true ε (the estimate itself is far more accurate than its certified band).
_PRV_RELATIVE_ERROR = 0.01
# Opacus's PRV grid has 2·L·sqrt(n·ln(12/δ_err)/2)/eps_error points; this cap (~1.5 GB peak) puts a
# floor under eps_error. Below it the bound stays honest but is looser than 1% (only for ε ≲ 1e-3).
_PRV_MAX_GRID_POINTS = 2**22
_PRV_PILOT_EPS_ERROR = 0.1


@dataclass(frozen=True)
class Segment:
    """`steps` compositions of a Poisson-subsampled Gaussian (σ = `noise_multiplier`, q = `sample_rate`)."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        require_number("noise_multiplier", self.noise_multiplier, positive=True)
        if isinstance(self.sample_rate, bool) or not (
            isinstance(self.sample_rate, (int, float)) and 0 < self.sample_rate <= 1
        ):
            raise AccountingError(f"sample_rate must be a number in (0, 1], got {self.sample_rate!r}")
        if isinstance(self.steps, bool) or not (
            isinstance(self.steps, (int, np.integer)) and self.steps >= 1
        ):
            raise AccountingError(f"steps must be an integer ≥ 1, got {self.steps!r}")
        # normalise numpy scalars so state dicts stay plain JSON
        object.__setattr__(self, "noise_multiplier", float(self.noise_multiplier))
        object.__setattr__(self, "sample_rate", float(self.sample_rate))
        object.__setattr__(self, "steps", int(self.steps))


class Accountant(abc.ABC):
    """Computes the ε of a composition of segments; stateless, so one instance serves any history."""

    name: ClassVar[str]

    def epsilon(self, segments: Sequence[Segment], *, delta: float) -> float:
        """An upper bound on ε for the composition of `segments` at `delta` (0.0 for no segments)."""
        require_delta(delta)
        if not segments:
            return 0.0
        return self._epsilon(_merge(segments), delta=delta)

    @abc.abstractmethod
    def _epsilon(self, segments: list[Segment], *, delta: float) -> float: ...


class RDPAccountant(Accountant):
    """Rényi-DP accounting (Opacus), always an upper bound on ε, usually a loose one."""

    name = "rdp"

    def _epsilon(self, segments: list[Segment], *, delta: float) -> float:
        from opacus.accountants import RDPAccountant as OpacusRDP

        accountant = OpacusRDP()
        accountant.history = [(s.noise_multiplier, s.sample_rate, s.steps) for s in segments]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eps = float(accountant.get_epsilon(delta))
        return eps if math.isfinite(eps) else math.inf


class PRVAccountant(Accountant):
    """PRV accounting (Opacus) reporting the certified upper bound; exact for Gaussian-only histories."""

    name = "prv"

    def _epsilon(self, segments: list[Segment], *, delta: float) -> float:
        mu = math.sqrt(sum(s.steps / s.noise_multiplier**2 for s in segments if s.sample_rate == 1))
        history = [(s.noise_multiplier, s.sample_rate, s.steps) for s in segments if s.sample_rate < 1]
        if not history:
            return gaussian_epsilon(mu=mu, delta=delta)
        if mu > 0:  # all plain Gaussian releases together are exactly one Gaussian with this μ
            history.append((1 / mu, 1.0, 1))
        try:
            eps = _prv_upper_bound(history, delta=delta)
        except (ValueError, RuntimeError, ArithmeticError):
            eps = math.nan
        if not math.isfinite(eps):  # documented fallback: RDP is always a valid upper bound
            eps = RDPAccountant()._epsilon(segments, delta=delta)
        return eps


def _prv_upper_bound(history: list[tuple[float, float, int]], *, delta: float) -> float:
    """Opacus's certified PRV upper bound with eps_error shrunk until it is ≤ 1% of ε."""
    from opacus.accountants import PRVAccountant as OpacusPRV
    from opacus.accountants.analysis.prv import (
        PoissonSubsampledGaussianPRV,
        compute_safe_domain_size,
    )

    delta_error = delta / 1000  # Opacus's default
    accountant = OpacusPRV()
    accountant.history = history
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prvs = [PoissonSubsampledGaussianPRV(q, sigma) for sigma, q, _ in history]
        steps = [n for _, _, n in history]
        half_width = compute_safe_domain_size(prvs, steps, eps_error=0.0, delta_error=delta_error)
        spread = math.sqrt(sum(steps) * math.log(12 / delta_error) / 2)
        floor = 2 * half_width * spread / _PRV_MAX_GRID_POINTS
        eps_error = max(_PRV_PILOT_EPS_ERROR, floor)
        while True:
            upper = float(accountant.get_epsilon(delta, eps_error=eps_error, delta_error=delta_error))
            if not math.isfinite(upper):
                return math.inf
            wanted = max(_PRV_RELATIVE_ERROR * (upper - eps_error), floor)
            if eps_error <= wanted or eps_error <= floor:
                return upper
            # aim a little below the wanted error so that one more pass suffices
            eps_error = max(0.8 * wanted, floor, eps_error / 1000)


def _merge(segments: Iterable[Segment]) -> list[Segment]:
    """Add up the steps of segments with equal (σ, q): composition is commutative."""
    counts: Counter[tuple[float, float]] = Counter()
    for s in segments:
        counts[(s.noise_multiplier, s.sample_rate)] += s.steps
    return [Segment(sigma, q, n) for (sigma, q), n in sorted(counts.items())]


_ACCOUNTANTS: dict[str, type[Accountant]] = {
    RDPAccountant.name: RDPAccountant,
    PRVAccountant.name: PRVAccountant,
}


def accountant_names() -> tuple[str, ...]:
    """The names `create_accountant` accepts."""
    return tuple(_ACCOUNTANTS)


def create_accountant(name: str) -> Accountant:
    """The accountant registered under `name` ("prv" or "rdp")."""
    try:
        return _ACCOUNTANTS[name]()
    except (KeyError, TypeError):
        raise AccountingError(
            f"unknown accountant {name!r}; choose one of {', '.join(map(repr, _ACCOUNTANTS))}"
        ) from None
