"""Accord's ServerApp: the coordinator's logic for one study, run by Flower's SuperLink.

It reads the study file named in the run config (and refuses it if it changed since the
CLI hashed it), waits for the minimum cohort, runs the rounds, writes results, report and
plots, and logs every step in the coordinator's trail.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from accord.hashing import sha256_file
from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.keys import coordinator_key_path
from federated.errors import CohortTooSmallError, ConfigError
from federated.messages.evaluation import ModelStatistics
from federated.messages.seal import (
    SEAL_MESSAGE_TYPE,
    build_seal_task,
    parse_seal_reply,
)
from federated.messages.study_tasks import seal_spec
from federated.reporting.report import write_outputs
from federated.reporting.results import StudyResults
from federated.runtime.runs import RUN_CONFIG_EXPECTED_WAIT, RUN_CONFIG_RUN_DIR
from federated.server.collect import collect_replies
from federated.server.context import RoundContext
from federated.server.encryption import DecryptionFailedError, EncryptedAggregation
from federated.server.rounds import evaluation_rounds
from federated.server.monitoring import resumable, run_monitoring
from federated.server.runner import StudyRunner
from federated.study import ResolvedModel, Study, load_study, resolve_models

app = ServerApp()

TRAIL_NAME = "coordinator-trail.jsonl"


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


def run_study(context: RoundContext, models: list[ResolvedModel], *, run_id: int) -> StudyResults:
    """All rounds of a study (evaluation or training), its outputs and closing seal; returns the results."""
    study, trail = context.study, context.trail
    runner = StudyRunner(context, models, run_id=run_id)
    pooled_statistics: Mapping[str, ModelStatistics] = {}
    status, message = "completed", ""
    try:
        runner.wait_for_cohort()
        if study.purpose == "training":
            from federated.server.training import (
                run_training,  # torch only for training studies
            )

            pooled_statistics = run_training(runner)
        elif study.purpose == "monitoring":
            pooled_statistics = run_monitoring(runner)  # its periods, alerts, resumable state
        else:
            pooled_statistics = evaluation_rounds(runner)
    except (CohortTooSmallError, DecryptionFailedError) as exc:
        status, message = exc.status, str(exc)  # a round below the minimum cohort released no metrics
    runner.note_late_joiners(before_round=None)
    results = runner.results(status=status, message=message)
    if results.expected_partners_missing:
        trail.append("expected_partners_missing", study=study.id, names=results.expected_partners_missing)
    hashes = write_outputs(study.output_dir, results, pooled_statistics, study.evaluation.calibration_bins)
    trail.append("report_written", study=study.id, files=hashes)
    # Before the closing entry, which the CLI waits for: partners cosign everything up to the report.
    silent = {int(m.node) for m in results.rounds[-1].missing} if results.rounds else set()
    if not resumable(results.monitoring):  # a monitoring study waiting for snapshots stays open, to resume
        seal_study(context, completed=results.status == "completed", skip=silent)
    if results.status == "completed":
        trail.append("study_completed", study=study.id, rounds=study.rounds)
    else:
        trail.append("study_failed", study=study.id, status=results.status, reason=results.message)
    return results


def seal_study(context: RoundContext, *, completed: bool, skip: set[int]) -> None:
    """Have every connected partner cosign the checkpoint that covers the whole study (`federated.messages.seal`).

    Nodes in `skip` (silent in the last round) are not waited for again; a seal waits at most
    `context.seal_timeout_s` (it asks for no work).
    """
    if context.audit is None:
        return  # no checkpoints to cosign
    spec = seal_spec(context.study, completed=completed)
    collect_replies(
        context, [node for node in context.grid.get_node_ids() if node not in skip],
        content=lambda: build_seal_task(spec), message_type=SEAL_MESSAGE_TYPE, parse=parse_seal_reply,
        where=context.where(None), task_sha256=spec.sha256(), timeout_s=context.seal_timeout_s,
    )


@app.main()
def main(grid: Grid, context: Context) -> None:
    study, study_sha256, models = load_submitted_study(dict(context.run_config))
    trail = AuditTrail(trail_path(study), actor="coordinator")
    audit = None
    try:
        # Signs a checkpoint before every round (collect.collect_replies) and one when the study ends.
        audit = CoordinatorAudit.for_study(trail, coordinator_key_path(dict(context.run_config), study.output_dir), study_id=study.id)
        # The public context only: `load_public_context` refuses a file that holds a secret key.
        encryption = EncryptedAggregation.for_study(study, Path(str(context.run_config["study-file"])))
        rounds = RoundContext(grid, trail, audit, study=study, study_sha256=study_sha256, encryption=encryption)
        he: dict[str, Any] = {"he_fingerprint": encryption.public.fingerprint} if encryption is not None else {}
        trail.append(
            "study_started", study=study.id, study_sha256=study_sha256, rounds=study.rounds,
            min_cohort=study.min_cohort, models={m.name: m.sha256 for m in models}, coordinator_key=audit.fingerprint, **he,
        )
        run_study(rounds, models, run_id=context.run_id)
    except Exception as exc:
        # Leave the reason in the trail before Flower marks the run failed.
        trail.append("study_failed", study=study.id, status="error", reason=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if audit is not None:
            audit.checkpoint()
