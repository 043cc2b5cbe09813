"""The Gaussian mechanism for releasing a vector of sums from one partner's data.

The caller describes how one record can move the released arrays: for each array a scale
`s` such that one record changes each coordinate it touches by at most `s`, and the number
of coordinates one record touches in all. Dividing each array by its scale bounds every
touched coordinate's change by 1, so the L2 sensitivity (add/remove one record) is
sqrt(coordinates_per_record); noise N(0, σ²) calibrated to it is added in those units,
i.e. N(0, (σ·s)²) in the array's own units. The noise is drawn at the partner before
anything leaves it; the guarantee rests on this partner's noise alone. Under encrypted aggregation a
partner may add only a share of it (`noise_share`: distributed noise), and then the release's (ε, δ)
holds under the assumption that enough contributors are honest; the share's own (ε, δ) is reported beside it.

Noise comes from numpy's PCG64 seeded from the operating system's entropy; it is not
hardened against floating-point side channels (a known limit of textbook Gaussian sampling).
This module must never release an array without its noise, nor report an ε smaller than
the one the noise achieves.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from privacy.gaussian import gaussian_epsilon, gaussian_sigma


@dataclass(frozen=True)
class GaussianRelease:
    """One calibrated release: σ per unit of scaled sensitivity, and the (ε, δ) it achieves."""

    epsilon: float
    delta: float
    l2_sensitivity: float
    sigma: float

    def std(self, scale: float) -> float:
        """Standard deviation of the noise on an array whose per-record scale is `scale`."""
        return self.sigma * scale

    def as_record(self) -> dict[str, float]:
        return {"epsilon": self.epsilon, "delta": self.delta, "l2_sensitivity": self.l2_sensitivity, "sigma": self.sigma}


def calibrate_release(*, epsilon: float, delta: float, coordinates_per_record: int) -> GaussianRelease:
    """σ for one (ε, δ)-DP release in which one record touches that many unit coordinates."""
    if coordinates_per_record < 1:
        raise ValueError(f"coordinates_per_record must be at least 1, got {coordinates_per_record}")
    sensitivity = math.sqrt(coordinates_per_record)
    sigma = gaussian_sigma(epsilon=epsilon, delta=delta, l2_sensitivity=sensitivity)
    return GaussianRelease(epsilon=epsilon, delta=delta, l2_sensitivity=sensitivity, sigma=sigma)


def noise_share(central: GaussianRelease, *, honest_required: int) -> GaussianRelease:
    """One partner's share of a distributed release: N(0, σ²/t) instead of N(0, σ²), t = `honest_required`.

    When every contributor to an encrypted sum adds such a share, the decrypted sum carries variance
    h·σ²/t from its h honest contributors, at least the σ² of `central` whenever h ≥ t (the stated
    assumption). The share is returned with the (ε, δ) it achieves on its own (Δ/(σ/√t), at the same δ,
    rounded up by `gaussian_epsilon`): what holds for this partner whatever the others do. t = 1 is
    the central release itself.
    """
    if isinstance(honest_required, bool) or not isinstance(honest_required, int) or honest_required < 1:
        raise ValueError(f"honest_required must be an integer of at least 1, got {honest_required!r}")
    if honest_required == 1:
        return central
    sigma = central.sigma / math.sqrt(honest_required)
    epsilon = gaussian_epsilon(mu=central.l2_sensitivity / sigma, delta=central.delta)
    return GaussianRelease(epsilon=max(epsilon, central.epsilon), delta=central.delta,
                           l2_sensitivity=central.l2_sensitivity, sigma=sigma)


def add_gaussian_noise(
    arrays: Mapping[str, np.ndarray],
    *,
    scales: Mapping[str, float],
    release: GaussianRelease,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Each array plus N(0, (σ·scale)²) per coordinate; every array must have a scale."""
    missing = sorted(set(arrays) - set(scales))
    if missing:
        raise ValueError(f"no sensitivity scale for arrays {missing}: refusing to release them")
    generator = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    return {
        name: np.asarray(array, dtype=np.float64) + generator.normal(0.0, release.std(scales[name]), np.shape(array))
        for name, array in arrays.items()
    }
