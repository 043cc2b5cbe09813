"""The watchdog behind process hygiene: it ends exactly the processes carrying its command's tag, once
that command is gone (SIGKILL included), and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from federated.runtime.reaper import TAG_VARIABLE, reap, tagged_processes

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="the reaper reads /proc (Linux)")


def _sleeper(tag: str | None) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k != TAG_VARIABLE}
    if tag is not None:
        environment[TAG_VARIABLE] = tag
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=environment, start_new_session=True)


def _gone(process: subprocess.Popen, timeout_s: float = 20) -> bool:
    try:
        process.wait(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        return False


def test_reap_ends_tagged_processes_and_spares_the_others():
    tagged, other, untagged = _sleeper("t-1"), _sleeper("t-2"), _sleeper(None)
    try:
        assert tagged_processes("t-1") == [tagged.pid]
        reap("t-1", grace_s=2)
        assert _gone(tagged, 0.1) and tagged.returncode == -signal.SIGTERM
        assert other.poll() is None and untagged.poll() is None
    finally:
        for process in (tagged, other, untagged):
            process.kill()
            process.wait()


def test_reap_kills_a_process_that_ignores_sigterm():
    environment = dict(os.environ, **{TAG_VARIABLE: "t-3"})
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('ready', flush=True); time.sleep(120)"], env=environment, stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout.readline() == "ready\n"
        reap("t-3", grace_s=0.5)
        assert _gone(stubborn, 5) and stubborn.returncode == -signal.SIGKILL
    finally:
        stubborn.kill()
        stubborn.wait()


def test_a_command_killed_with_sigkill_leaves_no_tagged_process():
    """A command starts the watchdog and a tagged child in a session of its own, then dies by SIGKILL."""
    command = (
        "import subprocess, sys, time\n"
        "from pathlib import Path\n"
        "from federated.runtime.flower import flower_env, start_reaper\n"
        "start_reaper()\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], env=flower_env(Path('.')),\n"
        "                         start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", command], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z"
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
