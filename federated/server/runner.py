"""One loop for every study kind: the `StudyRunner` finishes each round the same way.

Each kind configures, sends and aggregates its own rounds (`rounds.evaluation_round`, the training rounds of
`training.run_training`, a monitoring study's periods); the runner gives them the round numbers (noting the
nodes that joined late before each round after the first) and finishes every round: the round's summary goes
into the results, `round_completed` into the trail, and a round with fewer contributors than the study's
minimum cohort releases no metrics and ends the study (`CohortTooSmallError`). When the study ends it builds
the typed results document (`federated.reporting.results.StudyResults`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from accord.wording import plural
from federated.errors import CohortTooSmallError
from federated.reporting.privacy_report import reported_privacy
from federated.reporting.results import LateJoiner, LineageEntry, ModelEntry, RoundSummary, StudyResults
from federated.server.cohort import expected_but_missing, note_late_joiners, wait_for_cohort
from federated.server.context import RoundContext
from federated.server.pooling import round_metrics
from federated.study import ResolvedModel, Study


class StudyRunner:
    """A study's rounds as they run, and the results they add up to."""

    def __init__(self, context: RoundContext, models: list[ResolvedModel], *, run_id: int) -> None:
        self.context = context
        self.models = models
        self.run_id = run_id
        self.cohort: set[int] | None = None  # the nodes connected when the study started (`wait_for_cohort`)
        self.rounds: list[RoundSummary] = []
        self.final_evaluation: RoundSummary | None = None
        self.lineage: list[LineageEntry] | None = None  # a training study's global models
        self.late_partners: list[LateJoiner] = []
        self.monitoring: dict[str, Any] | None = None  # a monitoring study's section (`federated.server.monitoring`)

    @property
    def study(self) -> Study:
        return self.context.study

    def wait_for_cohort(self) -> set[int]:
        """Wait for the study's cohort (an encrypted study's whole announced cohort); the nodes connected."""
        encryption = self.context.encryption
        self.cohort = wait_for_cohort(self.context.grid, self.study, self.context.trail,
                                      required=len(encryption.cohort) if encryption is not None else None)
        return self.cohort

    def note_late_joiners(self, *, before_round: int | None) -> None:
        """Record the nodes that joined since the study started (nothing before `wait_for_cohort`)."""
        if self.cohort is not None:
            self.late_partners += note_late_joiners(self.context.grid, self.study, self.context.trail, self.cohort,
                                                    before_round=before_round)

    def round_numbers(self) -> Iterator[int]:
        """The study's round numbers, noting late joiners before each round after the first."""
        for round_number in range(1, self.study.rounds + 1):
            if round_number > 1:
                self.note_late_joiners(before_round=round_number)
            yield round_number

    def finish_round(self, summary: RoundSummary, *, final: bool = False, counted: str = "contributed",
                     released: bool | None = None) -> RoundSummary:
        """Record a round (a training study's final evaluation with `final`) and check its cohort.

        `released` (default: at least the minimum cohort contributed) False: the round's metrics are withheld,
        `round_completed` carries none, and `CohortTooSmallError` ends the study (`counted` says what the
        contributors did, in its message). Returns the summary as recorded.
        """
        study = self.study
        count = len(summary.contributors)
        if released is None:
            released = count >= study.min_cohort
        if not released:
            summary = summary.withheld()
        if final:
            self.final_evaluation = summary
        else:
            self.rounds.append(summary)
        details: dict[str, Any] = {"rejected": len(summary.rejected)} if summary.rejected is not None else {}
        if final:
            details["final_evaluation"] = True
        if released and summary.pooled:
            details["pooled"] = round_metrics(summary.pooled)
        self.context.trail.append(
            "round_completed", study=study.id, round=summary.round, contributors=summary.contributors,
            refused=len(summary.refused), missing=len(summary.missing), duration_s=round(summary.duration_s, 3),
            **details,
        )
        if not released:
            if final:
                raise CohortTooSmallError(
                    f"final evaluation: only {plural(count, 'partner')} answered, below the minimum cohort of {study.min_cohort}"
                )
            raise CohortTooSmallError(
                f"round {summary.round}: only {plural(count, 'partner')} {counted} "
                f"({', '.join(summary.contributors) or 'none'}), below the minimum cohort of {study.min_cohort}"
            )
        return summary

    def results(self, *, status: str, message: str = "") -> StudyResults:
        """The results document: every round so far, the study's privacy report, and `status`."""
        study, context = self.study, self.context
        fields: dict[str, Any] = {
            "study": study.id, "purpose": study.purpose, "study_sha256": context.study_sha256,
            "flower_run": str(self.run_id), "status": status, "message": message, "min_cohort": study.min_cohort,
            "models": [ModelEntry(name=m.name, sha256=m.sha256, path=str(m.path)) for m in self.models],
            "rounds": self.rounds, "trail": str(context.trail.path),
        }
        if study.evaluation.task == "regression":  # written only then: classification results read as before
            fields["task"] = "regression"
        if context.encryption is not None:
            fields["encryption"] = context.encryption.describe()
        if self.lineage is not None:
            fields["lineage"] = self.lineage
        if self.final_evaluation is not None:
            fields["final_evaluation"] = self.final_evaluation
        if self.late_partners:
            fields["late_partners"] = self.late_partners
        if self.monitoring is not None:
            fields["monitoring"] = self.monitoring
        draft = StudyResults.parse(fields)
        if missing := expected_but_missing(study, draft):
            fields["expected_partners_missing"] = missing
        fields["privacy"] = reported_privacy(draft.document())
        return StudyResults.parse(fields)
