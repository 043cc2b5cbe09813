"""What every round of one study runs with: made once by the ServerApp's main, passed down explicitly.

A `RoundContext` is a `Channel` (grid, trail, the coordinator's audit) with the study it serves: the study
itself, the hash the CLI submitted it under, its encrypted aggregation (None without encryption) and the
timeouts. Round functions (`rounds.run_round`, `training.run_training`, `app.seal_study`) and the encrypted
aggregation take it as an argument; nothing is registered in module state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from federated.server.collect import Channel
from federated.study import Study

if TYPE_CHECKING:
    from federated.server.encryption import EncryptedAggregation

SEAL_TIMEOUT_S = 60.0  # a seal asks for no work: it never waits a whole round timeout past this


@dataclass(frozen=True)
class RoundContext(Channel):
    """A study's rounds: the channel to its nodes and the study they run."""

    study: Study
    study_sha256: str
    encryption: EncryptedAggregation | None = None

    @property
    def round_timeout_s(self) -> float:
        return self.study.round_timeout_s

    @property
    def seal_timeout_s(self) -> float:
        return min(self.study.round_timeout_s, SEAL_TIMEOUT_S)

    def where(self, round_number: int | None) -> dict[str, Any]:
        """The study and round every trail entry of a round carries."""
        return {"study": self.study.id, "round": round_number}
