"""How values appear to people and in strict JSON: one formatter for the report and the auditor's documents."""

from __future__ import annotations

import math
from typing import Any

from federated.evaluation.dp_release import METRIC_RANGES


def json_safe(value: Any) -> Any:
    """NaN and infinities become null, so results.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def format_value(value: Any) -> str:
    """A metric or count as reports print it: '—' for missing, integers plain, else 4 decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4f}"
    return str(value)


def format_count(value: Any, *, noisy: bool = False) -> str:
    """A record count: 'withheld' when it was not released, '≈409 (noisy)' under DP (a noisy count is not a
    whole number of records, and two noisy counts of the same records differ), else the whole number."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "withheld"
    return f"≈{float(value):.0f} (noisy)" if noisy else f"{float(value):.0f}"


EDGE = 5e-4  # a DP estimate this close to its range's edge would print as an exact 0 or 1


def clipped_text(name: str, value: float, *, interval: dict[str, Any] | None = None, se: float | None = None) -> str | None:
    """How a DP metric clipped to (or within EDGE of) its range's edge reads ('≥ 0.912 (clipped)'), or None
    otherwise: an exact 1 or 0 would claim a certainty the noisy sums do not have. The bound is the
    interval's other end, else 1.96 standard errors from the edge, else the edge is named."""
    if name not in METRIC_RANGES or name in ("count", "auroc_bound") or not math.isfinite(value):
        return None
    low, high = METRIC_RANGES[name]
    upper = high - value <= EDGE
    if not (upper or value - low <= EDGE):
        return None
    bound = None
    if interval and interval.get("low") is not None and interval.get("high") is not None:
        bound = float(interval["low"] if upper else interval["high"])
    elif se is not None and math.isfinite(se) and se > 0:
        bound = max(low, high - 1.96 * se) if upper else min(high, low + 1.96 * se)
    edge = high if upper else low
    if bound is None or bound == edge:
        return f"clipped at {edge:g} (DP noise)"
    return f"{'≥' if upper else '≤'} {bound:.3f} (clipped)"


def format_estimate(name: str, value: Any, *, noisy: bool = False, se: float | None = None,
                    interval: dict[str, Any] | None = None) -> str:
    """A pooled metric as reports print it: counts rounded and marked when noisy, clipped metrics as a bound,
    else the value with its DP standard error (when given)."""
    if name == "count":
        return format_count(value, noisy=noisy)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if noisy:
        clipped = clipped_text(name, float(value), interval=interval, se=se)
        if clipped is not None:
            return clipped
    return format_value(value) + (f" ± {se:.3f}" if se is not None and math.isfinite(se) else "")


NOT_ESTIMABLE = "not estimable at this ε"


def not_estimable(name: str, validation: dict[str, Any] | None) -> str | None:
    """'not estimable at this ε' for a metric the DP noise swamps (results.json's validation.<model> then holds
    `<metric>_not_estimable`, the reason, and the metric itself is NaN/null), else None: one wording for the
    report, the dashboard and the evidence pack, never a bare '—' that reads as "missing"."""
    return NOT_ESTIMABLE if validation and validation.get(f"{name}_not_estimable") else None


def format_p_value(value: Any) -> str:
    """A test's p-value: '< 0.0001' below what four decimals show, else four decimals; '—' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return "< 0.0001" if float(value) < 0.0001 else f"{float(value):.4f}"
