"""Turning one round's partner replies into pooled metrics and the model x partner matrix.

The coordinator only adds statistics; per-partner rows are produced only for partners whose
reply says they allow per-partner release.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accord.hashing import sha256_bytes
from federated.errors import MessageError
from federated.evaluation.dp_release import (
    array_scales,
    clip_metrics,
    consistent,
    noisy_metrics,
    standard_errors,
)
from federated.evaluation.metrics import (
    compute_metrics,
    subgroup_gaps,
    subgroup_metrics,
)
from federated.evaluation.meta_analysis import heterogeneity
from federated.evaluation.statistics import EvaluationStatistics, StatisticsLayout
from federated.evaluation.validation import validation_summary
from federated.messages.evaluation import EvaluationReply
from federated.study import ValidationSettings


@dataclass
class RoundOutcome:
    """What one round produced: pooled statistics and metrics, and who took part."""

    round: int
    contributors: list[str]
    refused: list[dict[str, str]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)
    pooled_statistics: dict[str, EvaluationStatistics] = field(default_factory=dict)
    pooled: dict[str, dict[str, float]] = field(default_factory=dict)
    subgroups: dict[str, dict[str, Any]] = field(default_factory=dict)
    matrix: dict[str, dict[str, dict[str, float] | None]] = field(default_factory=dict)
    standard_errors: dict[str, dict[str, float]] = field(default_factory=dict)
    privacy: dict[str, dict[str, float]] = field(default_factory=dict)
    encryption: dict[str, Any] = field(default_factory=dict)  # set when the round's sums were encrypted
    validation: dict[str, dict[str, Any]] = field(default_factory=dict)  # intervals and validation metrics per model
    heterogeneity: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-partner estimates, random effects
    duration_s: float = 0.0

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
        } | ({"encryption": self.encryption} if self.encryption else {})


def statistics_sha256(statistics: dict[str, EvaluationStatistics]) -> str:
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
    decrypted: dict[str, EvaluationStatistics] | None = None,
    validation: ValidationSettings | None = None,
) -> RoundOutcome:
    """Pool the accepted replies of one round (at least one) into metrics.

    With DP noise, metrics come from the unclamped noisy sums, clipped into range, with standard errors.
    `decrypted`: the sums were decrypted from an encrypted aggregate; no partner's own statistics are
    known, so every matrix cell is withheld.
    """
    outcome = RoundOutcome(round=round_number, contributors=[reply.info.partner for reply in replies])
    outcome.privacy = {r.info.partner: r.info.noise.model_dump() for r in replies if r.info.noise is not None}
    known = decrypted or {}
    for name in known or replies[0].statistics:
        pooled = known[name] if known else EvaluationStatistics.total([reply.statistics[name] for reply in replies])
        variance = _noise_variance(replies, pooled.layout)
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
        released = {reply.info.partner: (reply.statistics[name], _noise_variance([reply], pooled.layout))
                    for reply in replies if reply.info.release_per_partner and not known}
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
    return outcome


def _partner_metrics(reply: EvaluationReply, model: str, calibration_bins: int) -> dict[str, float]:
    """One partner's cell of the model × partner matrix (from its own noisy sums under DP)."""
    stats = reply.statistics[model]
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
