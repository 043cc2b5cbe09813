"""Nodes that join a study after it started: recorded in the trail and results, shown by the CLI."""

from __future__ import annotations

from typing import Any

from flwr.serverapp import Grid

from federated.audit import AuditTrail
from federated.study import Study


def note_late_joiners(grid: Grid, study: Study, trail: AuditTrail, known: set[int], results: dict[str, Any],
                      *, before_round: int | None) -> None:
    """Record each node that connected after the study started (it missed the rounds before `before_round`;
    None: it joined after the last round and gets only the closing seal)."""
    current = set(grid.get_node_ids())
    for node in sorted(current - known):
        trail.append("partner_joined_late", study=study.id, node=str(node), before_round=before_round)
        results.setdefault("late_partners", []).append({"node": str(node), "before_round": before_round})
    known |= current
