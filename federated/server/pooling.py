"""Turning one round's partner replies into pooled metrics and the model x partner matrix.

The coordinator only adds statistics; per-partner rows are produced only for partners whose
reply says they allow per-partner release. A regression study's round (`task = "regression"`) is pooled by
`federated.evaluation.regression.regression_summary`: its own metrics, intervals and residual histogram.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accord.hashing import sha256_bytes
from federated.errors import MessageError
from federated.evaluation.dp_release import (
    ECE_MAX_NOISE_SHARE,
    ECE_NOT_ESTIMABLE,
    array_scales,
    clip_metrics,
    consistent,
    ece_estimable,
    ece_noise_share,
    noisy_metrics,
    standard_errors,
)
from federated.evaluation.meta_analysis import heterogeneity
from federated.evaluation.metrics import (
    compute_metrics,
    subgroup_gaps,
    subgroup_metrics,
)
from federated.evaluation.regression import (
    RegressionStatistics,
    noise_variances,
    noisy_regression_metrics,
    regression_metrics,
    regression_summary,
)
from federated.evaluation.shift import shift_summary
from federated.evaluation.statistics import EvaluationStatistics, StatisticsLayout
from federated.evaluation.validation import validation_summary
from federated.messages.evaluation import EvaluationReply, ModelStatistics
from federated.study import ShiftSettings, ValidationSettings


@dataclass
class RoundOutcome:
    """What one round produced: pooled statistics and metrics, and who took part."""

    round: int
    contributors: list[str]
    refused: list[dict[str, str]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)
    pooled_statistics: dict[str, ModelStatistics] = field(default_factory=dict)
    pooled: dict[str, dict[str, float]] = field(default_factory=dict)
    subgroups: dict[str, dict[str, Any]] = field(default_factory=dict)
    matrix: dict[str, dict[str, dict[str, float] | None]] = field(default_factory=dict)
    standard_errors: dict[str, dict[str, float]] = field(default_factory=dict)
    privacy: dict[str, dict[str, float]] = field(default_factory=dict)
    encryption: dict[str, Any] = field(default_factory=dict)  # set when the round's sums were encrypted
    validation: dict[str, dict[str, Any]] = field(default_factory=dict)  # intervals and validation metrics per model
    heterogeneity: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-partner estimates, random effects
    shift: dict[str, Any] = field(default_factory=dict)  # feature/label shift between partners (studies with [shift])
    duration_s: float = 0.0
    # Not in the summary: per model, the summed DP noise's variance per array (None without DP), and the
    # statistics of partners whose contracts allow per-partner release with their own noise variance
    # (monitoring compares them with their baseline: federated.server.monitoring).
    noise_variance: dict[str, dict[str, float] | None] = field(default_factory=dict)
    released: dict[str, dict[str, tuple[EvaluationStatistics, dict[str, float] | None]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "duration_s": round(self.duration_s, 3),
            "contributors": self.contributors,
            "refused": self.refused,
            "missing": self.missing,
            "pooled": self.pooled,
            "subgroups": self.subgroups,
            "matrix": self.matrix,
            "standard_errors": self.standard_errors,
            "privacy": self.privacy,
            "validation": self.validation,
            "heterogeneity": self.heterogeneity,
        } | ({"encryption": self.encryption} if self.encryption else {}) | ({"shift": self.shift} if self.shift else {})


def statistics_sha256(statistics: dict[str, ModelStatistics]) -> str:
    """A stable hash of named statistics, for the trail."""
    digest = b"".join(
        name.encode() + key.encode() + np.ascontiguousarray(stats.arrays[key], dtype=np.float64).tobytes()
        for name, stats in sorted(statistics.items())
        for key in sorted(stats.arrays)
    )
    return sha256_bytes(digest)


def _noise_variance(replies: list[EvaluationReply], layout: StatisticsLayout) -> dict[str, float] | None:
    """Variance of the summed DP noise per array, or None if no partner added noise."""
    sigmas = [reply.info.noise.sigma for reply in replies if reply.info.noise is not None]
    if not sigmas:
        return None
    if len(sigmas) != len(replies):
        raise MessageError("some partners sent DP-noised statistics and some did not; they cannot be pooled")
    scales = array_scales(layout)
    return {name: sum((sigma * scale) ** 2 for sigma in sigmas) for name, scale in scales.items()}


def aggregate_round(
    round_number: int,
    replies: list[EvaluationReply],
    calibration_bins: int,
    decrypted: dict[str, ModelStatistics] | None = None,
    validation: ValidationSettings | None = None,
    shift: ShiftSettings | None = None,
) -> RoundOutcome:
    """Pool the accepted replies of one round (at least one) into metrics.

    With DP noise, metrics come from the unclamped noisy sums, clipped into range, with standard errors.
    `decrypted`: the sums were decrypted from an encrypted aggregate; no partner's own statistics are
    known, so every matrix cell is withheld.
    """
    outcome = RoundOutcome(round=round_number, contributors=[reply.info.partner for reply in replies])
    outcome.privacy = {r.info.partner: r.info.noise.model_dump() for r in replies if r.info.noise is not None}
    known = decrypted or {}
    if any(isinstance(stats, RegressionStatistics) for stats in (known or replies[0].statistics).values()):
        return _aggregate_regression(outcome, replies, known, validation or ValidationSettings())
    for name in known or replies[0].statistics:
        pooled = _classified(known[name]) if known else EvaluationStatistics.total(
            [_classified(reply.statistics[name]) for reply in replies])
        variance = _noise_variance(replies, pooled.layout)
        outcome.noise_variance[name] = variance
        if variance is not None:
            outcome.standard_errors[name] = standard_errors(pooled, variance, calibration_bins)
        outcome.pooled[name] = compute_metrics(pooled, calibration_bins) if variance is None else noisy_metrics(
            pooled, calibration_bins, variance)
        # The pooled sums as released; under DP the report draws its plots from `consistent` of them, as the metrics.
        outcome.pooled_statistics[name] = pooled
        if pooled.layout.subgroup_levels:
            groups = subgroup_metrics(pooled)
            if variance is not None:
                groups = {level: clip_metrics(entry) for level, entry in groups.items()}
            outcome.subgroups[name] = {"levels": groups, "gaps": subgroup_gaps(groups)}
        outcome.validation[name] = validation_summary(pooled if variance is None else consistent(pooled),
                                                      validation or ValidationSettings(), noise_variance=variance)
        if not ece_estimable(pooled, calibration_bins, variance):
            outcome.validation[name]["ece_not_estimable"] = (
                f"{ECE_NOT_ESTIMABLE}: the DP noise of the calibration bins is "
                f"{ece_noise_share(pooled, calibration_bins, variance or {}):.2f} of the record count "
                f"(at most {ECE_MAX_NOISE_SHARE} to report it); fewer calibration bins or a larger ε would make it estimable")
        released = {reply.info.partner: (_classified(reply.statistics[name]), _noise_variance([reply], pooled.layout))
                    for reply in replies if reply.info.release_per_partner and not known}
        outcome.released[name] = released
        outcome.heterogeneity[name] = heterogeneity(released) if released else {
            "partners": {}, "random_effects": {},
            "note": "no partner's own statistics were released (contracts, or encrypted aggregation): only the "
                    "pooled estimates and their intervals can be reported"}
        outcome.matrix[name] = {
            reply.info.partner: _partner_metrics(reply, name, calibration_bins)
            if reply.info.release_per_partner and not known
            else None
            for reply in replies
        }
    if shift is not None:
        outcome.shift = _shift(outcome, replies, shift, encrypted=bool(known))
    return outcome


def _shift(outcome: RoundOutcome, replies: list[EvaluationReply], settings: ShiftSettings, *, encrypted: bool) -> dict[str, Any]:
    """The round's shift entry from the feature histograms and label counts every model carries alike
    (released once per round: `statistics.SHARED_ARRAYS`), so the first model's are read."""
    first = next((name for name, stats in outcome.pooled_statistics.items()
                  if isinstance(stats, EvaluationStatistics) and "feature_hist" in stats.arrays), None)
    if first is None:
        return {}
    pooled = outcome.pooled_statistics[first]
    released = {partner: (stats["feature_hist"], stats["label_counts"], variance)
                for partner, (stats, variance) in outcome.released.get(first, {}).items()}
    return shift_summary(
        pooled["feature_hist"], pooled["label_counts"], features=settings.features,
        edges=[settings.edges[name] for name in settings.features], partners=released,
        withheld=[r.info.partner for r in replies if r.info.partner not in released],
        reference=settings.reference, psi_threshold=settings.psi_threshold, js_threshold=settings.js_threshold,
        pooled_noise=outcome.noise_variance.get(first), encrypted=encrypted,
    )


def _classified(stats: ModelStatistics) -> EvaluationStatistics:
    if not isinstance(stats, EvaluationStatistics):
        raise MessageError("a round mixes regression and classification statistics; they cannot be pooled")
    return stats


def _regressed(stats: ModelStatistics) -> RegressionStatistics:
    if not isinstance(stats, RegressionStatistics):
        raise MessageError("a round mixes regression and classification statistics; they cannot be pooled")
    return stats


def _regression_noise(replies: list[EvaluationReply], stats: RegressionStatistics) -> dict[str, np.ndarray] | None:
    """Variance of the summed DP noise per coordinate of the regression arrays, or None without DP."""
    sigmas = [reply.info.noise.sigma for reply in replies if reply.info.noise is not None]
    if not sigmas:
        return None
    if len(sigmas) != len(replies):
        raise MessageError("some partners sent DP-noised statistics and some did not; they cannot be pooled")
    return noise_variances(stats.layout, sigmas)


def _aggregate_regression(outcome: RoundOutcome, replies: list[EvaluationReply], known: dict[str, ModelStatistics],
                          validation: ValidationSettings) -> RoundOutcome:
    """A regression round: MAE, RMSE, R², mean error, calibration line, residual histogram and subgroup
    errors from the pooled sums (`federated.evaluation.regression.regression_summary`), with intervals;
    per-partner cells where partners allow them (never under encryption)."""
    for name in known or replies[0].statistics:
        pooled = _regressed(known[name]) if known else RegressionStatistics.total(
            [_regressed(reply.statistics[name]) for reply in replies])
        variance = _regression_noise(replies, pooled)
        summary = regression_summary(pooled, confidence=validation.confidence, noise_variance=variance)
        outcome.pooled[name] = summary["metrics"]
        if summary["standard_errors"] is not None:
            outcome.standard_errors[name] = summary["standard_errors"]
        outcome.pooled_statistics[name] = pooled
        if summary["subgroups"]:
            outcome.subgroups[name] = summary["subgroups"]
        outcome.validation[name] = summary["validation"]
        outcome.heterogeneity[name] = {
            "partners": {}, "random_effects": {},
            "note": "no random-effects meta-analysis for regression metrics yet: the per-partner cells of the "
                    "model × partner matrix are shown where partners allow them"}
        row: dict[str, dict[str, float] | None] = {}
        for reply in replies:
            cell = None
            if reply.info.release_per_partner and not known:
                own = _regressed(reply.statistics[name])
                cell = regression_metrics(own) if reply.info.noise is None else noisy_regression_metrics(own)
            row[reply.info.partner] = cell
        outcome.matrix[name] = row
    return outcome


def _partner_metrics(reply: EvaluationReply, model: str, calibration_bins: int) -> dict[str, float]:
    """One partner's cell of the model × partner matrix (from its own noisy sums under DP)."""
    stats = _classified(reply.statistics[model])
    variance = _noise_variance([reply], stats.layout)
    return compute_metrics(stats, calibration_bins) if variance is None else noisy_metrics(stats, calibration_bins, variance)


def round_metrics(pooled: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """A round's pooled metrics as its `round_completed` trail entry carries them (the CLI prints them):
    the finite numbers only, rounded to 6 places."""
    return {
        model: {name: round(float(value), 6) for name, value in metrics.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)}
        for model, metrics in pooled.items() if isinstance(metrics, dict)
    }
