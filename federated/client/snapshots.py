"""Monitoring periods on the node: which data a period reads, and how many periods the node has served.

A monitoring study on a snapshot schedule asks, in period p, for the partner's snapshot number p: a
later file of the same dataset that the partner declared in its data manifest (`[[snapshots]]`) with
its own SHA-256, checked as the file is read. A period whose snapshot is not declared yet is refused
(clause "monitoring.snapshot"); the coordinator stops and resumes once it is. Its contract must allow
snapshots (`[monitoring] allow_snapshots`). The node counts the study's monitoring tasks itself (its
study state), so a coordinator cannot reset the contract's `max_periods` by renumbering periods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from federated.client.data import DataManifest
from federated.client.study_state import StudyState
from federated.errors import RefusalError
from federated.messages.evaluation import MESSAGE_TYPE


def snapshot_source(spec: Any, data: Path, manifest_path: Path, manifest: DataManifest) -> tuple[Path, DataManifest]:
    """The file a task reads and the manifest to check it against: the node's data file, or for a
    monitoring period on snapshots the declared snapshot (its path relative to the manifest, its own hash)."""
    monitoring = getattr(spec, "monitoring", None)
    if monitoring is None or monitoring.snapshot is None:
        return data, manifest
    for snapshot in manifest.snapshots:
        if snapshot.number == monitoring.snapshot:
            path = snapshot.path if snapshot.path.is_absolute() else Path(manifest_path).parent / snapshot.path
            return path, manifest.model_copy(update={"sha256": snapshot.sha256})
    raise RefusalError("monitoring.snapshot", f"no data snapshot number {monitoring.snapshot} is declared in this "
                       f"partner's manifest yet (declared: {sorted(s.number for s in manifest.snapshots)})")


def monitoring_periods(state: StudyState, study: str, spec: Any) -> int | None:
    """How many monitoring periods of `study` this node admitted, the current one included (None: not a monitoring task)."""
    if getattr(spec, "monitoring", None) is None:
        return None
    return sum(1 for admission in state.admitted(study) if admission.kind == MESSAGE_TYPE)
