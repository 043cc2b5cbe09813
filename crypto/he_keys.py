"""Per-study homomorphic-encryption keys: parameters, the secret context partners hold, the public
context the coordinator holds, their fingerprints, and the loaders that enforce custody.

Scheme: BFV (TenSEAL's SEAL 4, through `tenseal.sealapi`), poly modulus degree 4096, one 58-bit
coefficient prime (log q = 58 <= 58: 256-bit classical security in the HomomorphicEncryption.org
standard's table, ternary secret, sigma = 3.2) and a 44-bit batching plain modulus. Aggregation needs
only ciphertext additions, so there is no multiplicative depth to pay for: a single small prime is enough,
and it keeps a slot at 8 bytes. Partners hold the secret key and encrypt symmetrically, which lets SEAL
send a seed instead of the ciphertext's random half (half the bytes on the wire).

The public context therefore holds no key at all: parameters, the study id and a commitment to the
secret key (SHA-256 under a domain tag). That is all additive aggregation needs. The study's
fingerprint is SHA-256 of the public context's canonical JSON (RFC 8785); both files carry it and both
loaders recompute it.

The key ceremony also pins the study's partners: `partners` maps each partner id to the raw Ed25519
public key of its node (`--key`, its `.pub` half), the only key a contribution of that partner is
checked against (`federated.client.encryption`), and the set an encrypted round's cohort is drawn from.
The table is part of the public context, so the fingerprint everyone compares out of band covers it.

This module must never serialize a secret key into a public context or a params file, and
`load_public_context` must never return a context from a file that holds a secret key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import rfc8785
import tenseal.sealapi as seal

from crypto.errors import HEKeyError
from crypto.he_serialization import seal_bytes

FORMAT = "accord-he-context/1"
SECRET_FILE = "he-secret-context.json"
PUBLIC_FILE = "he-public-context.json"
PARAMS_FILE = "he-params.json"
SECURITY_STANDARD = "HomomorphicEncryption.org security standard (2018), ternary secret, sigma 3.2, classical"
# Largest total log2(q) per poly modulus degree for 128/192/256-bit classical security (standard, Table 1).
MAX_LOG_Q: dict[int, dict[int, int]] = {
    1024: {128: 27, 192: 19, 256: 14},
    2048: {128: 54, 192: 37, 256: 29},
    4096: {128: 109, 192: 75, 256: 58},
    8192: {128: 218, 192: 152, 256: 118},
    16384: {128: 438, 192: 305, 256: 237},
    32768: {128: 881, 192: 611, 256: 476},
}
# Worst-case noise one fresh symmetric ciphertext adds to a sum: SEAL's centred-binomial error is at most
# 21 per coefficient, plus at most 1 from rounding q*m/t; a sum decrypts exactly while noise < q/(2t).
FRESH_NOISE_BOUND = 23
_KEY_COMMITMENT_TAG = b"accord/he/secret-key-commitment/v1\x00"
_STUDY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PUBLIC_FIELDS = {"format", "kind", "study_id", "created", "parameters", "key_commitment", "fingerprint"}
_PARTNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ED25519_PUBLIC_BYTES = 32


@dataclass(frozen=True)
class HEParameters:
    """Encryption parameters of one study; validated for batching and >= 128-bit security."""

    poly_modulus_degree: int
    coeff_modulus: tuple[int, ...]
    plain_modulus: int
    scheme: str = "bfv"

    @property
    def coeff_modulus_bits(self) -> list[int]:
        return [q.bit_length() for q in self.coeff_modulus]

    @property
    def log_q(self) -> int:
        return sum(self.coeff_modulus_bits)

    @property
    def security_bits(self) -> int:
        """Highest standard level (128/192/256) these parameters meet; 0 if below 128."""
        table = MAX_LOG_Q.get(self.poly_modulus_degree, {})
        return max((level for level, bound in table.items() if self.log_q <= bound), default=0)

    @property
    def slot_count(self) -> int:
        return self.poly_modulus_degree

    @property
    def max_addends(self) -> int:
        """How many fresh ciphertexts a sum may hold and still decrypt exactly (worst-case noise)."""
        q = 1
        for prime in self.coeff_modulus:
            q *= prime
        return q // (2 * self.plain_modulus * FRESH_NOISE_BOUND)

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "poly_modulus_degree": self.poly_modulus_degree,
            # decimal strings: the primes exceed the 2**53 integers canonical JSON (RFC 8785) allows
            "coeff_modulus": [str(q) for q in self.coeff_modulus],
            "plain_modulus": str(self.plain_modulus),
        }

    @classmethod
    def from_json(cls, doc: Any, *, where: str) -> HEParameters:
        try:
            params = cls(
                scheme=str(doc["scheme"]),
                poly_modulus_degree=int(doc["poly_modulus_degree"]),
                coeff_modulus=tuple(int(q) for q in doc["coeff_modulus"]),
                plain_modulus=int(doc["plain_modulus"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HEKeyError(f"{where}: malformed 'parameters' ({exc!r})") from exc
        params.validate(where=where)
        return params

    def validate(self, *, where: str) -> None:
        """Refuse anything but BFV with batching at >= 128-bit security."""
        if self.scheme != "bfv":
            raise HEKeyError(f"{where}: scheme {self.scheme!r} is not supported (only 'bfv')")
        if self.security_bits < 128:
            raise HEKeyError(
                f"{where}: log q = {self.log_q} at N = {self.poly_modulus_degree} is below 128-bit security"
            )
        if not self.plain_modulus < min(self.coeff_modulus) // (2 * FRESH_NOISE_BOUND):
            raise HEKeyError(f"{where}: plain modulus leaves no noise margin under the coefficient modulus")

    def describe(self) -> dict[str, Any]:
        """Parameters plus what follows from them, for people and for the params file."""
        return {
            **self.to_json(),
            "coeff_modulus_bits": self.coeff_modulus_bits,
            "plain_modulus_bits": self.plain_modulus.bit_length(),
            "slot_count": self.slot_count,
            "security_bits": self.security_bits,
            "security_standard": SECURITY_STANDARD,
            "max_addends": self.max_addends,
        }


def default_parameters() -> HEParameters:
    """N = 4096, one 58-bit prime, a 44-bit batching plain modulus (SEAL picks the primes, deterministically)."""
    n = 4096
    return HEParameters(
        poly_modulus_degree=n,
        coeff_modulus=tuple(m.value() for m in seal.CoeffModulus.Create(n, [58])),
        plain_modulus=seal.PlainModulus.Batching(n, 44).value(),
    )


class SealRuntime:
    """SEAL objects built from validated parameters: context, evaluator, batch encoder."""

    def __init__(self, params: HEParameters) -> None:
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
        parms.set_poly_modulus_degree(params.poly_modulus_degree)
        parms.set_coeff_modulus([seal.Modulus(q) for q in params.coeff_modulus])
        parms.set_plain_modulus(seal.Modulus(params.plain_modulus))
        self.context = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
        if not self.context.parameters_set():
            raise HEKeyError(f"SEAL rejects the parameters: {self.context.parameters_error_message()}")
        self.evaluator = seal.Evaluator(self.context)
        self.encoder = seal.BatchEncoder(self.context)


@dataclass(frozen=True)
class PublicContext:
    """What the coordinator holds: parameters, study id and key commitment; no key of any kind."""

    study_id: str
    parameters: HEParameters
    key_commitment: str
    created: str
    partners: tuple[tuple[str, bytes], ...] = ()  # (partner id, raw Ed25519 public key), sorted by id

    def document(self) -> dict[str, Any]:
        """The public context as JSON, without its fingerprint (the fingerprint is computed over this)."""
        doc = {
            "format": FORMAT,
            "kind": "public",
            "study_id": self.study_id,
            "created": self.created,
            "parameters": self.parameters.to_json(),
            "key_commitment": self.key_commitment,
        }
        if self.partners:  # absent, not empty, in contexts made before pinning: their fingerprints still hold
            doc["partners"] = {name: base64.b64encode(key).decode("ascii") for name, key in self.partners}
        return doc

    @property
    def partner_keys(self) -> dict[str, bytes]:
        """Partner id -> the raw Ed25519 public key the key ceremony pinned for it."""
        return dict(self.partners)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical (RFC 8785) public context: the study keys' identity."""
        return hashlib.sha256(rfc8785.dumps(self.document())).hexdigest()

    @cached_property
    def seal(self) -> SealRuntime:
        return SealRuntime(self.parameters)

    def to_bytes(self) -> bytes:
        return _dump({**self.document(), "fingerprint": self.fingerprint})


@dataclass(frozen=True)
class SecretContext:
    """What a partner holds: the public context plus the SEAL secret key (never printed, never repr'd)."""

    public: PublicContext
    secret_key: bytes = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint

    @property
    def study_id(self) -> str:
        return self.public.study_id

    @cached_property
    def _key(self) -> Any:
        return seal_bytes().load_into(seal.SecretKey(), self.public.seal.context, self.secret_key)

    @cached_property
    def encryptor(self) -> Any:
        return seal.Encryptor(self.public.seal.context, self._key)

    @cached_property
    def decryptor(self) -> Any:
        return seal.Decryptor(self.public.seal.context, self._key)

    def to_bytes(self) -> bytes:
        doc = {**self.public.document(), "kind": "secret", "fingerprint": self.fingerprint}
        doc["secret_key"] = base64.b64encode(self.secret_key).decode("ascii")
        return _dump(doc)


@dataclass(frozen=True)
class KeyFiles:
    """Where `write_key_files` put the three files of one study."""

    secret: Path
    public: Path
    params: Path


def generate_context(
    study_id: str, *, parameters: HEParameters | None = None, partners: Mapping[str, bytes] | None = None
) -> SecretContext:
    """Fresh keys for one study (a new study must never reuse another's keys), pinning `partners`
    (partner id -> raw 32-byte Ed25519 public key of its node)."""
    if not _STUDY_ID.match(study_id):
        raise HEKeyError(f"study id {study_id!r} must be 1-128 characters of letters, digits, '.', '_' or '-'")
    pinned = _pins(dict(partners or {}), where=f"study {study_id}")
    params = parameters or default_parameters()
    params.validate(where=f"study {study_id}")
    runtime = SealRuntime(params)
    key_bytes = seal_bytes().dump(seal.KeyGenerator(runtime.context).secret_key())
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    public = PublicContext(study_id, params, _commit(key_bytes), created, pinned)
    return SecretContext(public=public, secret_key=key_bytes)


def _pins(partners: dict[str, Any], *, where: str) -> tuple[tuple[str, bytes], ...]:
    """Validated (partner id, raw key) pairs, sorted; `HEKeyError` names the partner that fails."""
    if len(set(partners.values())) != len(partners):
        raise HEKeyError(f"{where}: two partners are pinned to the same key; each partner needs its own")
    for name, key in partners.items():
        if not isinstance(name, str) or not _PARTNER_ID.match(name):
            raise HEKeyError(f"{where}: partner id {name!r} must be 1-128 letters, digits, '.', '_' or '-'")
        if not isinstance(key, bytes) or len(key) != _ED25519_PUBLIC_BYTES:
            raise HEKeyError(f"{where}: the key pinned for {name!r} is not a raw {_ED25519_PUBLIC_BYTES}-byte Ed25519 key")
    return tuple(sorted(partners.items()))


def params_document(public: PublicContext) -> dict[str, Any]:
    """The params file: what the study's keys are and what they guarantee; no key material."""
    return {
        "format": FORMAT,
        "kind": "params",
        "study_id": public.study_id,
        "created": public.created,
        "fingerprint": public.fingerprint,
        "parameters": public.parameters.describe(),
        "encryption": "symmetric (partners hold the secret key); seeded ciphertexts on the wire",
    }


def write_key_files(secret: SecretContext, out_dir: Path, *, overwrite: bool = False) -> KeyFiles:
    """Write the secret context (mode 0600), the public context and the params file into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = KeyFiles(out_dir / SECRET_FILE, out_dir / PUBLIC_FILE, out_dir / PARAMS_FILE)
    if not overwrite:
        for path in (files.secret, files.public, files.params):
            if path.exists():
                raise HEKeyError(f"{path} exists; a study's keys are never overwritten (use a fresh directory)")
    _write(files.secret, secret.to_bytes(), mode=0o600)
    _write(files.public, secret.public.to_bytes(), mode=0o644)
    _write(files.params, _dump(params_document(secret.public)), mode=0o644)
    return files


def read_key_document(path: Path) -> dict[str, Any]:
    """Parse an Accord HE key/params file; name the file in every error."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HEKeyError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HEKeyError(f"{path}: not an Accord HE context file ({_describe_foreign(data)})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HEKeyError(f"{path}: not an Accord HE context file (expected format {FORMAT!r})")
    if doc.get("kind") not in ("secret", "public", "params"):
        raise HEKeyError(f"{path}: unknown kind {doc.get('kind')!r}")
    return doc


def load_public_context(path: Path) -> PublicContext:
    """The coordinator's loader: refuses any file that holds a secret key."""
    doc = read_key_document(path)
    if "secret_key" in doc or doc["kind"] == "secret":
        raise HEKeyError(
            f"{path} holds a secret key: the coordinator must never load one. "
            f"Give it the public context ({PUBLIC_FILE}) and keep the secret context with the partners."
        )
    if doc["kind"] != "public" or set(doc) - {"partners"} != _PUBLIC_FIELDS:
        raise HEKeyError(f"{path}: not a public context (kind {doc['kind']!r}, fields {sorted(doc)})")
    return _public_from(doc, where=str(path))


def load_secret_context(path: Path) -> SecretContext:
    """The partners' loader: requires the secret key and checks it against its commitment."""
    doc = read_key_document(path)
    if "secret_key" not in doc:
        raise HEKeyError(f"{path} holds no secret key; partners need the secret context ({SECRET_FILE})")
    public = _public_from({k: v for k, v in doc.items() if k != "secret_key"}, where=str(path))
    try:
        key_bytes = base64.b64decode(doc["secret_key"], validate=True)
    except (TypeError, ValueError) as exc:
        raise HEKeyError(f"{path}: the secret key is not valid base64") from exc
    if _commit(key_bytes) != public.key_commitment:
        raise HEKeyError(f"{path}: the secret key does not match the file's key commitment (tampered file)")
    secret = SecretContext(public=public, secret_key=key_bytes)
    try:
        secret.decryptor  # noqa: B018 - load the key now, so a bad key fails here and not mid-round
    except (RuntimeError, ValueError) as exc:
        raise HEKeyError(f"{path}: SEAL rejects the secret key ({exc})") from exc
    return secret


def _public_from(doc: dict[str, Any], *, where: str) -> PublicContext:
    try:
        pinned = doc.get("partners", {})
        if not isinstance(pinned, dict) or not all(isinstance(v, str) for v in pinned.values()):
            raise HEKeyError(f"{where}: 'partners' must map partner ids to base64 Ed25519 public keys")
        public = PublicContext(
            study_id=str(doc["study_id"]),
            parameters=HEParameters.from_json(doc["parameters"], where=where),
            key_commitment=str(doc["key_commitment"]),
            created=str(doc["created"]),
            partners=_pins({name: base64.b64decode(key, validate=True) for name, key in pinned.items()}, where=where),
        )
        claimed = str(doc["fingerprint"])
    except KeyError as exc:
        raise HEKeyError(f"{where}: missing field {exc.args[0]!r}") from exc
    except ValueError as exc:  # binascii.Error: a pinned key that is not base64
        raise HEKeyError(f"{where}: a pinned partner key is not valid base64 ({exc})") from exc
    if public.fingerprint != claimed:
        raise HEKeyError(f"{where}: fingerprint {claimed[:16]}… does not match the file's contents (tampered)")
    return public


def _commit(key_bytes: bytes) -> str:
    return hashlib.sha256(_KEY_COMMITMENT_TAG + key_bytes).hexdigest()


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _write(path: Path, data: bytes, *, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)


def _describe_foreign(data: bytes) -> str:
    """Say what a non-JSON file is when it is a TenSEAL context, so a refusal is precise."""
    try:
        import tenseal as ts

        ctx = ts.context_from(data)
    except Exception:  # noqa: BLE001 - anything TenSEAL cannot read is just "not ours"
        return "expected the JSON written by `python -m crypto.keys init`"
    holds = "holds a secret key" if ctx.has_secret_key() else "holds no secret key"
    return f"it is a raw TenSEAL context that {holds}; use the files written by `python -m crypto.keys init`"
