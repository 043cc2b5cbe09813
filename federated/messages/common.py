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
from pydantic import BaseModel, Field, ValidationError, model_validator

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


class DistributedNoise(Strict):
    """Distributed noise: the partner added a share of a release's noise inside an encrypted sum."""

    honest_required: int = Field(ge=2, description="t: the release's ε holds while at least t contributors are honest")
    cohort: int = Field(ge=2, description="n: the contributors to the encrypted sum (each adds a share)")
    central_sigma: float = Field(gt=0, description="σ of one central release (the share is σ/√t)")
    share_epsilon: float = Field(gt=0, description="the ε this partner's own share gives, whatever the others do")


class NoiseInfo(Strict):
    """The Gaussian noise a partner added to its statistics (see federated.evaluation.dp_release).

    `sigma` is the noise it really added (per unit of sensitivity): the pooled sums' variance is the sum of
    the partners' σ². `epsilon` is the release's ε; with `distributed` set, that ε holds while at least
    `distributed.honest_required` contributors are honest, and `distributed.share_epsilon` (≥ ε) holds alone.
    """

    epsilon: float = Field(gt=0)
    delta: float = Field(gt=0, lt=1)
    l2_sensitivity: float = Field(gt=0)
    sigma: float = Field(gt=0)
    distributed: DistributedNoise | None = None

    @model_validator(mode="after")
    def _share_is_honest(self) -> NoiseInfo:
        share = self.distributed
        if share is not None and (share.share_epsilon < self.epsilon or share.cohort < share.honest_required
                                  or self.sigma > share.central_sigma):
            raise ValueError("distributed noise: the share's ε is at least the release's, the cohort at least t, and the "
                             "share's σ at most the central σ")
        return self


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
