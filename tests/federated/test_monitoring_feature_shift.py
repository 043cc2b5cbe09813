"""Feature shift across the periods of a monitoring study with [shift] (federated.evaluation.shift.period_shift,
federated.server.monitoring.shift_comparisons)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from federated.audit import AuditTrail
from federated.audit.trail import read_entries
from federated.evaluation.shift import PERIOD_SHIFT_ALPHA, period_shift
from federated.evaluation.statistics import StatisticsLayout, compute_statistics
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import EvaluationReply, TaskSpec
from federated.reporting.results import RoundSummary
from federated.server import monitoring
from federated.server.pooling import RoundOutcome, aggregate_round
from federated.study import ResolvedModel, Study, load_study

EDGES = (0.0, 20.0, 40.0, 60.0, 80.0, 100.0)
PARTNERS = ("site-a", "site-b", "site-c")
PROPORTIONS = np.array([0.1, 0.25, 0.3, 0.2, 0.15])


# --- the test of one feature, period against baseline --------------------------------------------------------


def _release(rng: np.random.Generator, n: int, proportions: np.ndarray, sigma: float) -> np.ndarray:
    return rng.multinomial(n, proportions).astype(np.float64) + rng.normal(0.0, sigma, proportions.size)


def test_a_shifted_feature_alerts() -> None:
    rng = np.random.default_rng(7)
    baseline = _release(rng, 1500, PROPORTIONS, 4.0)
    shifted = _release(rng, 1500, np.array([0.3, 0.3, 0.2, 0.1, 0.1]), 4.0)
    result = period_shift(shifted, baseline, current_noise=16.0, baseline_noise=16.0, psi_threshold=0.1)
    assert result["alert"] is True and float(result["psi"]) > 0.1
    assert float(result["psi"]) > float(result["null_psi_95"]) and float(result["p_value"]) <= PERIOD_SHIFT_ALPHA


def test_a_stable_feature_under_dp_noise_alerts_no_more_often_than_alpha() -> None:
    """Both periods drawn from one distribution, each with its own DP noise (σ = 6 per cell on ~300 records):
    even with a PSI threshold too small to matter, the null simulation keeps false alerts at most alpha."""
    rng = np.random.default_rng(2024)
    trials, alerts, above_default_threshold = 200, 0, 0
    for _ in range(trials):
        baseline = _release(rng, 300, PROPORTIONS, 6.0)
        current = _release(rng, 300, PROPORTIONS, 6.0)
        result = period_shift(current, baseline, current_noise=36.0, baseline_noise=36.0, psi_threshold=1e-9)
        alerts += bool(result["alert"])
        above_default_threshold += bool(period_shift(current, baseline, current_noise=36.0, baseline_noise=36.0)["alert"])
    assert alerts / trials <= PERIOD_SHIFT_ALPHA
    assert above_default_threshold == 0  # the default psi_threshold (0.25) with the noise test: no false alert


def test_the_null_counts_the_noise_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    baseline, current = _release(rng, 400, PROPORTIONS, 0.0), _release(rng, 400, PROPORTIONS, 0.0)
    quiet = period_shift(current, baseline)
    noisy = period_shift(current, baseline, current_noise=100.0, baseline_noise=100.0)
    assert float(noisy["null_psi_95"]) > float(quiet["null_psi_95"])
    assert period_shift(current, baseline, current_noise=100.0, baseline_noise=100.0) == noisy
    empty = period_shift(np.zeros(5), baseline)
    assert empty["alert"] is False and np.isnan(float(empty["psi"]))


# --- the loop, with a scripted federation releasing feature histograms ---------------------------------------


def _study(tmp_path: Path, *, shift: bool) -> tuple[Study, AuditTrail]:
    (tmp_path / "m.onnx").write_bytes(b"not really a model: never run here")
    shift_table = f'[shift]\nfeatures = ["age"]\npsi_threshold = 0.1\n[shift.edges]\nage = {list(EDGES)}\n' if shift else ""
    path = tmp_path / "study.toml"
    path.write_text(f'''id = "mon"
purpose = "monitoring"
output_dir = "out"
min_cohort = 2

[[models]]
name = "deployed"
path = "m.onnx"

[evaluation]
metrics = ["accuracy"]
score_bins = 10

[monitoring]
schedule = "interval"
interval_s = 0
periods = 4
[monitoring.thresholds.accuracy]
max_drop = 0.05
alpha = 0.01
{shift_table}''', encoding="utf-8")
    study = load_study(path)
    study = study.model_copy(update={"output_dir": study.output_dir / "runs" / "r1"})
    return study, AuditTrail(study.output_dir / "trail.jsonl", actor="coordinator")


class ShiftingFederation:
    """Three partners, each releasing its own statistics; site-c's ages move up from period 3 on."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.layout = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=(),
                                       feature_edges=(EDGES,) if study.shift else (), shift_features=("age",) if study.shift else ())

    def __call__(self, spec: TaskSpec) -> RoundOutcome:
        assert spec.monitoring is not None
        period = spec.monitoring.period
        rng = np.random.default_rng(500 + period)
        replies = []
        for partner in PARTNERS:
            scores = rng.beta(0.5, 0.5, 1200)
            labels = (rng.random(scores.size) < scores).astype(np.int64)
            ages = rng.normal(70.0 if partner == "site-c" and period >= 3 else 45.0, 12.0, scores.size)
            stats = compute_statistics(np.column_stack([1 - scores, scores]), labels, None, self.layout,
                                       shift_columns=ages[:, None] if self.study.shift else None)
            info = PartnerInfo(partner=partner, status="ok", release_per_partner=True, count=scores.size)
            replies.append(EvaluationReply(info=info, statistics={"deployed": stats}))
        return aggregate_round(spec.round, replies, calibration_bins=10, shift=spec.shift)


class FakeRunner:
    def __init__(self, study: Study, trail: AuditTrail) -> None:
        self.context = type("Context", (), {"trail": trail, "study_sha256": "ab" * 32})()
        self.study = study
        self.models = [ResolvedModel(name="deployed", path=study.models[0].path, sha256="cd" * 32, output="probabilities")]
        self.rounds: list[RoundSummary] = []
        self.monitoring: dict[str, Any] | None = None

    def note_late_joiners(self, *, before_round: int | None) -> None:
        pass

    def finish_round(self, summary: RoundSummary) -> RoundSummary:
        self.rounds.append(summary)
        return summary


def _run(study: Study, trail: AuditTrail) -> dict[str, Any]:
    runner = FakeRunner(study, trail)
    monitoring.run_monitoring(runner, run_period=ShiftingFederation(study), sleep=lambda s: None)  # type: ignore[arg-type]
    assert runner.monitoring is not None
    return runner.monitoring


def test_a_shifting_partner_alerts_on_its_feature_and_the_stable_ones_do_not(tmp_path: Path) -> None:
    study, trail = _study(tmp_path, shift=True)
    section = _run(study, trail)
    shift = [c for p in section["periods"] for c in p["comparisons"] if c["metric"] == "shift:age"]
    # Periods 2-4, pooled and each partner: the schema's shape, baseline PSI 0, threshold the study's psi_threshold.
    assert len(shift) == 3 * 4 and all(c["baseline"] == 0.0 and c["difference"] == c["value"] and c["threshold"] == 0.1
                                       and 0 < c["p_value"] <= 1 and c["model"] == "deployed" for c in shift)
    alerted = {(a["period"], a["partner"]) for a in section["alerts"] if a["metric"] == "shift:age"}
    assert {(3, "site-c"), (4, "site-c")} <= alerted
    assert not {partner for _, partner in alerted} & {"site-a", "site-b"} and not {period for period, _ in alerted} & {2}
    assert all("distribution of age" in a["message"] for a in section["alerts"] if a["metric"] == "shift:age")
    trail_alerts = [e for e in read_entries(trail.path) if e["kind"] == "monitoring_alert"
                    and e.get("details", {}).get("metric") == "shift:age"]
    assert len(trail_alerts) == len(alerted)
    baseline_file = study.output_dir.parent.parent / monitoring.BASELINE_NAME
    assert "shift" in baseline_file.read_text(encoding="utf-8")


def test_a_restart_compares_with_the_stored_baseline_histograms(tmp_path: Path) -> None:
    study, trail = _study(tmp_path, shift=True)
    section = _run(study, trail)
    state = monitoring.MonitoringState.load(study.output_dir.parent.parent / monitoring.STATE_NAME, study="mon",
                                            study_sha256="ab" * 32)
    assert state.shift_baseline is not None and set(state.shift_baseline["rows"]) == {"pooled", *PARTNERS}
    assert [p["period"] for p in section["periods"]] == [1, 2, 3, 4]


def test_without_shift_there_are_no_shift_comparisons(tmp_path: Path) -> None:
    study, trail = _study(tmp_path, shift=False)
    section = _run(study, trail)
    metrics = {c["metric"] for p in section["periods"] for c in p["comparisons"]}
    assert metrics == {"accuracy"}
    state = monitoring.MonitoringState.load(study.output_dir.parent.parent / monitoring.STATE_NAME, study="mon",
                                            study_sha256="ab" * 32)
    assert state.shift_baseline is None
