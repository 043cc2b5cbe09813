"""What a task will spend from a partner's privacy budget, known before its data is used.

A round releases, per partner: the evaluation statistics of the models it is sent (DP
when the study's `[evaluation.privacy]` is on) and, in training, the locally trained
weights (DP-SGD when `[training.privacy]` is on). The DP parts form one ledger release
(basic composition: ε and δ add up); anything released without DP is named, so that a
node with a finite ε cap or a contract requiring DP can refuse it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from federated.study import EvaluationSettings, TrainingSettings
from privacy.dp_sgd_plan import plan_dp_sgd


@dataclass(frozen=True)
class PrivacyCost:
    """One ledger release: its id within the study, its (ε, δ) and, for DP-SGD, its parameters."""

    release: str
    epsilon: float
    delta: float
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    steps: int | None = None
    distributed: DistributedShare | None = None  # the evaluation noise is a share (`with_share`)


@dataclass(frozen=True)
class DistributedShare:
    """Distributed noise: the release's ε holds while `honest_required` of the `cohort` contributors are honest;
    `share_epsilon` is what this partner's own share gives alone (the ledger records both)."""

    share_epsilon: float
    honest_required: int
    cohort: int


@dataclass(frozen=True)
class TaskCost:
    """A task's privacy cost: the DP part (one ledger release) and what it releases without DP."""

    private: PrivacyCost | None = None
    unprotected: str = ""  # e.g. "evaluation statistics"; empty when everything released is DP

    @property
    def epsilon_per_release(self) -> float | None:
        """ε of this round's release; None when part of it is not DP (unbounded)."""
        return None if self.unprotected or self.private is None else self.private.epsilon

    def with_share(self, share: DistributedShare, *, evaluation_epsilon: float) -> TaskCost:
        """The cost when the evaluation noise is a share: the charged ε stays the release's; what the share gives
        alone is the evaluation share's ε plus the rest of the round's release (DP-SGD), by the same basic composition."""
        if self.private is None:
            return self
        alone = share.share_epsilon + (self.private.epsilon - evaluation_epsilon)
        recorded = DistributedShare(max(alone, self.private.epsilon), share.honest_required, share.cohort)
        return TaskCost(private=replace(self.private, distributed=recorded), unprotected=self.unprotected)


def dp_sgd_cost(settings: TrainingSettings, *, round_number: int, num_examples: int) -> PrivacyCost | None:
    """The ε one round of local DP-SGD spends: `privacy.plan_dp_sgd`, the plan the trainer runs."""
    dp = settings.privacy
    if not dp.enabled:
        return None
    plan = plan_dp_sgd(dp, num_examples=num_examples, batch_size=settings.batch_size, epochs=settings.local_epochs)
    return PrivacyCost(
        release=f"round-{round_number}/dpsgd", epsilon=plan.epsilon, delta=dp.delta,
        noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate, steps=plan.steps,
    )


def round_cost(
    *, evaluation: EvaluationSettings, training: TrainingSettings | None, round_number: int, num_examples: int
) -> TaskCost:
    """The cost of one round's task for a partner holding `num_examples` records."""
    parts: list[PrivacyCost] = []
    unprotected: list[str] = []
    if training is not None:
        dpsgd = dp_sgd_cost(training, round_number=round_number, num_examples=num_examples)
        if dpsgd is None:
            unprotected.append("model updates")
        else:
            parts.append(dpsgd)
    if evaluation.privacy.enabled:
        parts.append(PrivacyCost(release=f"round-{round_number}/evaluation", epsilon=evaluation.privacy.epsilon,
                                 delta=evaluation.privacy.delta))
    else:
        unprotected.append("evaluation statistics")
    if not parts:
        return TaskCost(unprotected=" and ".join(unprotected))
    dpsgd_part = parts[0] if parts[0].noise_multiplier is not None else None
    combined = PrivacyCost(
        release=f"round-{round_number}/" + "+".join(part.release.split("/")[1] for part in parts),
        epsilon=sum(part.epsilon for part in parts), delta=sum(part.delta for part in parts),
        noise_multiplier=dpsgd_part.noise_multiplier if dpsgd_part else None,
        sample_rate=dpsgd_part.sample_rate if dpsgd_part else None,
        steps=dpsgd_part.steps if dpsgd_part else None,
    )
    return TaskCost(private=combined, unprotected=" and ".join(unprotected))
