"""Shared data for the training tests: scikit-learn's 8×8 digits, pixels scaled to [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    return (features / 16.0).astype(np.float32), labels.astype(np.int64)
