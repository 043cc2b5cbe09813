"""The CLIs' process lifetime and input edges: nothing of Flower outlives them, and a bad port is one line.

The SuperLink runs in a session of its own and starts `flower-superexec` in another, which starts
`flwr-serverapp`; a partner's `flower-supernode` starts `flower-superexec` too. A CLI killed with
SIGKILL runs no cleanup: its watchdog (`federated.runtime.reaper`) must end them all anyway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from federated.local.localhost import free_port
from federated.runtime.flower import wait_for_port
from tests.e2e.conftest import write_study

FLOWER_PROGRAMS = ("flower-superlink", "flower-superexec", "flwr-serverapp")
NODE_PROGRAMS = ("flower-supernode", "flower-superexec")
WAIT_S = 30  # the reaper's grace period is 5 s; Flower's own shutdown takes a few more


def _processes_of_run(flwr_home: Path, port: int) -> dict[int, list[str]]:
    """Processes whose environment holds this run's private FLWR_HOME, or whose command line names its port."""
    home = f"FLWR_HOME={flwr_home}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if home in environment or any(a == str(port) or a.endswith(f":{port}") for a in argv):
            found[int(entry.name)] = argv
    return found


def _programs(processes: dict[int, list[str]]) -> set[str]:
    return {Path(arg).name for argv in processes.values() for arg in argv[:2]} & set(FLOWER_PROGRAMS + NODE_PROGRAMS)


def _kill_left_overs(flwr_home: Path, port: int) -> None:
    for pid in _processes_of_run(flwr_home, port):  # never leave a failed run's processes behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_no_flower_process_outlives_a_coordinator_cli_killed_with_sigkill(tmp_path, hospitals):
    port = free_port()
    study = write_study(tmp_path, hospitals, min_cohort=2, cohort_timeout_s=240)  # no partner ever comes
    flwr_home = (tmp_path / "out" / ".flwr").resolve()
    environment = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1")
    with open(tmp_path / "coordinator.log", "wb") as log:
        cli = subprocess.Popen([sys.executable, "-m", "federated.server", "--study", str(study), "--insecure", "--port", str(port)],
                               env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, timeout_s=120, process=cli)
        # The ServerApp is up and waiting for the cohort once it has written study_started.
        trail = tmp_path / "out" / "latest" / "coordinator-trail.jsonl"
        assert _wait_for(lambda: trail.is_file() and b'"study_started"' in trail.read_bytes(), 180), (
            (tmp_path / "coordinator.log").read_text())
        assert _wait_for(lambda: _programs(_processes_of_run(flwr_home, port)) == set(FLOWER_PROGRAMS), 30), (
            _processes_of_run(flwr_home, port))

        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()

        assert _wait_for(lambda: not _processes_of_run(flwr_home, port), WAIT_S), (
            f"still running {WAIT_S} s after the coordinator CLI was killed: {_processes_of_run(flwr_home, port)}")
    finally:
        if cli.poll() is None:
            cli.kill()
        _kill_left_overs(flwr_home, port)


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_no_flower_process_outlives_a_partner_cli_killed_with_sigkill(tmp_path, partners):
    runtime_port, nowhere = free_port(), free_port()  # the coordinator never answers: the node keeps retrying
    workdir = tmp_path / "node"
    flwr_home = (workdir / ".flwr").resolve()
    partner = partners[0]
    environment = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1")
    with open(tmp_path / "node.log", "wb") as log:
        cli = subprocess.Popen([sys.executable, "-m", "federated.client", "--data", str(partner.data), "--manifest",
                                str(partner.manifest), "--coordinator", f"127.0.0.1:{nowhere}", "--insecure",
                                "--port", str(runtime_port), "--workdir", str(workdir)],
                               env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert _wait_for(lambda: _programs(_processes_of_run(flwr_home, runtime_port)) == set(NODE_PROGRAMS), 120), (
            (tmp_path / "node.log").read_text())
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
        assert _wait_for(lambda: not _processes_of_run(flwr_home, runtime_port), WAIT_S), (
            f"still running {WAIT_S} s after the partner CLI was killed: {_processes_of_run(flwr_home, runtime_port)}")
    finally:
        if cli.poll() is None:
            cli.kill()
        _kill_left_overs(flwr_home, runtime_port)


@pytest.mark.parametrize("port", ["99999", "0"])
def test_a_port_out_of_range_is_one_line_and_exit_code_3(tmp_path, hospitals, port):
    study = write_study(tmp_path, hospitals)
    done = subprocess.run([sys.executable, "-m", "federated.server", "--study", str(study), "--insecure", "--port", port],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "--port" in done.stderr and port in done.stderr
