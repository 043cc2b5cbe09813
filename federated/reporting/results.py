"""`results.json` as typed models: what the coordinator writes when a study ends, and what the report, the
evidence pack, the verifier, the coordinator's CLI and the dashboard read back.

`StudyResults` is the document; `RoundSummary` one round (every round of an evaluation or training study,
and a training study's final evaluation). The coordinator builds the rounds as models while the study runs
(`federated.server.runner`) and the document is validated again when written (`write_outputs`).

Schema evolution, as the audit trail's: never remove or repurpose a field; a new field is optional (a default,
or None), so every results.json an earlier version wrote still loads. A field is written only when its writer
set it (`document()` leaves unset fields out): an evaluation round has no `rejected`, a study without
encryption no `encryption`, exactly as before the models existed.

Sections whose shape belongs to the module that computes them, and that grow as those modules do, are typed
loosely as JSON-valued mappings (`JSONMap`): the pooled and per-partner metrics (classification or
regression metric names alike), subgroups, validation intervals, heterogeneity, a round's privacy releases
and encryption summary, and the study's privacy report, `encryption`, `monitoring` and `shift` sections.
The fixed parts (who contributed, refused or was missing, models, lineage, status) are typed strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import JsonValue, ValidationError

from accord.models import Strict
from federated.errors import ResultsError
from federated.reporting.formatting import json_safe

JSONMap = dict[str, JsonValue]


class Refusal(Strict):
    """A partner (or a node that could not be named) that refused a round, or whose reply the coordinator refused."""

    partner: str
    clause: str
    reason: str


class Missing(Strict):
    """A node that did not answer a round (or answered with a Flower error)."""

    node: str
    reason: str


class PartnerReason(Strict):
    """A training update rejected (or flagged as an outlier), with the reason."""

    partner: str
    reason: str


class LateJoiner(Strict):
    """A node that connected after the study started; `before_round` None: after the last round."""

    node: str
    before_round: int | None


class ModelEntry(Strict):
    name: str
    sha256: str
    path: str


class LineageEntry(Strict):
    """One global model of a training study (round 0: the initial model)."""

    round: int
    sha256: str
    parent_sha256: str | None
    file: str
    file_sha256: str
    contributors: list[str]


class RoundSummary(Strict):
    """One round as results.json records it."""

    round: int
    duration_s: float = 0.0
    contributors: list[str] = []
    refused: list[Refusal] = []
    missing: list[Missing] = []
    pooled: dict[str, JSONMap] = {}  # model -> metric -> value (null where not finite)
    subgroups: dict[str, JsonValue] = {}
    matrix: dict[str, dict[str, JSONMap | None]] = {}  # model -> partner -> metrics, None where withheld
    standard_errors: dict[str, JSONMap] = {}
    privacy: dict[str, JSONMap] = {}  # partner -> its release this round
    validation: dict[str, JsonValue] = {}
    heterogeneity: dict[str, JsonValue] = {}
    encryption: JSONMap | None = None  # set when the round's sums were encrypted
    shift: JsonValue = None
    # Training rounds only.
    rejected: list[PartnerReason] | None = None
    flagged: list[PartnerReason] | None = None
    global_sha256_in: str | None = None
    global_sha256_out: str | None = None
    train_loss: dict[str, float | None] | None = None
    evaluation_privacy: dict[str, JSONMap] | None = None
    timings_s: dict[str, float] | None = None
    # A training study's final evaluation only: the weights it measured.
    model_sha256: str | None = None

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> RoundSummary:
        """A round from the values a round produced (numpy floats, NaN: made strict JSON first)."""
        return cls.model_validate(json_safe(dict(fields)))

    def withheld(self) -> RoundSummary:
        """This round with every metric removed: metrics of a round below the minimum cohort are not released."""
        blank: dict[str, Any] = {"pooled": {}, "subgroups": {}, "matrix": {}}
        blank |= {name: {} for name in ("standard_errors", "validation", "heterogeneity") if name in self.model_fields_set}
        blank |= {"shift": None} if "shift" in self.model_fields_set else {}  # feature histograms are released sums too
        return self.model_copy(update=blank)


class StudyResults(Strict):
    """results.json: one study's outcome."""

    study: str
    purpose: str = "evaluation"
    task: str | None = None
    study_sha256: str = ""
    flower_run: str = ""
    status: str
    message: str = ""
    min_cohort: int | None = None
    models: list[ModelEntry] = []
    rounds: list[RoundSummary] = []
    trail: str = ""
    encryption: JSONMap | None = None  # the study key's description (never key material)
    lineage: list[LineageEntry] | None = None  # training studies
    final_evaluation: RoundSummary | None = None  # training studies
    late_partners: list[LateJoiner] | None = None
    expected_partners_missing: list[str] | None = None
    privacy: JSONMap = {}  # partner -> releases and composed totals (`privacy_report.reported_privacy`)
    monitoring: JSONMap | None = None  # monitoring studies
    shift: JsonValue = None

    @property
    def final_round(self) -> RoundSummary | None:
        """The round whose metrics the study reports: the final evaluation, else the last round."""
        return self.final_evaluation or (self.rounds[-1] if self.rounds else None)

    def document(self) -> dict[str, Any]:
        """The JSON document (the fields that were set), as results.json holds it."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def parse(cls, document: Any, *, source: str = "results.json") -> StudyResults:
        """Validate a results document; `ResultsError` naming `source` and the field that does not fit."""
        try:
            return cls.model_validate(json_safe(document) if isinstance(document, dict) else document)
        except ValidationError as exc:
            raise ResultsError(f"{source}: not a results document: {_first_problem(exc)}") from None

    @classmethod
    def read(cls, path: Path) -> StudyResults:
        """Read and validate a results.json; `ResultsError` naming the file and the field."""
        import json

        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsError(f"{path}: cannot be read as JSON: {exc}") from None
        return cls.parse(document, source=str(path))


def _first_problem(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "(document)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
