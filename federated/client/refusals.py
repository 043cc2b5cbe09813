"""What a refusal may tell the coordinator: its clause, and a reason that carries nothing data-dependent.

A refusal travels to the coordinator in plaintext and is written to both trails, so into evidence
packs. An exception raised while the partner's data is in use can name values or shapes of that data
(onnxruntime names the shape a Reshape asked for; a NaN check tells where one is), so reasons split:

- Decided before the data is read, from the task, the node's configuration and its state only, the
  refusal's own text is sent: "message" (malformed task), "audit" (signatures, checkpoints), "replay",
  "study" (`federated.client.study_state`), "encryption" raised while loading the study key, and any
  refusal of a task that uses no data (decryption, seal). Such a reason says nothing about the data.
- Once the data is in use, only one fixed sentence per clause (`VOCABULARY`; an unlisted clause gets
  `GENERIC`), except the contract clauses in `DATA_FREE_CLAUSES`, which compare the study's
  declarations with the contract and keep their text. "internal" (a bug) is always the fixed sentence.

The full detail goes to the node's local log (`NodeLog`: TRAIL_STEM.node.log beside the trail, one
JSON line per refusal), which no reply carries and no evidence pack includes.

Data-dependent failures: a refusal once the data is in use is a deterministic answer about the data
(at least one bit), so `data_dependent` names the ones that count: everything but the data-free contract
clauses and the node's own state ("data": the file does not match its manifest; "contract": the
contract does not govern the file), which no task can change. The pipeline counts each against the
study (`study_state.MAX_FAILED_TASKS_PER_STUDY`, then the node refuses the rest of the study) and, when
the failure came from running the task on the data, charges it to the ledger as the release it
replaced (`federated.client.pipeline`). This module must never let exception text that was raised
while data was in use reach a reply or a trail.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_DETAIL = "; the detail stays in the partner's local log"
VOCABULARY: dict[str, str] = {
    "data": "this partner's data could not be loaded as its manifest describes",
    "contract": "this partner's data contract does not govern its data or is not in force",
    "model": "a candidate model could not be run on this partner's data",
    "training": "local training could not be run on this partner's data",
    "privacy": "this partner's privacy budget or ε caps do not allow this release",
    "encryption": "this partner's result could not be encrypted as the task asks",
    "task": "the task could not be run on this partner's data",
    "internal": "the task failed on this partner's node",
}
GENERIC = "the task breaks this clause of the partner's data contract"
# Contract clauses that compare only what the task declares (and this node's own count of tasks and models
# in the study) with what the contract allows. Not here, so fixed and counted: the ε of DP-SGD and the
# disclosure clauses that depend on the record count (`min_cell_count`, `min_records_per_score_bin`).
DATA_FREE_CLAUSES = frozenset({
    "expires", "allowed_purposes", "allowed_coordinators", "jurisdictions", "legal_bases", "licence",
    "retention_days", "min_cohort", "protections.require_dp", "protections.require_encryption",
    "disclosure.max_models_per_task", "disclosure.max_models_per_study", "disclosure.max_tasks_per_study",
    "disclosure.max_subgroup_levels", "monitoring.max_periods", "monitoring.max_epsilon_per_period",
    "monitoring.allow_snapshots", "monitoring.snapshot",
})
_NODE_STATE_CLAUSES = frozenset({"data", "contract"})


def fixed_reason(clause: str) -> str:
    """The one sentence a refusal under `clause` may carry once data is in use."""
    return VOCABULARY.get(clause, GENERIC) + _DETAIL


def public_reason(clause: str, detail: str, *, data_in_use: bool) -> str:
    """What the coordinator and the trail get for a refusal whose full text is `detail`."""
    if clause == "internal" or (data_in_use and clause not in DATA_FREE_CLAUSES):
        return fixed_reason(clause)
    return detail


def data_dependent(clause: str, *, data_in_use: bool) -> bool:
    """Whether a refusal under `clause` answers something about the data (counted against the study)."""
    return data_in_use and clause not in DATA_FREE_CLAUSES and clause not in _NODE_STATE_CLAUSES


@dataclass(frozen=True)
class NodeLog:
    """The node's local log of refusals with their full detail; it never leaves the node."""

    path: Path

    @classmethod
    def beside(cls, trail: Path) -> NodeLog:
        return cls(trail.with_name(f"{trail.stem}.node.log"))

    def write(self, **record: Any) -> None:
        """Append one JSON line and fsync it (readable by the node's user only)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
