"""The Gaussian mechanism for releasing a vector of sums from one partner's data.

The caller describes how one record can move the released arrays: for each array a scale
`s` such that one record changes each coordinate it touches by at most `s`, and the number
of coordinates one record touches in all. Dividing each array by its scale bounds every
touched coordinate's change by 1, so the L2 sensitivity (add/remove one record) is
sqrt(coordinates_per_record); noise N(0, σ²) calibrated to it is added in those units,
i.e. N(0, (σ·s)²) in the array's own units. The noise is drawn at the partner before
anything leaves it; the guarantee rests on this partner's noise alone.

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

from privacy.gaussian import gaussian_sigma


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
