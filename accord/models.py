"""The one strict pydantic base every Accord boundary model derives from: configs, contracts,
manifests and messages refuse unknown fields and are immutable once validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown fields refused, immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StrictWithArrays(BaseModel):
    """A parsed message that holds numpy arrays or ciphertext objects beside its validated parts."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
