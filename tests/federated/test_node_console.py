"""What a partner's node says: a line per task from its own trail, connection changes once, Flower's options."""

from __future__ import annotations

from pathlib import Path

from federated.audit import AuditTrail
from federated.client.node import ConnectionWatch, NodeLaunch
from federated.client.progress import TaskNarrator, TrailFollower
from federated.client.settings import NodeSettings


def _entry(kind: str, round_number: int | None = 1, **details) -> dict:
    return {"kind": kind, "study": "s1", "round": round_number, "details": details}


def test_an_accepted_task_says_what_it_spent_and_what_is_left():
    narrator = TaskNarrator()
    assert narrator.feed(_entry("task_accepted", count=None)) == []
    assert narrator.feed(_entry("privacy_spent", epsilon=0.5, remaining_epsilon_study=1.5, remaining_epsilon_total=9.5)) == []
    (line,) = narrator.feed(_entry("result_sent"))
    assert line == "study s1, round 1: accepted, result sent; spent ε 0.5, remaining ε 1.5 for this study, 9.5 in total"


def test_an_uncapped_budget_is_said_to_have_no_cap():
    narrator = TaskNarrator()
    narrator.feed(_entry("privacy_spent", epsilon=1.0, remaining_epsilon_study=1.7e308, remaining_epsilon_total=1.7e308))
    assert narrator.feed(_entry("result_sent"))[0].endswith("remaining ε no cap for this study, no cap in total")


def test_a_task_without_dp_says_no_epsilon_was_spent():
    assert TaskNarrator().feed(_entry("result_sent", round_number=2)) == ["study s1, round 2: accepted, result sent; no ε spent"]


def test_a_refusal_names_its_clause():
    (line,) = TaskNarrator().feed(_entry("task_refused", clause="allowed_coordinators", reason="coordinator key not allowed"))
    assert line == "study s1, round 1: [yellow]refused[/] (clause allowed_coordinators): coordinator key not allowed"


def test_after_the_seal_the_node_says_it_is_idle():
    (line,) = TaskNarrator().feed(_entry("result_sent", round_number=None, step="seal"))
    assert "sealed" in line and "idle, waiting for the next study" in line


def test_the_follower_reads_only_what_is_appended_after_it_started(tmp_path):
    trail = AuditTrail(tmp_path / "trail.jsonl", actor="hospital-a")
    trail.append("result_sent", study="old", round=1)
    said: list[str] = []
    follower = TrailFollower(tmp_path / "trail.jsonl", said.append)
    trail.append("task_refused", study="s1", round=1, clause="purpose", reason="training is not allowed")
    follower.read_new()
    assert said == ["study s1, round 1: [yellow]refused[/] (clause purpose): training is not allowed"]


def test_an_unreachable_coordinator_is_said_once_not_at_every_retry():
    said: list[str] = []
    watch = ConnectionWatch("10.0.0.1:9092", said.append)
    for _ in range(5):
        watch.feed("WARNING :  Connection attempt failed, retrying in 3.21 seconds\n")
    watch.feed("INFO :  Connection successful after 20.00 seconds and 6 tries.\n")
    assert len(said) == 2
    assert "unreachable" in said[0] and "again" in said[1]


def _launch(tmp_path: Path, **extra) -> NodeLaunch:
    settings = NodeSettings(partner_id="a", data=tmp_path / "d.csv", manifest=tmp_path / "m.toml", trail=tmp_path / "trail.jsonl",
                            key=tmp_path / "node.key", coordinator_key=None, ledger=tmp_path / "budget.sqlite",
                            max_epsilon_total=float("inf"), max_epsilon_per_study=float("inf"))
    return NodeLaunch(settings, "127.0.0.1:9092", 9094, True, None, tmp_path / ".flwr", **extra)


def test_flowers_health_endpoint_is_passed_through(tmp_path):
    command = _launch(tmp_path, health_server_address="127.0.0.1:9099").command()
    assert command[command.index("--health-server-address") + 1] == "127.0.0.1:9099"


def test_the_log_file_defaults_to_the_workdir(tmp_path):
    assert _launch(tmp_path).log_path == tmp_path / "node.log"
    assert _launch(tmp_path, log_file=tmp_path / "x.log").log_path == tmp_path / "x.log"


def test_the_systemd_example_uses_only_options_the_node_has():
    import re

    import typer

    from federated.client.__main__ import cli

    unit = (Path(__file__).resolve().parents[2] / "examples" / "systemd" / "accord-node.service").read_text()
    exec_start = unit[unit.index("ExecStart="):].split("\n# ")[0]
    used = set(re.findall(r"(--[a-z-]+)", exec_start))
    known = {opt for param in typer.main.get_command(cli).params for opt in param.opts}
    assert used and used <= known, used - known


def test_the_follower_stops_cleanly_and_reads_what_came_last(tmp_path):
    trail = AuditTrail(tmp_path / "trail.jsonl", actor="hospital-a")
    said: list[str] = []
    follower = TrailFollower(tmp_path / "trail.jsonl", said.append, poll_s=60)
    follower.start()
    trail.append("result_sent", study="s1", round=None, step="seal")
    follower.stop()
    assert not follower.is_alive()
    assert said and "idle" in said[0]
