"""Encrypted bundles: a partner encrypts a round's arrays, the coordinator adds bundles knowing only the
public context, and a partner holding the secret context decrypts the aggregate.

A bundle is the study key's fingerprint, the layout (`crypto.he_layout`), the number of partners summed
into it ("addends"), and SEAL ciphertexts. On the wire it is

    b"AHEB\\x01" | u32 header length | header (RFC 8785 JSON) | (u32 length | SEAL ciphertext)* | SHA-256

where the trailing SHA-256 covers everything before it, so corruption and truncation are refused before
SEAL reads a byte. The checksum is not a signature: partners sign bundles in the protocol layer.

Weights are multiplied by the partner's example count *before* `encrypt_bundle` (by the caller), so the
coordinator only adds.

Cohort blinding (`cohort_blinding`): a round's bundles are bound to the cohort its task announced, so
that only the sum of exactly that cohort's bundles decrypts. Let X = (x_0, ..., x_{n-1}) be the
announced cohort (sorted partner ids, n >= 2) and, for each member, R_i = PRF_K(study, round, X, x_i):
SHAKE-256 under a key K derived from the study's secret key, uniform mod the plain modulus t in every
used slot. Partner x_i adds to every used slot the pad

    p_i = R_i - R_{i+1 mod n}   (mod t),

so the pads of the whole cohort are shares of zero: sum_i p_i = 0, and the exact sum decrypts with
nothing to remove. The argument that nothing else does:
- The coordinator holds no key (not even a public encryption key), so every ciphertext it can form is
  a slot-wise combination sum_i c_i B_i + P of bundles B_i it received, with integer coefficients c_i
  (per slot) and a plaintext P it chose. The pads it then carries are sum_i c_i p_i = sum_i (c_i -
  c_{i-1}) R_i. Since t is prime and the R_i are independent and uniform (PRF outputs under K, which
  the coordinator lacks), this is uniform mod t (a one-time pad) unless c_i = c_{i-1} for every i,
  i.e. unless every member of X carries the same coefficient c. A subset ({A, B} of {A, B, C}), a
  bundle alone, a bundle twice, or "{A, B} here and {A, B, C} there" all break that, and every slot
  where they do decrypts to noise that says nothing about the data. What is left, c·(the cohort's
  sum) + P, is the aggregate the round releases (the membership canary then forces c = 1).
- Bundles made for another round, study or announced cohort carry pads from other labels, that is
  other independent R's: mixing them in adds more noise, never cancels any. A coordinator that tells
  A and B "cohort {A, B}" but C "{A, B, C}" therefore gets a decryptable {A, B} and an undecryptable C.
- One bundle per partner per (study, round) and one cohort per study key are the partner's to keep
  (`federated.client.encryption`): a second bundle of the same round under the same pad would let
  B - B' cancel the pad, and a second cohort would let two decrypted rounds differ by one partner.
BFV is exact mod t, so the cancellation is exact. Every member's pad needs its successor's R, so a
member that drops out leaves the whole round undecryptable: the round fails (no recovery would open
a differencing path, so none is attempted).

Decryption refuses a bundle made under another study's key (fingerprint), and checks that the slots
the layout leaves empty decrypt to zero, which a wrong key or a tampered ciphertext breaks with
overwhelming probability.

This module must never pickle, never need a secret key to add, and never return values from a bundle
whose fingerprint, checksum or zero slots do not check out.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import rfc8785
import tenseal.sealapi as seal

from crypto.errors import CiphertextError, HEKeyError, LayoutMismatchError
from crypto.he_keys import PublicContext, SecretContext
from crypto.he_layout import BundleLayout
from crypto.he_serialization import seal_bytes

MAGIC = b"AHEB\x01"
_U32 = struct.Struct(">I")
_DIGEST = 32


@dataclass(frozen=True)
class EncryptedBundle:
    """One partner's (or a sum of partners') encrypted arrays; `to_bytes()` is what travels."""

    study_id: str
    fingerprint: str
    layout: BundleLayout
    addends: int
    ciphertexts: tuple[bytes, ...]

    def header(self) -> dict[str, Any]:
        return {
            "study_id": self.study_id,
            "fingerprint": self.fingerprint,
            "addends": self.addends,
            "ciphertexts": len(self.ciphertexts),
            "layout": self.layout.to_json(),
        }

    @cached_property
    def _wire(self) -> bytes:
        header = rfc8785.dumps(self.header())
        parts = [MAGIC, _U32.pack(len(header)), header]
        for blob in self.ciphertexts:
            parts += [_U32.pack(len(blob)), blob]
        body = b"".join(parts)
        return body + hashlib.sha256(body).digest()

    def to_bytes(self) -> bytes:
        return self._wire

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the serialized bundle: what a partner signs and a decryptor checks."""
        return self._wire[-_DIGEST:].hex()

    @property
    def nbytes(self) -> int:
        return len(self._wire)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "bundle") -> EncryptedBundle:
        """Parse a serialized bundle; refuse corrupted, truncated or malformed bytes, naming `source`."""
        view = memoryview(data)
        if len(view) < len(MAGIC) + _U32.size + _DIGEST or bytes(view[: len(MAGIC)]) != MAGIC:
            raise CiphertextError(f"{source}: not an Accord encrypted bundle (bad magic or too short)")
        body, end = view[:-_DIGEST], len(view) - _DIGEST
        if hashlib.sha256(body).digest() != bytes(view[end:]):
            raise CiphertextError(f"{source}: checksum mismatch, the bundle is corrupted or truncated")
        try:
            pos = len(MAGIC)
            (size,) = _U32.unpack_from(body, pos)
            header = json.loads(bytes(body[pos + _U32.size : pos + _U32.size + size]))
            pos += _U32.size + size
            blobs = []
            while pos < end:
                (size,) = _U32.unpack_from(body, pos)
                blobs.append(bytes(body[pos + _U32.size : pos + _U32.size + size]))
                pos += _U32.size + size
            bundle = cls(
                study_id=str(header["study_id"]),
                fingerprint=str(header["fingerprint"]),
                layout=BundleLayout.from_json(header["layout"]),
                addends=int(header["addends"]),
                ciphertexts=tuple(blobs),
            )
        except (struct.error, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise CiphertextError(f"{source}: malformed bundle ({exc!r})") from exc
        if pos != end or len(blobs) != bundle.layout.ciphertext_count or bundle.addends < 1:
            raise CiphertextError(
                f"{source}: {len(blobs)} ciphertexts for {bundle.addends} addends, "
                f"the layout needs {bundle.layout.ciphertext_count}"
            )
        bundle.__dict__["_wire"] = bytes(view)  # digest = hash of the bytes as received (and signed)
        return bundle


_BLINDING_TAG = b"accord/he/cohort-blinding/v2\x00"


def cohort_blinding(
    context: SecretContext, *, study: str, round: int, partner: str, cohort: Sequence[str], layout: BundleLayout
) -> np.ndarray:
    """`partner`'s pad for one round whose announced cohort is `cohort` (see the module docstring):
    `layout.used_slots` int64 values in [0, t), R(partner) - R(its successor in the sorted cohort) mod t.
    The pads of the whole cohort sum to zero mod t. Deterministic for every holder of the secret context."""
    _require_secret(context, doing="blinding")
    members = sorted(cohort)
    if len(members) < 2 or len(set(members)) != len(members) or partner not in members:
        raise LayoutMismatchError(f"a cohort pad needs at least 2 distinct members, {partner!r} among them; got {members}")
    key = hashlib.sha256(_BLINDING_TAG + context.secret_key).digest()
    successor = members[(members.index(partner) + 1) % len(members)]
    own = _prf_slots(key, rfc8785.dumps([study, round, members, partner]), layout)
    following = _prf_slots(key, rfc8785.dumps([study, round, members, successor]), layout)
    return np.mod(own - following, layout.plain_modulus)


def _prf_slots(key: bytes, label: bytes, layout: BundleLayout) -> np.ndarray:
    """`layout.used_slots` values exactly uniform in [0, t): SHAKE-256(key | block | label), rejection sampled."""
    modulus, count = layout.plain_modulus, layout.used_slots
    bits = modulus.bit_length()
    kept_share = modulus / 2**bits  # the share of `bits`-bit draws below t: > 1/2, near 1 for Accord's t
    kept: list[np.ndarray] = []
    found, block = 0, 0
    while found < count:
        draws = int((count - found) / kept_share * 1.01) + 64
        stream = hashlib.shake_256(key + block.to_bytes(4, "big") + label).digest(8 * draws)
        values = np.frombuffer(stream, dtype="<u8") >> np.uint64(64 - bits)
        kept.append(values[values < np.uint64(modulus)])
        found += len(kept[-1])
        block += 1
    return np.concatenate(kept)[:count].astype(np.int64)


def _check_blinding(blinding: np.ndarray, layout: BundleLayout) -> np.ndarray:
    blinding = np.asarray(blinding)
    if blinding.shape != (layout.used_slots,) or blinding.dtype != np.int64:
        raise LayoutMismatchError(
            f"a blinding must be {layout.used_slots} int64 values for this layout, got {blinding.dtype} {blinding.shape}"
        )
    return blinding


def encrypt_bundle(
    arrays: Mapping[str, Any],
    *,
    context: SecretContext,
    layout: BundleLayout,
    blinding: np.ndarray | None = None,
    seeded: bool = True,
) -> EncryptedBundle:
    """Encrypt one partner's arrays (weights already multiplied by its example count) under the study key.

    `blinding` (`cohort_blinding`) is added to the used slots before encryption. `seeded` (the default)
    sends SEAL's seed in place of each ciphertext's uniformly random half: half the bytes on the wire,
    at the price of the coordinator re-expanding the seed when it loads them.
    """
    _require_secret(context, doing="encryption")
    public = context.public
    layout.check_context(public)
    layout.check_names(arrays)
    slots = np.zeros(layout.ciphertext_count * layout.slot_count, dtype=np.int64)
    for array in layout.arrays:
        slots[array.first_slot : array.first_slot + array.slots] = array.pack(array.encode(arrays[array.name]))
    if blinding is not None:  # both terms lie in (-t, t), t < 2**62: no int64 overflow
        slots[: layout.used_slots] += _check_blinding(blinding, layout)
    rows = np.mod(slots, layout.plain_modulus).reshape(layout.ciphertext_count, layout.slot_count)
    encoder, encryptor, bridge = public.seal.encoder, context.encryptor, seal_bytes()
    blobs = []
    for row in rows:
        plain = seal.Plaintext()
        encoder.encode(row.tolist(), plain)
        if seeded:
            blobs.append(bridge.dump(encryptor.encrypt_symmetric(plain)))
        else:
            cipher = seal.Ciphertext()
            encryptor.encrypt_symmetric(plain, cipher)
            blobs.append(bridge.dump(cipher))
    return EncryptedBundle(public.study_id, public.fingerprint, layout, 1, tuple(blobs))


def add_bundles(bundles: Sequence[EncryptedBundle], *, public_context: PublicContext) -> EncryptedBundle:
    """Sum bundles of the same study and layout; needs no key, only the public parameters."""
    if not bundles:
        raise LayoutMismatchError("no bundles to add")
    for index, bundle in enumerate(bundles):
        _check_key(bundle, public_context, what=f"bundle {index}")
        if bundle.layout != bundles[0].layout:
            theirs, first = bundle.layout.digest[:16], bundles[0].layout.digest[:16]
            raise LayoutMismatchError(f"bundle {index} has layout {theirs}…, bundle 0 has {first}…")
    addends = sum(b.addends for b in bundles)
    if addends > public_context.parameters.max_addends:
        raise CiphertextError(
            f"{addends} contributions exceed the {public_context.parameters.max_addends} this study's parameters "
            f"can sum exactly"
        )
    runtime, bridge = public_context.seal, seal_bytes()
    blobs = []
    for position in range(bundles[0].layout.ciphertext_count):
        loaded = [
            _load(b.ciphertexts[position], runtime, f"bundle {i} ciphertext {position}") for i, b in enumerate(bundles)
        ]
        total = loaded[0]
        if len(loaded) > 1:
            total = seal.Ciphertext()
            runtime.evaluator.add_many(loaded, total)
        blobs.append(bridge.dump(total))
    head = bundles[0]
    return EncryptedBundle(head.study_id, head.fingerprint, head.layout, addends, tuple(blobs))


def decrypt_bundle(bundle: EncryptedBundle, *, secret_context: SecretContext) -> dict[str, np.ndarray]:
    """Decrypt an aggregate: int64 arrays for counts, float64 for fixed-point arrays.

    The cohort's pads cancel in its exact sum, so nothing is removed; anything else decrypts to noise,
    which the layout's bounds (`EncodingError`) or the caller's canary check refuse.
    """
    _require_secret(secret_context, doing="decryption")
    public = secret_context.public
    _check_key(bundle, public, what="bundle")
    bundle.layout.check_context(public)
    if bundle.addends > public.parameters.max_addends:
        raise CiphertextError(f"bundle claims {bundle.addends} contributions, more than can decrypt exactly")
    runtime, decryptor = public.seal, secret_context.decryptor
    rows = []
    for position, blob in enumerate(bundle.ciphertexts):
        plain = seal.Plaintext()
        decryptor.decrypt(_load(blob, runtime, f"ciphertext {position}"), plain)
        rows.append(np.asarray(runtime.encoder.decode_int64(plain), dtype=np.int64))
    slots = np.concatenate(rows)
    layout = bundle.layout
    if np.any(slots[layout.used_slots :]):
        raise CiphertextError(
            "the bundle does not decrypt to a well-formed aggregate (its empty slots are not zero): "
            "wrong key or tampered ciphertext"
        )
    return {a.name: a.decode(a.unpack(slots[a.first_slot : a.first_slot + a.slots])) for a in layout.arrays}


def _require_secret(context: object, *, doing: str) -> None:
    if not isinstance(context, SecretContext):
        raise HEKeyError(f"{doing} needs a partner's secret context; {type(context).__name__} holds no key")


def _check_key(bundle: EncryptedBundle, public: PublicContext, *, what: str) -> None:
    if bundle.fingerprint != public.fingerprint:
        raise HEKeyError(
            f"{what} was encrypted for study {bundle.study_id!r} (key fingerprint {bundle.fingerprint[:16]}…); "
            f"this context is study {public.study_id!r} ({public.fingerprint[:16]}…)"
        )


def _load(blob: bytes, runtime: Any, what: str) -> Any:
    try:
        return seal_bytes().load_into(seal.Ciphertext(), runtime.context, blob)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CiphertextError(f"{what}: SEAL cannot load it ({exc})") from exc
