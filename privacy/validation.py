"""Checks of privacy-critical numbers at the package's boundaries, shared by every module here.

A privacy parameter that is NaN, infinite, negative or a bool must be refused by name before it
reaches an accountant or the ledger; it must never be coerced into something that computes.
"""

from __future__ import annotations

import math

from privacy.errors import AccountingError, PrivacyError


def require_number(
    name: str, value: object, *, positive: bool, error: type[PrivacyError] = AccountingError
) -> float:
    """`value` as a float if it is a finite real > 0 (`positive`) or ≥ 0; else raise `error` naming it."""
    bound = "> 0" if positive else "≥ 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{name} must be a finite number {bound}, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise error(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def require_delta(delta: object) -> float:
    """δ as a float if 0 < δ < 1; otherwise raise `AccountingError`."""
    if isinstance(delta, bool) or not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise AccountingError(f"delta must be a number in (0, 1), got {delta!r}")
    return float(delta)
