"""Errors raised by `federated.training`; each message names the architecture, option, file or tensor.

Both also derive from `ValueError`, so code that validates models like PyTorch does keeps working.
"""

from __future__ import annotations

from federated.errors import ConfigError, DataError


class ModelConfigError(ConfigError, ValueError):
    """An unknown architecture name, or options that the architecture cannot take."""


class WeightsError(DataError, ValueError):
    """Weights that do not fit a model (missing, unexpected or misshapen tensors, NaN/Inf) or a bad file."""
