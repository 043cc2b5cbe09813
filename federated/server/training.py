"""The coordinator's side of a training study: rounds of local training and aggregation.

Each round sends every connected partner the global model (weights and ONNX); each
partner evaluates it on its data and trains from it in the same message. Updates are
checked (names, shapes, NaN/Inf, norm bound), rejected ones are logged with the reason,
and the rest are combined with the study's Flower aggregator. Every global model is saved
as safetensors with its lineage (parent hash, round, contributors, aggregator) in the
trail. A last evaluation round measures the final model through the evaluation path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from accord.hashing import arrays_sha256, sha256_bytes, sha256_file
from federated.audit import AuditTrail
from federated.errors import ConfigError, MessageError
from federated.messages.evaluation import EvaluationReply, ModelStatistics
from federated.messages.study_tasks import final_evaluation_spec, training_spec
from federated.messages.training import (
    TRAIN_MESSAGE_TYPE,
    TrainReply,
    build_train_task,
    parse_train_reply,
)
from federated.reporting.results import LineageEntry, RoundSummary
from federated.server.collect import collect_replies
from federated.server.context import RoundContext
from federated.server.pooling import aggregate_round
from federated.server.rounds import run_round
from federated.study import Study, TrainingSettings
from federated.training.aggregation import (
    aggregate_updates,
    check_update,
    flag_outliers,
    mean_from_sum,
)

if TYPE_CHECKING:
    from federated.evaluation.statistics import EvaluationStatistics
    from federated.server.runner import StudyRunner


def _training_settings(study: Study) -> TrainingSettings:
    if study.training is None:
        raise ConfigError(f"study {study.id!r} has no [training] table: it cannot run as a training study")
    return study.training


class GlobalModel:
    """The coordinator's current global model: torch module, its arrays and their hash."""

    def __init__(self, study: Study) -> None:
        import torch

        from federated.training.models import create_model

        torch.set_num_threads(1)
        settings = _training_settings(study)
        torch.manual_seed(settings.seed)
        self.settings = settings
        self.module = create_model(
            settings.architecture, num_features=settings.num_features,
            num_classes=study.evaluation.num_classes, **settings.architecture_options,
        )
        if settings.initial_weights is not None:
            self.load(self._initial_arrays(settings.initial_weights, settings))
        else:
            from federated.training.weights import model_arrays

            self.arrays = model_arrays(self.module)

    @staticmethod
    def _initial_arrays(path: Path, settings: TrainingSettings) -> dict[str, np.ndarray]:
        from federated.training.weights import load_safetensors

        digest = sha256_file(path)
        if settings.initial_weights_sha256 not in (None, digest):
            raise ConfigError(f"{path}: hashes to {digest}, not the declared initial_weights_sha256")
        arrays, _ = load_safetensors(path)
        return arrays

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        from federated.training.weights import load_arrays

        try:
            load_arrays(self.module, arrays)
        except ValueError as exc:
            raise ConfigError(f"weights do not fit the {self.settings.architecture!r} architecture: {exc}") from None
        self.arrays = {name: np.asarray(a, dtype=np.float32) for name, a in arrays.items()}

    @property
    def sha256(self) -> str:
        return arrays_sha256(self.arrays)

    def onnx(self) -> bytes:
        from federated.training.weights import export_onnx

        return export_onnx(self.module, num_features=self.settings.num_features)

    def save(self, path: Path, metadata: dict[str, str]) -> str:
        from federated.training.weights import save_safetensors

        path.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors(path, self.arrays, metadata=metadata)
        return sha256_file(path)


def _release(global_model: GlobalModel, context: RoundContext, *, round_number: int, parent: str | None,
             contributors: list[str]) -> LineageEntry:
    study = context.study
    settings = _training_settings(study)
    path = study.output_dir / "models" / f"global-round-{round_number}.safetensors"
    lineage = {
        "study": study.id, "round": str(round_number), "parent_sha256": parent or "",
        "contributors": ",".join(contributors), "aggregator": settings.aggregator,
        "architecture": settings.architecture,
    }
    file_sha256 = global_model.save(path, lineage)
    context.trail.append(
        "model_aggregated", study=study.id, round=round_number, sha256=global_model.sha256, parent_sha256=parent,
        contributors=contributors, aggregator=settings.aggregator, file=path.name, file_sha256=file_sha256,
    )
    return LineageEntry(round=round_number, sha256=global_model.sha256, parent_sha256=parent, file=str(path),
                        file_sha256=file_sha256, contributors=contributors)


def _check_updates(replies: list[TrainReply], reference: dict[str, np.ndarray], settings: TrainingSettings,
                   trail: AuditTrail, where: dict[str, Any], flagged: list[dict[str, str]]) -> tuple[list[TrainReply], list[dict[str, str]]]:
    """Reject updates that fail their checks; an encrypted update can only have its weight checked
    (its partner checked its norm before encrypting it)."""
    accepted, rejected = [], []
    norms: dict[str, float] = {}
    for reply in replies:
        try:
            if reply.encrypted is None:
                norms[reply.info.partner] = check_update(reply.arrays, reference, max_norm=settings.max_update_norm)
        except MessageError as exc:
            rejected.append({"partner": reply.info.partner, "reason": str(exc)})
            trail.append("update_rejected", partner=reply.info.partner, reason=str(exc), **where)
            continue
        expected = 1 if reply.privacy is not None else reply.info.count  # DP partners weigh 1, see client.tasks
        if reply.num_examples != expected:
            reason = f"claims weight {reply.num_examples} but reported {reply.info.count} records"
            rejected.append({"partner": reply.info.partner, "reason": reason})
            trail.append("update_rejected", partner=reply.info.partner, reason=reason, **where)
            continue
        accepted.append(reply)
    accepted_norms = {r.info.partner: norms[r.info.partner] for r in accepted if r.info.partner in norms}
    for partner, reason in flag_outliers(accepted_norms).items():
        trail.append("update_flagged", partner=partner, reason=reason, **where)
        flagged.append({"partner": partner, "reason": reason})
    return accepted, rejected


def run_training(runner: StudyRunner) -> dict[str, ModelStatistics]:
    """All training rounds and the final evaluation, each finished by `runner`; returns pooled statistics.

    With the context's encryption, partners send weight·(w - w_global) and their statistics in one encrypted
    bundle; the coordinator sums them, a decrypting partner returns the sums, and the new global
    model is w_global + sum / total weight (FedAvg; the study validation refuses other aggregators).
    """
    context = runner.context
    global_model = GlobalModel(context.study)
    runner.lineage = [_release(global_model, context, round_number=0, parent=None, contributors=[])]
    for round_number in runner.round_numbers():
        summary, released, model = training_round(context, global_model, round_number)
        runner.finish_round(summary, counted="contributed an accepted update", released=released)
        if model is not None:
            runner.lineage.append(model)
    runner.note_late_joiners(before_round=context.study.rounds + 1)  # the final evaluation
    return _final_evaluation(runner, global_model)


def training_round(context: RoundContext, global_model: GlobalModel,
                   round_number: int) -> tuple[RoundSummary, bool, LineageEntry | None]:
    """One training round: send the global model, check the updates, aggregate them into the next global model
    (only when at least the minimum cohort's updates were accepted). Returns the round's summary, whether its
    cohort was large enough, and the new global model's lineage entry (None when none was made)."""
    study, encryption, trail = context.study, context.encryption, context.trail
    settings = _training_settings(study)
    started = time.monotonic()
    onnx = global_model.onnx()
    timings = {"export_s": time.monotonic() - started}
    spec = training_spec(study, round_number=round_number, study_sha256=context.study_sha256,
                         global_sha256=global_model.sha256, onnx_sha256=sha256_bytes(onnx))
    where = context.where(round_number)
    arrays = global_model.arrays
    nodes = list(context.grid.get_node_ids())
    plan = None
    if encryption is not None:
        from federated.messages.he_codec import training_plan

        shapes = {name: array.shape for name, array in arrays.items()}
        spec, plan = encryption.encrypt_spec(spec, partners=len(nodes),
                                             plan_for=lambda draft, public: training_plan(draft, shapes, public))
    collected = collect_replies(
        context, nodes, content=lambda: build_train_task(spec, arrays, onnx),
        message_type=TRAIN_MESSAGE_TYPE, parse=lambda content: parse_train_reply(content, spec), where=where,
        task_sha256=spec.sha256(), timeout_s=context.round_timeout_s,
    )
    timings["exchange_s"] = time.monotonic() - started - timings["export_s"]
    flagged: list[dict[str, str]] = []
    accepted, rejected = _check_updates(collected.accepted, arrays, settings, trail, where, flagged)
    decrypted = None
    if encryption is not None and plan is not None and len(accepted) >= study.min_cohort:
        collected.accepted = accepted
        decrypted = encryption.aggregate(context, collected, plan, study=study.id, round=round_number)
        accepted = collected.accepted  # less any bundle that could not be added
        timings["decrypt_s"] = time.monotonic() - started - timings["export_s"] - timings["exchange_s"]
    summary: dict[str, Any] = {
        "round": round_number, "contributors": [r.info.partner for r in accepted], "rejected": rejected,
        "flagged": flagged,
        "refused": collected.refused, "missing": collected.missing, "global_sha256_in": global_model.sha256,
        "privacy": {r.info.partner: r.privacy.model_dump() for r in accepted if r.privacy is not None},
        "train_loss": {r.info.partner: r.train_loss for r in accepted},
    }
    if decrypted is not None and plan is not None:  # (a decrypted round always had a plan)
        summary["encryption"] = decrypted.summary | {"update_error_bound": plan.update_error_bound}
    if accepted and (encryption is None or decrypted is not None):
        # Pooled metrics of the model the partners received (the previous round's global model).
        evaluation = aggregate_round(round_number, [_as_evaluation(r) for r in accepted], study.evaluation.calibration_bins,
                                     decrypted=decrypted.statistics if decrypted is not None else None)
        summary.update(pooled=evaluation.pooled, subgroups=evaluation.subgroups, matrix=evaluation.matrix,
                       standard_errors=evaluation.standard_errors, evaluation_privacy=evaluation.privacy)
    released = len(accepted) >= study.min_cohort and (encryption is None or decrypted is not None)
    model = None
    if released:
        parent = global_model.sha256
        mark = time.monotonic()
        if decrypted is not None:
            global_model.load(mean_from_sum(arrays, decrypted.update, total_weight=sum(r.num_examples for r in accepted)))
        else:
            global_model.load(aggregate_updates(settings, [(r.arrays, r.num_examples) for r in accepted]))
        timings["aggregate_s"] = time.monotonic() - mark
        mark = time.monotonic()
        model = _release(global_model, context, round_number=round_number, parent=parent, contributors=summary["contributors"])
        timings["save_s"] = time.monotonic() - mark
        summary["global_sha256_out"] = global_model.sha256
        summary["timings_s"] = {name: round(value, 4) for name, value in timings.items()}
    summary["duration_s"] = round(time.monotonic() - started, 3)
    return RoundSummary.of(summary), released, model


def _as_evaluation(reply: TrainReply) -> EvaluationReply:
    statistics: dict[str, ModelStatistics] = dict(reply.statistics)
    return EvaluationReply(info=reply.info, statistics=statistics)


def _final_evaluation(runner: StudyRunner, global_model: GlobalModel) -> dict[str, ModelStatistics]:
    context = runner.context
    onnx = global_model.onnx()
    spec = final_evaluation_spec(context.study, study_sha256=context.study_sha256, onnx_sha256=sha256_bytes(onnx))
    outcome = run_round(context, spec, {"global": onnx})
    runner.finish_round(RoundSummary.of(outcome.summary() | {"model_sha256": global_model.sha256}), final=True)
    return outcome.pooled_statistics
