"""Errors of the homomorphic-encryption layer (`he_keys`, `he_aggregation`, `python -m crypto.keys`).

They subclass `accord.errors.AccordError` directly so that this layer stands on its own; they can be
re-parented under the package's `CryptoError` later without changing any caller. Each message names the
file, study, bundle or array that failed. This module must never import anything outside `accord.errors`.
"""

from __future__ import annotations

from accord.errors import AccordError, ExitCode


class HEError(AccordError):
    """Base of every error the HE layer raises on purpose."""

    exit_code = ExitCode.INVALID_INPUT


class HEKeyError(HEError):
    """A key file is malformed, tampered, of the wrong kind (a secret key where only a public context is
    allowed, or no secret key where one is needed), or belongs to another study's keys."""


class CiphertextError(HEError):
    """An encrypted bundle is corrupted, truncated, or does not decrypt to a well-formed aggregate."""


class LayoutMismatchError(HEError):
    """Arrays or bundles do not match the layout they claim (names, shapes, kinds or packing)."""


class EncodingError(HEError):
    """A value cannot be encoded exactly within the layout's bounds (non-finite, non-integer count, too large)."""
