"""The study's cohort: waiting for it before the first round, the nodes that join after the study started
(recorded in the trail and results, shown by the CLI), and the expected partners that never answered."""

from __future__ import annotations

import time

from flwr.serverapp import Grid

from federated.audit import AuditTrail
from federated.errors import CohortTooSmallError
from federated.reporting.results import LateJoiner, StudyResults
from federated.study import Study

_COHORT_POLL_S = 0.5


def wait_for_cohort(grid: Grid, study: Study, trail: AuditTrail, *, required: int | None = None) -> set[int]:
    """Wait for `min_cohort` nodes (within cohort_timeout_s), then for the expected partners (within
    expected_wait_s, default cohort_timeout_s, from the start); the connected node ids.

    `required`: nodes that must all be connected before the first round (an encrypted study's announced
    cohort: a round that starts without one of them can only fail)."""
    if required is not None and required > study.min_cohort:
        study = study.model_copy(update={"min_cohort": required})
    started = time.monotonic()
    deadline = started + study.cohort_timeout_s
    expected_deadline = started + (study.cohort_timeout_s if study.expected_wait_s is None else study.expected_wait_s)
    while True:
        nodes = set(grid.get_node_ids())
        now = time.monotonic()
        if len(nodes) >= study.expected_count or (len(nodes) >= study.min_cohort and now > expected_deadline):
            break
        if len(nodes) < study.min_cohort and now > deadline:
            raise CohortTooSmallError(
                f"only {len(nodes)} of the minimum cohort of {study.min_cohort} partners connected "
                f"within cohort_timeout_s={study.cohort_timeout_s:g}"
            )
        time.sleep(_COHORT_POLL_S)
    expected = {"expected": study.expected_count} if study.expected_partners is not None else {}
    trail.append("cohort_ready", study=study.id, nodes=len(nodes), **expected)
    return nodes


def note_late_joiners(grid: Grid, study: Study, trail: AuditTrail, known: set[int], *,
                      before_round: int | None) -> list[LateJoiner]:
    """Record each node that connected after the study started (it missed the rounds before `before_round`;
    None: it joined after the last round and gets only the closing seal); `known` grows by them."""
    current = set(grid.get_node_ids())
    joined = []
    for node in sorted(current - known):
        trail.append("partner_joined_late", study=study.id, node=str(node), before_round=before_round)
        joined.append(LateJoiner(node=str(node), before_round=before_round))
    known |= current
    return joined


def expected_but_missing(study: Study, results: StudyResults) -> list[str]:
    """Partners the study expected by name that never contributed to any round."""
    if not isinstance(study.expected_partners, list):
        return []
    rounds = [*results.rounds, *([results.final_evaluation] if results.final_evaluation else [])]
    answered = {name for summary in rounds for name in summary.contributors}
    return [name for name in study.expected_partners if name not in answered]
