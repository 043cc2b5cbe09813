"""What every message family shares: the strict model base, the canonical hash of a signed spec,
one spec parser, the size limits, the reply header, and the one way a reply's payload is hashed.

Hashing rules, one each (both sides must compute them alike, whatever their library versions):
- a spec the coordinator signs is hashed as SHA-256 of its RFC 8785 canonical JSON (`SignedSpec`);
- a reply's payload is hashed with `accord.hashing.arrays_sha256` (the documented length-prefixed
  framing) over the reply header's canonical JSON and the reply's arrays (`payload_sha256`).
Trail entries record these hashes; the trail's schema-evolution rule (`federated.audit.events`)
applies: packs written under an earlier rule keep verifying, because verification compares the
hashes both sides recorded and never recomputes them from message bytes.

This module must stay import-light (no TenSEAL, no torch): every ClientApp process parses tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

import numpy as np
import rfc8785
from pydantic import BaseModel, Field, ValidationError

from accord.config_files import describe_validation_error
from accord.hashing import arrays_sha256, sha256_bytes
from accord.models import Strict
from federated.errors import MessageError

MAX_MODEL_BYTES = 64 * 1024 * 1024
MAX_SPEC_BYTES = 1024 * 1024


class SignedSpec(Strict):
    """A task's JSON part: what the coordinator signs, so both sides must hash it byte for byte alike."""

    def canonical(self) -> bytes:
        """RFC 8785 canonical JSON: the bytes that travel and the bytes that are hashed."""
        return rfc8785.dumps(self.model_dump(mode="json"))

    def sha256(self) -> str:
        return sha256_bytes(self.canonical())


SpecT = TypeVar("SpecT", bound=BaseModel)


def parse_spec(text: object, model: type[SpecT], *, what: str) -> SpecT:
    """A task's JSON spec validated as `model`; `MessageError` names what is wrong."""
    if not isinstance(text, str) or len(text) > MAX_SPEC_BYTES:
        raise MessageError(f"{what} must be a JSON string of at most 1 MiB")
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise MessageError(describe_validation_error(what, exc)) from None


class NoiseInfo(Strict):
    """The Gaussian noise a partner added to its statistics (see federated.evaluation.dp_release)."""

    epsilon: float = Field(gt=0)
    delta: float = Field(gt=0, lt=1)
    l2_sensitivity: float = Field(gt=0)
    sigma: float = Field(gt=0)


class PartnerInfo(Strict):
    """The header of every reply: who answered and on which data (hashes and counts only)."""

    partner: str
    status: Literal["ok", "refused"]
    clause: str = ""
    reason: str = ""
    release_per_partner: bool = False
    data_sha256: str = ""
    manifest_sha256: str = ""
    contract_sha256: str = ""  # the data contract the partner applied, if it has one
    count: int = 0
    noise: NoiseInfo | None = None  # set when the statistics carry DP noise
    suppressed_cells: int = Field(default=0, ge=0)  # without DP: small cells zeroed (how many, never which)


def payload_sha256(info: PartnerInfo, arrays: Mapping[str, np.ndarray] | None = None, **digests: str) -> str:
    """The hash both trails record for a reply: its header, any digests it names (e.g. an encrypted
    bundle's), and its arrays, framed by `arrays_sha256` (header and digests as one canonical JSON blob)."""
    header = rfc8785.dumps({"info": info.model_dump(mode="json"), **digests})
    framed: dict[str, np.ndarray] = {"header": np.frombuffer(header, dtype=np.uint8)}
    framed.update({f"array/{name}": value for name, value in (arrays or {}).items()})
    return arrays_sha256(framed)
