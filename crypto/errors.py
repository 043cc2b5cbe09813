"""Errors the `crypto` package raises on purpose; each message names what failed and where.

A verification failure (a proof or signature that does not check out) maps to
`ExitCode.VERIFICATION_FAILED`; a malformed input (a key file, a note, a size
outside a tree) maps to `ExitCode.INVALID_INPUT`. New crypto modules add their
own subclass of `CryptoError` here rather than raising bare exceptions.
This module must never import anything outside `accord.errors`.
"""

from __future__ import annotations

from accord.errors import AccordError, ExitCode


class CryptoError(AccordError):
    """Base of every error the `crypto` package raises on purpose."""


class ProofError(CryptoError):
    """A Merkle inclusion or consistency proof does not verify."""

    exit_code = ExitCode.VERIFICATION_FAILED


class SignatureError(CryptoError):
    """A signature or cosignature does not verify."""

    exit_code = ExitCode.VERIFICATION_FAILED


class UnknownSignerError(SignatureError):
    """A signed note carries no signature from any key the verifier trusts."""


class KeyFileError(CryptoError):
    """A key file or encoded key is missing, malformed, of the wrong type, or would be overwritten."""

    exit_code = ExitCode.INVALID_INPUT


class NoteFormatError(CryptoError):
    """A signed note, checkpoint body, key name or verifier key is malformed."""

    exit_code = ExitCode.INVALID_INPUT


class MerkleTreeError(CryptoError):
    """A Merkle tree was asked about a size or index it does not hold, or given a malformed hash."""

    exit_code = ExitCode.INVALID_INPUT


# Homomorphic encryption (`he_keys`, `he_aggregation`, `python -m crypto.keys`): each message names the
# file, study, bundle or array that failed.
class HEError(CryptoError):
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
