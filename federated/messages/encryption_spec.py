"""What an encrypted task tells a partner about the study's keys and the bundle it must send.

It rides in evaluation and training task specs (`federated.messages.evaluation.TaskSpec`,
`federated.messages.training.TrainSpec`), so the coordinator's signature over the task covers it.
Both sides derive the bundle layout from the task and these numbers (`federated.messages.he_codec`), and
the partner refuses a task whose `layout_sha256` differs from the layout it derives itself. `cohort`
names the partners the round's bundles are bound to; the signature over the task covers it, so a
partner can show which cohort it was told.

This module must stay import-light (no TenSEAL): every ClientApp process parses task specs.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from accord.models import Strict
from federated.errors import EncryptionMessageError

ENCRYPTION_CLAUSE = EncryptionMessageError.clause  # the refusal clause of every HE check
DECRYPT_MESSAGE_TYPE = "query.decrypt"  # here, not in `encryption`, so that naming it loads no TenSEAL


class EncryptionSpec(Strict):
    """The study key and the bounds a round's encrypted bundles are laid out for."""

    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$", description="the study key's fingerprint (public context)")
    key_study: str = Field(description="the study id the keys were made for (python -m crypto.keys init --study)")
    partners: int = Field(ge=1, description="the announced cohort's size: no sum of this round has more addends")
    max_records_per_partner: int = Field(ge=1, description="one partner's records, at most (sets the bounds)")
    layout_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="digest of the bundle layout both sides derive")
    cohort: list[str] = Field(
        default_factory=list,
        description="the announced cohort: the partner ids the task went to, sorted; only the sum of exactly their "
        "bundles decrypts (crypto.he_aggregation.cohort_blinding)",
    )

    @field_validator("cohort")
    @classmethod
    def _sorted_and_distinct(cls, value: list[str]) -> list[str]:
        if value != sorted(set(value)):
            raise ValueError("the cohort must list distinct partner ids in sorted order")
        return value
