"""The exact (ε, δ) of the Gaussian mechanism: the analytic Gaussian mechanism (Balle & Wang, ICML 2018).

A Gaussian release of a statistic with L2 sensitivity Δ and noise N(0, σ²) has, for every ε ≥ 0,
the tight privacy profile (Balle & Wang 2018, Theorem 8; with μ = Δ/σ)

    δ(ε) = Φ(μ/2 − ε/μ) − e^ε · Φ(−μ/2 − ε/μ).

`gaussian_sigma` solves δ(ε) = δ for the smallest σ numerically (bisection), which is valid for every
ε > 0 and tighter than the classic σ = Δ·sqrt(2 ln(1.25/δ))/ε (Dwork & Roth 2014, Theorem A.1),
a bound that is only proven for ε < 1 and is loose even there. `gaussian_epsilon` inverts the
profile the other way. Composing k Gaussian releases with μ₁…μ_k is exactly one Gaussian with
μ = sqrt(Σ μᵢ²) (Dong, Roth & Su 2019), which `privacy.accounting` uses for evaluation releases.

This module must never report an ε smaller, or a σ smaller, than the exact value: every root is
rounded in the conservative direction and then re-checked against the profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from privacy.validation import require_delta, require_number

# Relative margin added to every root so floating-point error in the profile and the root
# finder can only make the answer more conservative (ε up, σ up); far below any practical
# precision, and large enough to cover the ~1e-8 relative error of the profile evaluation.
SAFETY_MARGIN = 1e-6
_MAX_BRACKET_DOUBLINGS = 2000


def log_gaussian_delta(*, epsilon: float, mu: float) -> float:
    """log δ(ε) of the μ-Gaussian mechanism (noise multiplier σ/Δ = 1/μ); −inf when δ underflows."""
    from scipy.special import log_ndtr  # lazy: importing `privacy` must stay fast

    a = log_ndtr(mu / 2 - epsilon / mu)
    b = epsilon + log_ndtr(-mu / 2 - epsilon / mu)
    if b >= a:  # only through rounding: the true δ is ≥ 0 and here indistinguishable from 0
        return -math.inf
    return float(a + math.log1p(-math.exp(b - a)))


def _boundary(excess: Callable[[float], float], *, holds: float, fails: float) -> float:
    """Where the monotone `excess` crosses 0 between `holds` (excess ≤ 0) and `fails` (> 0), returned
    from the side where it holds, to 1e-15 absolute + 1e-15 relative (the tolerance brentq had).

    Bisection in plain Python rather than scipy.optimize: a partner's node imports afresh for every
    task (one ClientApp process per message) and scipy.optimize cost each DP task ~0.3 s of CPU.
    The callers still round the root conservatively and re-check the profile there.
    """
    while abs(fails - holds) > 1e-15 + 1e-15 * abs(holds):
        middle = (holds + fails) / 2
        if middle in (holds, fails):  # no float left between them
            break
        if excess(middle) <= 0:
            holds = middle
        else:
            fails = middle
    return holds


def gaussian_delta(*, epsilon: float, mu: float) -> float:
    """δ(ε) of the μ-Gaussian mechanism (μ = L2 sensitivity / σ)."""
    return math.exp(log_gaussian_delta(epsilon=epsilon, mu=mu))


def gaussian_epsilon(*, mu: float, delta: float) -> float:
    """The smallest ε (rounded up) with δ(ε) ≤ `delta` for the μ-Gaussian mechanism."""
    require_delta(delta)
    require_number("mu (L2 sensitivity / σ)", mu, positive=True)
    log_target = math.log(delta)

    def excess(eps: float) -> float:
        return log_gaussian_delta(epsilon=eps, mu=mu) - log_target

    if excess(0.0) <= 0:
        return 0.0
    high = 1.0
    for _ in range(_MAX_BRACKET_DOUBLINGS):
        if excess(high) <= 0:
            break
        high *= 2
    root = _boundary(excess, holds=high, fails=0.0)
    eps = root * (1 + SAFETY_MARGIN) + 1e-15
    while excess(eps) > 0:  # the profile must hold at the reported ε, not only near it
        eps *= 1 + SAFETY_MARGIN
    return eps


def gaussian_sigma(*, epsilon: float, delta: float, l2_sensitivity: float) -> float:
    """The smallest σ (rounded up) for which adding N(0, σ²) to a statistic is (ε, δ)-DP.

    Exact for every ε > 0 (analytic Gaussian mechanism, Balle & Wang 2018), so never larger than
    the classic sqrt(2 ln(1.25/δ))·Δ/ε and, unlike it, valid for ε ≥ 1.
    """
    require_number("epsilon", epsilon, positive=True)
    require_delta(delta)
    require_number("l2_sensitivity", l2_sensitivity, positive=True)
    log_target = math.log(delta)

    def excess(log_mu: float) -> float:  # increasing in μ: more signal, less privacy
        return log_gaussian_delta(epsilon=epsilon, mu=math.exp(log_mu)) - log_target

    low, high = -1.0, 1.0
    while excess(low) > 0:
        low *= 2
    while excess(high) <= 0:
        high *= 2
    log_mu = _boundary(excess, holds=low, fails=high)
    multiplier = math.exp(-log_mu) * (1 + SAFETY_MARGIN)
    while excess(-math.log(multiplier)) > 0:
        multiplier *= 1 + SAFETY_MARGIN
    return multiplier * l2_sensitivity


def classic_gaussian_sigma(*, epsilon: float, delta: float, l2_sensitivity: float) -> float:
    """The textbook σ = Δ·sqrt(2 ln(1.25/δ))/ε, only proven for ε < 1; kept for comparison."""
    return l2_sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon

