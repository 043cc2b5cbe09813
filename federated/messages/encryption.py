"""Messages of encrypted aggregation: a partner's signed bundle, the decryption task and its reply.

- A partner's reply carries its bundle (`crypto.he_aggregation.EncryptedBundle` bytes) and a
  `Contribution`: its Ed25519 node key's signature over (study, round, key fingerprint, partner,
  bundle SHA-256). It carries no key: it is checked against the key the study's key ceremony pinned
  for that partner (`crypto.he_keys.PublicContext.partner_keys`), never against one the message
  brings. The audit seal on a reply signs a checkpoint of the partner's trail, not the reply's bytes,
  so it cannot show a third party which bundle a partner sent; this signature can.
- The decryption task (`query.decrypt`) carries the aggregate and the contributions' signed digests,
  nothing else (a partner refuses one that carries more: a key holder must never be shown another
  partner's bundle). The coordinator signs the task like any other (its spec names every bundle by SHA-256).
- The reply carries the decrypted arrays (int64 counts and limbs, float64 fixed-point values).

Nothing here decides whether to trust a message; `federated.client.encryption` does, and this
module must never unpickle (arrays travel as `np.save(allow_pickle=False)`, bundles as bytes).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import rfc8785
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from pydantic import Field, ValidationError

from accord.config_files import describe_validation_error
from accord.errors import AccordError
from accord.models import Strict, StrictWithArrays
from crypto import (
    CryptoError,
    Identity,
    public_key_from_bytes,
    verify,
)
from crypto.he_aggregation import EncryptedBundle
from federated.errors import EncryptionMessageError, MessageError
from federated.messages.audit_exchange import AUDIT_RECORD
from federated.messages.common import (
    MAX_SPEC_BYTES,
    PartnerInfo,
    SignedSpec,
    SpecT,
    payload_sha256,
)
from federated.messages.encryption_spec import EncryptionSpec

CONTRIBUTION_CONTEXT = b"accord/he-contribution/v1\n"  # domain separation: the node key also signs notes
ENCRYPTED_RECORD = "encrypted"
MAX_BUNDLE_BYTES = 512 * 1024 * 1024


class EncryptedTaskSpec(Protocol):
    """What reading a bundle needs of the task it answers (an evaluation or a train spec)."""

    @property
    def study(self) -> str: ...
    @property
    def round(self) -> int: ...
    @property
    def encryption(self) -> EncryptionSpec | None: ...


class Contribution(Strict):
    """One partner's signed statement: "for this round I sent the bundle with this SHA-256"."""

    partner: str
    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(description="base64 Ed25519 signature over signed_bytes()")

    @staticmethod
    def signed_bytes(*, study: str, round: int, fingerprint: str, partner: str, bundle_sha256: str) -> bytes:
        statement: dict[str, str | int] = {"study": study, "round": round, "fingerprint": fingerprint,
                                           "partner": partner, "bundle_sha256": bundle_sha256}
        return CONTRIBUTION_CONTEXT + rfc8785.dumps(statement)

    def verify(self, *, pinned: Mapping[str, bytes], study: str, round: int, fingerprint: str) -> None:
        """Raise `EncryptionMessageError` unless the key pinned for this partner signed this bundle for this round."""
        raw = pinned.get(self.partner)
        if raw is None:
            raise EncryptionMessageError(
                f"the contribution of {self.partner!r} names a partner the study's key ceremony did not pin"
            )
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except binascii.Error:
            signature = b""
        message = self.signed_bytes(study=study, round=round, fingerprint=fingerprint, partner=self.partner,
                                    bundle_sha256=self.bundle_sha256)
        try:
            verify(public_key_from_bytes(raw), message, signature)
        except CryptoError:
            raise EncryptionMessageError(
                f"the contribution of {self.partner!r} to study {study} round {round} is not signed by the key "
                f"pinned for it"
            ) from None


def sign_contribution(identity: Identity, *, partner: str, study: str, round: int, bundle: EncryptedBundle) -> Contribution:
    message = Contribution.signed_bytes(study=study, round=round, fingerprint=bundle.fingerprint, partner=partner,
                                        bundle_sha256=bundle.digest)
    return Contribution(partner=partner, bundle_sha256=bundle.digest,
                        signature=base64.b64encode(identity.sign(message)).decode())


def attach_bundle(content: RecordDict, bundle: EncryptedBundle, contribution: Contribution) -> RecordDict:
    """Add a partner's bundle and its signed contribution to a reply (in place)."""
    content[ENCRYPTED_RECORD] = ConfigRecord({"bundle": bundle.to_bytes(), "contribution": contribution.model_dump_json()})
    return content


def read_bundle(
    content: RecordDict, *, partner: str, study: str, round: int, fingerprint: str, layout_sha256: str
) -> tuple[EncryptedBundle, Contribution]:
    """A partner's bundle from its reply, checked against the task; `EncryptionMessageError` names what fails.

    The contribution's signature is checked where the pinned keys are known (`verify`): by the
    coordinator before it sums, and by the decrypting partner before it decrypts."""
    record = content.config_records.get(ENCRYPTED_RECORD)
    if record is None:
        raise EncryptionMessageError(f"the reply of {partner!r} carries no encrypted bundle, the study requires one")
    blob, text = record.get("bundle"), record.get("contribution")
    if not isinstance(blob, bytes) or len(blob) > MAX_BUNDLE_BYTES or not isinstance(text, str):
        raise EncryptionMessageError(f"the encrypted record of {partner!r} is malformed")
    contribution = _validate(Contribution, text, f"the contribution of {partner!r}")
    try:
        bundle = EncryptedBundle.from_bytes(blob, source=f"the bundle of {partner!r}")
    except AccordError as exc:
        raise EncryptionMessageError(str(exc)) from None
    problem = None
    if bundle.fingerprint != fingerprint:
        problem = f"is encrypted under key {bundle.fingerprint[:16]}… (study {bundle.study_id!r}), the study's key is {fingerprint[:16]}…"
    elif bundle.layout.digest != layout_sha256:
        problem = f"has layout {bundle.layout.digest[:16]}…, the task's is {layout_sha256[:16]}…"
    elif bundle.addends != 1:
        problem = f"claims {bundle.addends} contributions, a partner sends one"
    elif contribution.partner != partner or contribution.bundle_sha256 != bundle.digest:
        problem = "is not the bundle its signed contribution names"
    if problem:
        raise EncryptionMessageError(f"the bundle of {partner!r} {problem}")
    return bundle, contribution


@dataclass(frozen=True)
class SignedBundle:
    """A partner's bundle as the coordinator received it, with the partner's signed contribution."""

    bundle: EncryptedBundle
    contribution: Contribution

    @classmethod
    def read(cls, content: RecordDict, partner: str, spec: EncryptedTaskSpec) -> SignedBundle:
        encryption = spec.encryption
        if encryption is None:
            raise EncryptionMessageError(f"study {spec.study} round {spec.round} is not encrypted")
        bundle, contribution = read_bundle(
            content, partner=partner, study=spec.study, round=spec.round, fingerprint=encryption.fingerprint,
            layout_sha256=encryption.layout_sha256,
        )
        return cls(bundle, contribution)


class DecryptSpec(SignedSpec):
    """What the coordinator asks a decrypting partner to decrypt, and on whose behalf."""

    study: str
    round: int = Field(ge=1)
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    layout_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    min_cohort: int = Field(ge=1)
    aggregate_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    contributions: list[Contribution] = Field(min_length=1)


class DecryptTask(StrictWithArrays):
    spec: DecryptSpec
    aggregate: EncryptedBundle


def build_decrypt_task(spec: DecryptSpec, aggregate: EncryptedBundle) -> RecordDict:
    """The decryption task: the aggregate and the signed contributions' digests, never a partner's own bundle."""
    return RecordDict({
        "task": ConfigRecord({"spec": spec.canonical().decode("utf-8")}),
        "aggregate": ConfigRecord({"bundle": aggregate.to_bytes()}),
    })


def parse_decrypt_task(content: RecordDict) -> DecryptTask:
    """Validate a decryption task: the aggregate must be the one its spec names, and nothing else may ride along."""
    try:
        text = content.config_records["task"]["spec"]
        blob = content.config_records["aggregate"]["bundle"]
    except KeyError as exc:
        raise MessageError(f"decryption task lacks {exc.args[0]!r}") from None
    if not isinstance(text, str) or len(text) > MAX_SPEC_BYTES:
        raise MessageError("decryption task spec must be a JSON string of at most 1 MiB")
    spec = _validate(DecryptSpec, text, "decryption task spec")
    aggregate = _bundle(blob, "the aggregate")
    if aggregate.digest != spec.aggregate_sha256:
        raise MessageError(f"the aggregate hashes to {aggregate.digest}, the task declares {spec.aggregate_sha256}")
    extra = sorted(set(content.config_records) - {"task", "aggregate", AUDIT_RECORD}) + sorted(content.array_records)
    if extra:  # e.g. other partners' bundles, which a key holder must never be shown
        raise MessageError(f"a decryption task carries only its spec, the aggregate and its audit record; it also carries {extra}")
    return DecryptTask(spec=spec, aggregate=aggregate)


class DecryptReply(StrictWithArrays):
    info: PartnerInfo
    arrays: dict[str, np.ndarray] = Field(default_factory=dict)

    def payload_sha256(self) -> str:
        return payload_sha256(self.info, self.arrays)



def build_decrypt_reply(info: PartnerInfo, arrays: dict[str, np.ndarray]) -> RecordDict:
    content = RecordDict({"info": ConfigRecord({"json": info.model_dump_json()})})
    if arrays:
        content["aggregate"] = ArrayRecord({k: Array.from_numpy_ndarray(np.ascontiguousarray(v)) for k, v in arrays.items()})
    return content


def parse_decrypt_reply(content: RecordDict) -> DecryptReply:
    try:
        info = _validate(PartnerInfo, content.config_records["info"]["json"], "decryption reply info")
    except KeyError:
        raise MessageError("decryption reply lacks its 'info' record") from None
    arrays = {}
    if info.status == "ok":
        record = content.array_records.get("aggregate")
        if record is None:
            raise MessageError(f"the decryption reply of {info.partner!r} carries no aggregate")
        arrays = {name: array.numpy() for name, array in record.items()}
    return DecryptReply(info=info, arrays=arrays)


def _bundle(data: object, what: str) -> EncryptedBundle:
    if not isinstance(data, bytes) or len(data) > MAX_BUNDLE_BYTES:
        raise MessageError(f"{what} must be bytes of at most {MAX_BUNDLE_BYTES}")
    try:
        return EncryptedBundle.from_bytes(data, source=what)
    except AccordError as exc:
        raise MessageError(str(exc)) from None


def _validate(model: type[SpecT], text: object, what: str) -> SpecT:
    if not isinstance(text, str):
        raise MessageError(f"{what} must be a JSON string")
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise MessageError(describe_validation_error(what, exc)) from None
