"""Accord's ServerApp: the coordinator's logic for one study, run by Flower's SuperLink.

It reads the study file named in the run config (and refuses it if it changed since the
CLI hashed it), waits for the minimum cohort, runs the rounds, writes results, report and
plots, and logs every step in the coordinator's trail.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from accord.hashing import sha256_file
from accord.wording import plural
from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.keys import coordinator_key_path
from federated.errors import CohortTooSmallError, ConfigError
from federated.evaluation.statistics import EvaluationStatistics
from federated.messages.evaluation import ModelRef
from federated.messages.seal import (
    SEAL_MESSAGE_TYPE,
    build_seal_task,
    parse_seal_reply,
)
from federated.messages.study_tasks import evaluation_spec, seal_spec
from federated.reporting.privacy_report import reported_privacy
from federated.reporting.report import write_outputs
from federated.runtime.runs import RUN_CONFIG_EXPECTED_WAIT, RUN_CONFIG_RUN_DIR
from federated.server.cohort import note_late_joiners
from federated.server.collect import collect_replies
from federated.server.encryption import DecryptionFailedError, EncryptedAggregation
from federated.server.pooling import round_metrics
from federated.server.rounds import run_round
from federated.study import ResolvedModel, Study, load_study, resolve_models

app = ServerApp()

TRAIL_NAME = "coordinator-trail.jsonl"
_COHORT_POLL_S = 0.5
SEAL_TIMEOUT_S = 60.0


def trail_path(study: Study) -> Path:
    return study.output_dir / TRAIL_NAME


def load_submitted_study(run_config: dict[str, Any]) -> tuple[Study, str, list[ResolvedModel]]:
    """The study the CLI submitted; `ConfigError` if the file changed since submission."""
    path = Path(str(run_config.get("study-file", "")))
    declared = str(run_config.get("study-sha256", ""))
    if not path.is_file():
        raise ConfigError(f"run config study-file {str(path)!r} is not a file")
    digest = sha256_file(path)
    if digest != declared:
        raise ConfigError(f"{path}: changed since it was submitted (SHA-256 {digest}, submitted {declared})")
    study = load_study(path)
    models = resolve_models(study, path)
    if run_config.get(RUN_CONFIG_RUN_DIR):  # the CLI's run folder: this run writes there (federated.runtime.runs)
        study = study.model_copy(update={"output_dir": Path(str(run_config[RUN_CONFIG_RUN_DIR]))})
    if run_config.get(RUN_CONFIG_EXPECTED_WAIT) not in (None, ""):  # the CLI's --wait-for-partners
        study = study.model_copy(update={"expected_wait_s": float(str(run_config[RUN_CONFIG_EXPECTED_WAIT]))})
    return study, digest, models


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


def expected_but_missing(study: Study, results: dict[str, Any]) -> list[str]:
    """Partners the study expected by name that never contributed to any round."""
    if not isinstance(study.expected_partners, list):
        return []
    rounds = [*results["rounds"], *([results["final_evaluation"]] if results.get("final_evaluation") else [])]
    answered = {name for summary in rounds for name in summary.get("contributors", [])}
    return [name for name in study.expected_partners if name not in answered]


def evaluation_rounds(
    grid: Grid, study: Study, study_sha256: str, models: list[ResolvedModel], trail: AuditTrail, results: dict[str, Any],
    encryption: EncryptedAggregation | None = None, cohort: set[int] | None = None,
) -> dict[str, EvaluationStatistics]:
    """The rounds of an evaluation study; returns the last round's pooled statistics."""
    model_bytes = {model.name: model.path.read_bytes() for model in models}
    pooled_statistics: dict[str, EvaluationStatistics] = {}
    for round_number in range(1, study.rounds + 1):
        if cohort is not None and round_number > 1:
            note_late_joiners(grid, study, trail, cohort, results, before_round=round_number)
        spec = evaluation_spec(study, round_number=round_number, study_sha256=study_sha256,
                               models=[ModelRef(name=m.name, sha256=m.sha256, output=m.output) for m in models])
        outcome = run_round(
            grid, spec, model_bytes, trail,
            timeout_s=study.round_timeout_s, calibration_bins=study.evaluation.calibration_bins, encryption=encryption,
            validation=study.validation,
        )
        results["rounds"].append(outcome.summary())
        trail.append(
            "round_completed", study=study.id, round=round_number, contributors=outcome.contributors,
            refused=len(outcome.refused), missing=len(outcome.missing), duration_s=round(outcome.duration_s, 3),
            **({"pooled": round_metrics(results["rounds"][-1]["pooled"])} if len(outcome.contributors) >= study.min_cohort else {}),
        )
        if len(outcome.contributors) < study.min_cohort:
            raise CohortTooSmallError(
                f"round {round_number}: only {plural(len(outcome.contributors), 'partner')} contributed "
                f"({', '.join(outcome.contributors) or 'none'}), below the minimum cohort of {study.min_cohort}"
            )
        pooled_statistics = outcome.pooled_statistics
    return pooled_statistics


def run_study(
    grid: Grid, study: Study, study_sha256: str, models: list[ResolvedModel], trail: AuditTrail, *, run_id: int,
    encryption: EncryptedAggregation | None = None,
) -> dict[str, Any]:
    """All rounds of a study (evaluation or training); returns the results document."""
    results: dict[str, Any] = {
        "study": study.id,
        "purpose": study.purpose,
        "study_sha256": study_sha256,
        "flower_run": str(run_id),
        "status": "running",
        "message": "",
        "min_cohort": study.min_cohort,
        "models": [{"name": m.name, "sha256": m.sha256, "path": str(m.path)} for m in models],
        "rounds": [],
        "trail": str(trail.path),
    }
    if encryption is not None:
        results["encryption"] = encryption.describe()
    pooled_statistics: dict[str, EvaluationStatistics] = {}
    cohort: set[int] = set()
    try:
        cohort = wait_for_cohort(grid, study, trail, required=len(encryption.cohort) if encryption is not None else None)
        if study.purpose == "training":
            from federated.server.training import (
                run_training,  # torch only for training studies
            )

            pooled_statistics = run_training(grid, study, study_sha256, trail, results, encryption, cohort=cohort)
        else:
            pooled_statistics = evaluation_rounds(grid, study, study_sha256, models, trail, results, encryption, cohort)
        results["status"] = "completed"
    except (CohortTooSmallError, DecryptionFailedError) as exc:
        status = exc.status
        results.update(status=status, message=str(exc))
        if results["rounds"]:
            # Metrics of a round below the minimum cohort are not released.
            last = results["rounds"][-1]
            if len(last["contributors"]) < study.min_cohort:
                last.update(pooled={}, subgroups={}, matrix={})
    if cohort:
        note_late_joiners(grid, study, trail, cohort, results, before_round=None)
    if missing_names := expected_but_missing(study, results):
        results["expected_partners_missing"] = missing_names
        trail.append("expected_partners_missing", study=study.id, names=missing_names)
    results["privacy"] = reported_privacy(results)
    hashes = write_outputs(study.output_dir, results, pooled_statistics, study.evaluation.calibration_bins)
    trail.append("report_written", study=study.id, files=hashes)
    # Before the closing entry, which the CLI waits for: partners cosign everything up to the report.
    silent = {int(m["node"]) for m in results["rounds"][-1]["missing"]} if results["rounds"] else set()
    seal_study(grid, study, trail, completed=results["status"] == "completed", skip=silent)
    if results["status"] == "completed":
        trail.append("study_completed", study=study.id, rounds=study.rounds)
    else:
        trail.append("study_failed", study=study.id, status=results["status"], reason=results["message"])
    return results


def seal_study(grid: Grid, study: Study, trail: AuditTrail, *, completed: bool, skip: set[int]) -> None:
    """Have every connected partner cosign the checkpoint that covers the whole study (`federated.messages.seal`).

    Nodes in `skip` (silent in the last round) are not waited for again; a seal waits at most
    `SEAL_TIMEOUT_S` (it asks for no work).
    """
    if CoordinatorAudit.bound_to(trail) is None:
        return  # no checkpoints to cosign
    spec = seal_spec(study, completed=completed)
    collect_replies(
        grid, [node for node in grid.get_node_ids() if node not in skip], content=lambda: build_seal_task(spec),
        message_type=SEAL_MESSAGE_TYPE, parse=parse_seal_reply, where={"study": study.id, "round": None},
        task_sha256=spec.sha256(), trail=trail, timeout_s=min(study.round_timeout_s, SEAL_TIMEOUT_S),
    )


@app.main()
def main(grid: Grid, context: Context) -> None:
    study, study_sha256, models = load_submitted_study(dict(context.run_config))
    trail = AuditTrail(trail_path(study), actor="coordinator")
    audit = None
    try:
        # Signs a checkpoint before every round (rounds.collect_replies) and one when the study ends.
        audit = CoordinatorAudit.for_study(trail, coordinator_key_path(dict(context.run_config), study.output_dir), study_id=study.id)
        # The public context only: `load_public_context` refuses a file that holds a secret key.
        encryption = EncryptedAggregation.for_study(study, Path(str(context.run_config["study-file"])))
        he: dict[str, Any] = {"he_fingerprint": encryption.public.fingerprint} if encryption is not None else {}
        trail.append(
            "study_started", study=study.id, study_sha256=study_sha256, rounds=study.rounds,
            min_cohort=study.min_cohort, models={m.name: m.sha256 for m in models}, coordinator_key=audit.fingerprint, **he,
        )
        run_study(grid, study, study_sha256, models, trail, run_id=context.run_id, encryption=encryption)
    except Exception as exc:
        # Leave the reason in the trail before Flower marks the run failed.
        trail.append("study_failed", study=study.id, status="error", reason=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if audit is not None:
            audit.checkpoint()
