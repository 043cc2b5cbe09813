"""Monitoring studies on the coordinator (federated.server.monitoring) and their study files."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from accord.hashing import sha256_file
from federated.audit import AuditTrail
from federated.audit.trail import read_entries
from federated.errors import ConfigError
from federated.evaluation.statistics import StatisticsLayout, compute_statistics
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import EvaluationReply, TaskSpec
from federated.reporting.results import RoundSummary
from federated.server import monitoring
from federated.server.pooling import RoundOutcome, aggregate_round
from federated.study import ResolvedModel, Study, load_study

LAYOUT = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=(), threshold=0.5, positive_class=1, loss_bound=None)
PARTNERS = ("site-a", "site-b", "site-c")


def _study_file(tmp_path: Path, monitoring_table: str, *, extra: str = "") -> Path:
    (tmp_path / "m.onnx").write_bytes(b"not really a model: never run here")
    path = tmp_path / "study.toml"
    path.write_text(f'''id = "mon"
purpose = "monitoring"
output_dir = "out"
min_cohort = 2
{extra}
[[models]]
name = "deployed"
path = "m.onnx"

[evaluation]
metrics = ["accuracy", "auroc", "ece"]
score_bins = 10

{monitoring_table}
''', encoding="utf-8")
    return path


MONITORING = '''[monitoring]
schedule = "interval"
interval_s = 0
periods = 4
[monitoring.thresholds.accuracy]
max_drop = 0.05
alpha = 0.01
'''


# --- the study file --------------------------------------------------------------------------------------


def test_a_valid_monitoring_study_loads(tmp_path: Path) -> None:
    study = load_study(_study_file(tmp_path, MONITORING))
    assert study.monitoring is not None and study.monitoring.periods == 4


@pytest.mark.parametrize(("table", "field", "message"), [
    ('[monitoring]\nschedule = "interval"\nperiods = 3\n[monitoring.thresholds.accuracy]\nmax_drop = 0.1\n',
     "monitoring", "interval_s: required"),
    ('[monitoring]\nschedule = "weekly"\nperiods = 3\n[monitoring.thresholds.accuracy]\nmax_drop = 0.1\n',
     "monitoring.schedule", "'interval' or 'snapshots'"),
    ('[monitoring]\nschedule = "snapshots"\nperiods = 3\n[monitoring.thresholds.kappa]\nmax_drop = 0.1\n',
     "monitoring.thresholds", "unknown metric(s) ['kappa']"),
    ('[monitoring]\nschedule = "snapshots"\nperiods = 3\n[monitoring.thresholds.accuracy]\nmax_drop = 0.1\nalpha = 0.7\n',
     "monitoring.thresholds.accuracy.alpha", "less than 0.5"),
    ('[monitoring]\nschedule = "snapshots"\nperiods = 3\nbaseline = "reference"\n[monitoring.thresholds.accuracy]\nmax_drop = 0.1\n',
     "monitoring", "reference: required"),
    ('[monitoring]\nschedule = "snapshots"\nperiods = 3\nwebhook_url = "ftp://x"\n[monitoring.thresholds.accuracy]\nmax_drop = 0.1\n',
     "monitoring.webhook_url", "http:// or https://"),
    ('[monitoring]\nschedule = "snapshots"\nperiods = 1\n[monitoring.thresholds.accuracy]\nmax_drop = 0.1\n',
     "monitoring", "periods: the first period is the baseline"),
    ('[monitoring]\nschedule = "snapshots"\nperiods = 3\n[monitoring.thresholds.recall]\nmax_drop = 0.1\n',
     "(top level)", "monitoring.thresholds: ['recall'] not among evaluation.metrics"),
    ('', "(top level)", "a monitoring study needs a [monitoring] table"),
])
def test_a_bad_monitoring_table_is_refused_naming_the_field(tmp_path: Path, table: str, field: str, message: str) -> None:
    path = _study_file(tmp_path, table)
    with pytest.raises(ConfigError) as caught:
        load_study(path)
    assert f"{path}: {field}" in str(caught.value) and message in str(caught.value)


def test_rounds_other_than_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rounds: a monitoring study runs one round per period"):
        load_study(_study_file(tmp_path, MONITORING, extra="rounds = 3"))


def test_a_monitoring_table_on_an_evaluation_study_is_refused(tmp_path: Path) -> None:
    path = _study_file(tmp_path, MONITORING)
    path.write_text(path.read_text().replace('purpose = "monitoring"', 'purpose = "evaluation"'))
    with pytest.raises(ConfigError, match='monitoring: a \\[monitoring\\] table needs purpose = "monitoring"'):
        load_study(path)


# --- the loop, with a scripted federation ------------------------------------------------------------------


def _reply(partner: str, rng: np.random.Generator, *, flip: float) -> EvaluationReply:
    scores = rng.beta(0.5, 0.5, 1500)
    labels = (rng.random(scores.size) < scores).astype(np.int64)
    flipped = rng.random(scores.size) < flip
    labels[flipped] = 1 - labels[flipped]
    stats = compute_statistics(np.column_stack([1 - scores, scores]), labels, None, LAYOUT)
    info = PartnerInfo(partner=partner, status="ok", release_per_partner=True, count=scores.size)
    return EvaluationReply(info=info, statistics={"deployed": stats})


class ScriptedFederation:
    """Answers each period as three partners would; site-c's labels drift from period 3 on.
    `refuse` maps a period to (partner, clause) refusing it; `crash_at` raises at that period."""

    def __init__(self, *, refuse: dict[int, tuple[str, str]] | None = None, crash_at: int | None = None) -> None:
        self.refuse, self.crash_at = refuse or {}, crash_at
        self.sent: list[tuple[int, int]] = []  # (period, round)

    def __call__(self, spec: TaskSpec) -> RoundOutcome:
        assert spec.monitoring is not None and spec.purpose == "monitoring"
        period = spec.monitoring.period
        if period == self.crash_at:
            raise KeyboardInterrupt("the coordinator's machine went down")
        self.sent.append((period, spec.round))
        rng = np.random.default_rng(1000 + period)
        refused = self.refuse.get(period)
        replies = [_reply(p, rng, flip=0.35 if p == "site-c" and period >= 3 else 0.0) for p in PARTNERS
                   if refused is None or p != refused[0]]
        outcome = aggregate_round(spec.round, replies, calibration_bins=10)
        if refused is not None:
            outcome.refused = [{"partner": refused[0], "clause": refused[1], "reason": "…"}]
        return outcome


class FakeRunner:
    """What run_monitoring uses of `federated.server.runner.StudyRunner`."""

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


def _setup(tmp_path: Path, table: str = MONITORING) -> tuple[Study, AuditTrail]:
    study = load_study(_study_file(tmp_path, table))
    study = study.model_copy(update={"output_dir": study.output_dir / "runs" / "r1"})  # a run folder, as the CLI makes
    return study, AuditTrail(study.output_dir / "trail.jsonl", actor="coordinator")


def _kinds(trail: AuditTrail, kind: str) -> list[dict[str, Any]]:
    return [{**entry, **entry.get("details", {})} for entry in read_entries(trail.path) if entry["kind"] == kind]


def test_each_period_is_compared_with_the_first_and_the_drifting_partner_alerts(tmp_path: Path) -> None:
    study, trail = _setup(tmp_path, MONITORING + '[monitoring.thresholds.auroc]\nmax_drop = 0.05\nalpha = 0.01\n')
    runner = FakeRunner(study, trail)
    monitoring.run_monitoring(runner, run_period=ScriptedFederation(), sleep=lambda s: None)  # type: ignore[arg-type]
    section = runner.monitoring
    assert section is not None and [p["period"] for p in section["periods"]] == [1, 2, 3, 4]
    assert section["periods"][0]["comparisons"] == [] and section["stopped"] is None
    alerted = {(a["partner"], a["period"]) for a in section["alerts"]}
    assert {("site-c", 3), ("site-c", 4)} <= alerted
    assert not {p for p, _ in alerted} & {"site-a", "site-b"}
    assert set(section["periods"][1]["per_partner"]) == set(PARTNERS)
    trail_alerts = _kinds(trail, "monitoring_alert")
    assert len(trail_alerts) == len(section["alerts"]) and all(e["study"] == "mon" for e in trail_alerts)
    assert (study.output_dir.parent.parent / monitoring.BASELINE_NAME).is_file()


def test_a_restart_resumes_at_the_next_period_without_repeating_one(tmp_path: Path) -> None:
    study, trail = _setup(tmp_path)
    first = ScriptedFederation(crash_at=3)
    with pytest.raises(KeyboardInterrupt):
        monitoring.run_monitoring(FakeRunner(study, trail), run_period=first, sleep=lambda s: None)  # type: ignore[arg-type]
    assert first.sent == [(1, 1), (2, 2)]
    again = ScriptedFederation()
    runner = FakeRunner(study, trail)
    monitoring.run_monitoring(runner, run_period=again, sleep=lambda s: None)  # type: ignore[arg-type]
    # Period 3 is run once, under a round number never sent before (round 3 left with the crash).
    assert again.sent == [(3, 4), (4, 5)]
    assert runner.monitoring is not None and [p["period"] for p in runner.monitoring["periods"]] == [1, 2, 3, 4]
    resumed = _kinds(trail, "monitoring_resumed")
    assert resumed and resumed[-1]["periods_done"] == [1, 2] and resumed[-1]["next_period"] == 3


def test_a_changed_study_file_does_not_resume_another_studys_state(tmp_path: Path) -> None:
    study, trail = _setup(tmp_path)
    monitoring.run_monitoring(FakeRunner(study, trail), run_period=ScriptedFederation(crash_at=None), sleep=lambda s: None)  # type: ignore[arg-type]
    runner = FakeRunner(study, trail)
    runner.context.study_sha256 = "ef" * 32  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="monitoring-state.json: holds the state of study 'mon'"):
        monitoring.run_monitoring(runner, run_period=ScriptedFederation(), sleep=lambda s: None)  # type: ignore[arg-type]


def test_interval_schedule_waits_between_periods_from_the_last_start(tmp_path: Path) -> None:
    study, trail = _setup(tmp_path, MONITORING.replace("interval_s = 0", "interval_s = 60"))
    now = [1000.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    monitoring.run_monitoring(FakeRunner(study, trail), run_period=ScriptedFederation(), sleep=sleep, clock=lambda: now[0])  # type: ignore[arg-type]
    assert waits == [60.0, 60.0, 60.0]


def test_a_partner_out_of_budget_stops_the_study_cleanly(tmp_path: Path) -> None:
    study, trail = _setup(tmp_path)
    federation = ScriptedFederation(refuse={3: ("site-b", "privacy")})
    runner = FakeRunner(study, trail)
    monitoring.run_monitoring(runner, run_period=federation, sleep=lambda s: None)  # type: ignore[arg-type]
    assert [period for period, _ in federation.sent] == [1, 2, 3]
    section = runner.monitoring
    assert section is not None
    assert section["stopped"]["period"] == 3 and section["stopped"]["partner"] == "site-b"
    assert "'privacy'" in section["stopped"]["reason"]
    assert [(p["period"], p["status"]) for p in section["periods"]] == [(1, "completed"), (2, "completed"), (3, "stopped")]
    assert not monitoring.resumable(section)
    assert _kinds(trail, "monitoring_stopped")[0]["clause"] == "privacy"


def test_a_missing_snapshot_stops_resumably(tmp_path: Path) -> None:
    study, trail = _setup(tmp_path)
    runner = FakeRunner(study, trail)
    monitoring.run_monitoring(runner, run_period=ScriptedFederation(refuse={2: ("site-a", "monitoring.snapshot")}),  # type: ignore[arg-type]
                              sleep=lambda s: None)
    assert monitoring.resumable(runner.monitoring)


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_alerts_reach_the_file_and_a_webhook_on_127_0_0_1(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
        study, trail = _setup(tmp_path, MONITORING.replace("periods = 4", f'periods = 4\nalert_file = "alerts.jsonl"\nwebhook_url = "{url}"'))
        runner = FakeRunner(study, trail)
        monitoring.run_monitoring(runner, run_period=ScriptedFederation(), sleep=lambda s: None)  # type: ignore[arg-type]
    finally:
        server.shutdown()
        thread.join()
    assert runner.monitoring is not None
    alerts = runner.monitoring["alerts"]
    assert alerts
    lines = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [line["message"] for line in lines] == [a["message"] for a in alerts]
    assert [body["message"] for body in _Receiver.received] == [a["message"] for a in alerts]
    assert all(body["study"] == "mon" for body in _Receiver.received)


def test_a_failing_webhook_is_logged_in_the_trail_and_the_study_goes_on(tmp_path: Path) -> None:
    with HTTPServer(("127.0.0.1", 0), _Receiver) as closed:
        port = closed.server_address[1]  # bound then closed: nothing listens there
    study, trail = _setup(tmp_path, MONITORING.replace("periods = 4", f'periods = 4\nwebhook_url = "http://127.0.0.1:{port}/x"'))
    runner = FakeRunner(study, trail)
    monitoring.run_monitoring(runner, run_period=ScriptedFederation(), sleep=lambda s: None)  # type: ignore[arg-type]
    assert runner.monitoring is not None and len(runner.monitoring["periods"]) == 4
    failures = _kinds(trail, "monitoring_alert_sink_failed")
    assert failures and failures[0]["sink"] == "webhook" and len(failures) == len(runner.monitoring["alerts"])


def test_a_reference_baseline_must_be_a_monitoring_baseline_file(tmp_path: Path) -> None:
    bad = tmp_path / "ref.json"
    bad.write_text(json.dumps({"models": {"deployed": {"pooled": {"accuracy": {"value": "high"}}}}}))
    with pytest.raises(ConfigError, match=r"ref.json: models.deployed.pooled.accuracy: expected \{value, variance\}"):
        monitoring.load_reference(bad)
    assert sha256_file(bad)  # untouched
