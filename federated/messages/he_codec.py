"""How a round's values become the integer arrays of one encrypted bundle, and back.

Every value a partner sends for aggregation goes into one bundle (`crypto.he_aggregation`), laid out
by `crypto.he_layout` from bounds both sides derive from the task (`plan_bundle`):

- **Counts** (label counts, confusion matrices, score histograms, subgroup confusion, shift feature histograms) travel as exact
  integers when DP is off: their sums decrypt exactly. The arrays every model shares (`SHARED_ARRAYS`:
  the label counts, the shift feature histograms) travel once per bundle, with the first model.
- **Every other statistic** (log-loss, Brier and score sums and the losses' sums of squares; and all statistics when DP noise is on)
  travels as fixed-point with `FRACTION_BITS` = 32 fraction bits, split into two exact integer limbs
  `hi = floor(x·2^32 / 2^26)` and `lo = x·2^32 mod 2^26`. A BFV slot holds 43 bits, too few for one
  32-fraction-bit value of a sum over many records; two limbs sum exactly and recombine after
  decryption, so the only error is each partner's rounding to 2^-32: at most P·2^-33 on a sum of
  P partners (1.2e-10 per partner), far below the 1e-6 relative the plaintext path is held to. A part
  whose bound would pass 2^30 (a sum of squared log losses over a million records without DP) gets fewer
  fraction bits (`part_fraction_bits`): its error is 2^-(bits+1) per partner on a sum that large.
- **A membership canary**: `CANARY_WORDS` integers of `CANARY_BITS` bits that only holders of the
  secret key can compute for (study, round, partner) (`federated.client.encryption.canary_for`).
  The decrypting partner checks that the aggregate's canary is exactly the sum of the listed
  contributors' canaries: the aggregate then holds one bundle of each, once (a coordinator that sums
  one partner's bundle with itself, or leaves a listed one out, is caught). It is stripped from what
  the decrypting partner returns.
- **Model updates** (training) travel as `he_layout` fixed-point, weight·(w - w_global) per
  coordinate, with as many fraction bits F as the bound leaves (at most 24): the averaged weights are
  within 2^-(F+1) of the plaintext FedAvg (`BundlePlan.update_error_bound`, recorded in results).

Bounds, per partner: a count is at most `max_records_per_partner` (a partner holding more refuses);
a sum is at most that many records times what one record adds (`dp_evaluation.array_scales`; log loss
without DP is clipped at -log(float64 eps) ≈ 36.04, as scikit-learn clips); with DP, plus 40 noise
standard deviations; an update coordinate is at most weight · `max_update_norm`, since |d_j| <= ||d||_2
(the partner checks its own norm). The aggregate bound is the per-partner bound times the size of the
announced cohort. A partner refuses values beyond its bound before encrypting, so honest sums never overflow a lane.

Regression studies (`federated.evaluation.regression`) use the same bundle: the residual histogram is
counts (exact without DP), every other sum fixed-point in the units of the study's declared value range,
where one record adds at most 16 (Σe⁴), so a sum's bound is `max_records_per_partner` times that.

This module must never round a count: counts that are not integers are refused, not converted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from crypto.errors import EncodingError, LayoutMismatchError
from crypto.he_keys import PublicContext
from crypto.he_layout import BundleLayout, plan_layout
from federated.evaluation.dp_release import array_scales, calibrate
from federated.evaluation.regression import (
    RegressionLayout,
    RegressionStatistics,
    calibrate_regression,
)
from federated.evaluation.statistics import (
    LOG_LOSS_EPSILON,
    SHARED_ARRAYS,
    EvaluationStatistics,
    StatisticsLayout,
)
from federated.messages.encryption_spec import EncryptionSpec
from federated.messages.evaluation import ModelStatistics, TaskSpec
from federated.study import EvaluationPrivacy

if TYPE_CHECKING:
    from federated.messages.training import TrainSpec

FRACTION_BITS = 32
LIMB_BITS = 26
NOISE_MARGIN_SIGMAS = 40.0  # P(|N(0,1)| > 40) < 1e-340: noise never leaves the bound
MAX_UPDATE_FRACTION_BITS = 24
MIN_UPDATE_FRACTION_BITS = 10  # below this the averaged weights would be off by more than 5e-4
COUNT_ARRAYS = frozenset({"label_counts", "confusion", "hist_pos", "hist_neg", "subgroup_confusion", "feature_hist"})
UPDATE_PREFIX = "update/"
CANARY = "canary"
CANARY_WORDS = 2
CANARY_BITS = 30  # 60 random bits; a sum of at most 356 canaries stays below 2^39
_MAX_SCALED = 2**62  # x·2^32 must fit int64 with room for the sign


@dataclass(frozen=True)
class StatisticsPart:
    """How one statistics array of one model travels: exact integers or two fixed-point limbs."""

    model: str
    array: str
    exact: bool
    bound: float  # the largest |value| one partner may send
    fraction_bits: int = FRACTION_BITS  # fixed-point parts: fewer where the bound is large (`part_fraction_bits`)
    # One of `statistics.SHARED_ARRAYS` (the label counts): the same values for every model, so it travels
    # once, under the first model's name, and is given back to every model after decryption.
    shared: bool = False

    @property
    def name(self) -> str:
        return f"{self.model}/{self.array}"


@dataclass(frozen=True)
class BundlePlan:
    """A round's bundle: its layout and how statistics (and an update) map onto it."""

    layout: BundleLayout
    statistics: StatisticsLayout | RegressionLayout
    parts: tuple[StatisticsPart, ...]
    updates: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    update_bound: float = 0.0  # per partner, per coordinate of weight·(w - w_global)
    update_fraction_bits: int = 0

    @property
    def sha256(self) -> str:
        return self.layout.digest

    @property
    def update_error_bound(self) -> float:
        """Largest difference between the decrypted weighted mean and the plaintext one, per coordinate."""
        return 2.0 ** -(self.update_fraction_bits + 1) if self.updates else 0.0

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(part.model for part in self.parts))

    def pack(
        self,
        statistics: Mapping[str, ModelStatistics],
        update: Mapping[str, np.ndarray] | None = None,
        *,
        canary: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """One partner's values as the bundle's arrays; `EncodingError` for anything out of bounds."""
        if set(statistics) != set(self.models):
            raise LayoutMismatchError(f"statistics for models {sorted(statistics)}, the task asks for {self.models}")
        canary = np.asarray(canary)
        if canary.shape != (CANARY_WORDS,) or canary.dtype != np.int64 or canary.min() < 0 or canary.max() >= 1 << CANARY_BITS:
            raise EncodingError(f"a canary is {CANARY_WORDS} int64 values in [0, 2^{CANARY_BITS})")
        out: dict[str, np.ndarray] = {CANARY: canary}
        for part in self.parts:
            values = np.asarray(statistics[part.model][part.array], dtype=np.float64)
            if part.shared and any(not np.array_equal(stats[part.array], values) for stats in statistics.values()):
                raise EncodingError(f"the models carry different {part.array}; they are released once for all models")
            peak = float(np.max(np.abs(values), initial=0.0))
            if not peak <= part.bound:
                raise EncodingError(
                    f"{part.model}.{part.array} reaches |{peak:g}|, beyond the bound {part.bound:g} the study's "
                    f"encryption.max_records_per_partner sets"
                )
            if part.exact:
                counts = np.rint(values)
                if not np.array_equal(counts, values):
                    raise EncodingError(f"{part.model}.{part.array} holds non-integer counts; counts are never rounded")
                out[part.name] = counts.astype(np.int64)
            else:
                scaled = np.rint(values * 2.0**part.fraction_bits).astype(np.int64)
                out[f"{part.name}/hi"] = scaled >> LIMB_BITS
                out[f"{part.name}/lo"] = scaled & ((1 << LIMB_BITS) - 1)
        if self.updates:
            if update is None or set(update) != set(self.updates):
                raise LayoutMismatchError(f"the bundle needs an update of {sorted(self.updates)}")
            for name, shape in self.updates.items():
                values = np.asarray(update[name], dtype=np.float64)
                if values.shape != shape:
                    raise LayoutMismatchError(f"update {name!r} has shape {values.shape}, the global model {shape}")
                out[UPDATE_PREFIX + name] = values
        return out

    def unpack(self, decrypted: Mapping[str, np.ndarray]) -> tuple[dict[str, ModelStatistics], dict[str, np.ndarray]]:
        """Summed statistics per model (float64, as the plaintext path holds them) and the summed update."""
        self.check_decrypted(decrypted)
        arrays: dict[str, dict[str, np.ndarray]] = {model: {} for model in self.models}
        for part in self.parts:
            if part.exact:
                value = decrypted[part.name].astype(np.float64)
            else:
                hi, lo = decrypted[f"{part.name}/hi"], decrypted[f"{part.name}/lo"]
                # Both products are exact in float64 (|hi| < 2^53, powers of two); one rounding in the sum.
                bits = part.fraction_bits
                value = hi.astype(np.float64) * 2.0 ** (LIMB_BITS - bits) + lo.astype(np.float64) * 2.0**-bits
            for model in self.models if part.shared else [part.model]:
                arrays[model][part.array] = value
        layout = self.statistics
        statistics: dict[str, ModelStatistics] = {
            model: RegressionStatistics(layout, values) if isinstance(layout, RegressionLayout)
            else EvaluationStatistics(layout, values) for model, values in arrays.items()}
        update = {name: np.asarray(decrypted[UPDATE_PREFIX + name], dtype=np.float64) for name in self.updates}
        return statistics, update

    def check_decrypted(self, decrypted: Mapping[str, np.ndarray]) -> None:
        """Decrypted arrays (the canary stripped) must be exactly the layout's names, shapes and kinds."""
        expected = {a.name for a in self.layout.arrays} - {CANARY}
        if set(decrypted) != expected:
            missing, extra = sorted(expected - set(decrypted)), sorted(set(decrypted) - expected)
            raise LayoutMismatchError(f"decrypted arrays do not match the layout: missing {missing}, unexpected {extra}")
        for array in self.layout.arrays:
            if array.name == CANARY:
                continue
            value = np.asarray(decrypted[array.name])
            kind_ok = np.issubdtype(value.dtype, np.integer) if array.kind == "int" else value.dtype == np.float64
            if value.shape != array.shape or not kind_ok:
                raise LayoutMismatchError(
                    f"decrypted {array.name!r} is {value.dtype}{list(value.shape)}, the layout holds {array.kind}{list(array.shape)}"
                )


def record_scales(statistics: StatisticsLayout) -> dict[str, float]:
    """What one record adds, at most, to each statistics array (log loss clipped as the partner clips it)."""
    scales = array_scales(statistics)
    if not math.isfinite(scales["log_loss_sum"]):
        scales["log_loss_sum"] = -math.log(LOG_LOSS_EPSILON)
    if not math.isfinite(scales["log_loss_sq_sum"]):
        scales["log_loss_sq_sum"] = math.log(LOG_LOSS_EPSILON) ** 2
    return scales


def _regression_scales(layout: RegressionLayout) -> dict[str, float]:
    """What one record adds, at most, to any coordinate of each regression array (in the value range's units)."""
    return {name: float(scales.max(initial=1.0)) for name, scales in layout.record_scales().items()}


def plan_bundle(
    *,
    context: PublicContext,
    statistics: StatisticsLayout | RegressionLayout,
    models: Sequence[str],
    privacy: EvaluationPrivacy,
    partners: int,
    max_records: int,
    updates: Mapping[str, tuple[int, ...]] | None = None,
    max_update_norm: float | None = None,
) -> BundlePlan:
    """The bundle both coordinator and partners derive from a task; `EncodingError` if it cannot fit."""
    if not 1 <= partners <= context.parameters.max_addends:
        raise EncodingError(
            f"{partners} partners: this study's keys sum at most {context.parameters.max_addends} contributions exactly"
        )
    noisy = privacy.enabled
    if isinstance(statistics, RegressionLayout):  # regression sums: bounded by the study's value range
        sigma = calibrate_regression(statistics, epsilon=privacy.epsilon, delta=privacy.delta,
                                     models=len(models)).sigma if noisy else 0.0
        scales, counts = _regression_scales(statistics), frozenset({"residual_hist"})
    else:
        sigma = calibrate(statistics, privacy, len(models)).sigma if noisy else 0.0
        scales, counts = record_scales(statistics), COUNT_ARRAYS
    template: dict[str, np.ndarray] = {CANARY: np.zeros(CANARY_WORDS, np.int64)}
    bounds: dict[str, float] = {CANARY: partners * float(1 << CANARY_BITS)}
    parts = []
    shared = frozenset(SHARED_ARRAYS) if isinstance(statistics, StatisticsLayout) else frozenset()
    for index, model in enumerate(models):
        for array, shape in statistics.shapes().items():
            if index > 0 and array in shared:
                continue  # carried once, with the first model
            bound = (max_records + NOISE_MARGIN_SIGMAS * sigma) * scales[array]
            part = StatisticsPart(model, array, exact=not noisy and array in counts, bound=bound,
                                  fraction_bits=part_fraction_bits(bound), shared=array in shared)
            parts.append(part)
            if part.exact:
                template[part.name], bounds[part.name] = np.zeros(shape, np.int64), partners * part.bound
                continue
            if part.bound * 2.0**part.fraction_bits >= _MAX_SCALED:
                raise EncodingError(f"{part.name}: bound {part.bound:g} is too large for {part.fraction_bits} fraction bits")
            template[f"{part.name}/hi"] = np.zeros(shape, np.int64)
            bounds[f"{part.name}/hi"] = partners * (math.floor(part.bound * 2.0 ** (part.fraction_bits - LIMB_BITS)) + 1)
            template[f"{part.name}/lo"] = np.zeros(shape, np.int64)
            bounds[f"{part.name}/lo"] = partners * 2.0**LIMB_BITS
    update_bound, fraction_bits = 0.0, 0
    if updates:
        if max_update_norm is None:
            raise EncodingError("an update bundle needs the study's max_update_norm as its bound")
        update_bound = max_records * max_update_norm
        fraction_bits = update_fraction_bits(context, partners * update_bound)
        for name, shape in updates.items():
            template[UPDATE_PREFIX + name] = np.zeros(shape, np.float64)
            bounds[UPDATE_PREFIX + name] = partners * update_bound
    scale_bits = {name: fraction_bits for name in template if name.startswith(UPDATE_PREFIX)}
    layout = plan_layout(template, context=context, bounds=bounds, scale_bits=scale_bits or 0)
    return BundlePlan(layout, statistics, tuple(parts), dict(updates or {}), update_bound, fraction_bits)


def part_fraction_bits(bound: float) -> int:
    """Fraction bits of a fixed-point statistics part: `FRACTION_BITS`, or fewer where a partner's bound
    times 2^32 would reach 2^62 (a sum of squared log losses over a million records without DP: about
    1,300 per record). The rounding error stays 2^-(bits+1) per partner, next to a bound of 2^(62-bits)."""
    if not bound > 0 or not math.isfinite(bound):
        return FRACTION_BITS
    return max(0, min(FRACTION_BITS, math.ceil(62 - math.log2(bound)) - 1))


def update_fraction_bits(context: PublicContext, bound: float) -> int:
    """The most fraction bits (<= 24) an aggregate bounded by `bound` leaves in one slot."""
    params = context.parameters
    usable = params.plain_modulus.bit_length() - 1
    slack = -(-params.max_addends // 2)
    for bits in range(MAX_UPDATE_FRACTION_BITS, MIN_UPDATE_FRACTION_BITS - 1, -1):
        if (math.floor(bound * 2**bits) + slack).bit_length() + 1 <= usable:
            return bits
    raise EncodingError(
        f"an update sum bounded by {bound:g} leaves fewer than {MIN_UPDATE_FRACTION_BITS} fraction bits in a "
        f"{usable}-bit slot; lower encryption.max_records_per_partner or training.max_update_norm"
    )


def evaluation_plan(spec: TaskSpec, context: PublicContext) -> BundlePlan:
    """The bundle of an encrypted evaluation task: every model's statistics."""
    encryption = _encryption_of(spec)
    return plan_bundle(
        context=context, statistics=spec.regression_layout() or spec.layout(), models=[model.name for model in spec.models],
        privacy=spec.evaluation.privacy, partners=encryption.partners, max_records=encryption.max_records_per_partner,
    )


def training_plan(spec: TrainSpec, shapes: Mapping[str, tuple[int, ...]], context: PublicContext) -> BundlePlan:
    """The bundle of an encrypted training task: the weighted update and the incoming model's statistics."""
    encryption = _encryption_of(spec)
    evaluation = spec.evaluation_spec()
    return plan_bundle(
        context=context, statistics=evaluation.layout(), models=[model.name for model in evaluation.models],
        privacy=spec.evaluation.privacy, partners=encryption.partners, max_records=encryption.max_records_per_partner,
        updates=shapes, max_update_norm=spec.training.max_update_norm,
    )


def _encryption_of(spec: TaskSpec | TrainSpec) -> EncryptionSpec:
    if spec.encryption is None:
        raise LayoutMismatchError(f"study {spec.study} round {spec.round}: the task is not encrypted")
    return spec.encryption
