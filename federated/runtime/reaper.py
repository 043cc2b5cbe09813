"""The watchdog that lets no Flower process outlive the Accord command that started it.

Flower's SuperLink starts `flower-superexec` in a session of its own, which starts
`flwr-serverapp`; a SuperNode starts `flower-superexec`, which starts `flwr-clientapp`. So
neither a process group nor a session holds them all, and a command killed with SIGKILL runs
no cleanup. What they do share is the environment: every Flower process an Accord command
starts (`federated.runtime.flower.flower_env`) carries the command's tag in `ACCORD_PROCESS_TAG`,
and Flower passes its environment on to what it spawns.

`python -m federated.runtime.reaper PARENT_PID TAG` runs beside the command (started by
`federated.runtime.flower.start_reaper`, in a session of its own so that a terminal's signals
do not reach it), waits until PARENT_PID is no longer its parent (the command exited or was
killed), then sends SIGTERM to every process carrying TAG, SIGKILL to those still there after a
grace period, and exits. Linux only (/proc); elsewhere it does nothing.

This module must never signal a process that does not carry the tag, and imports nothing of
Accord: it starts in milliseconds and cannot fail on a broken install.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

TAG_VARIABLE = "ACCORD_PROCESS_TAG"
POLL_S = 0.2
GRACE_S = 5.0


def tagged_processes(tag: str) -> list[int]:
    """Processes (other than this one) whose environment carries `ACCORD_PROCESS_TAG=tag`."""
    wanted = f"{TAG_VARIABLE}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:  # exited meanwhile, or not ours to read
            continue
        if wanted in environment.split(b"\0"):
            found.append(int(entry.name))
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def reap(tag: str, *, grace_s: float = GRACE_S) -> None:
    """SIGTERM every tagged process, then SIGKILL whatever is left (or was spawned meanwhile)."""
    _signal_all(tagged_processes(tag), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    for _ in range(10):  # a process may spawn a child while it dies: sweep until none is left
        if not left:
            return
        _signal_all(left, signal.SIGKILL)
        time.sleep(POLL_S)
        left = tagged_processes(tag)


def watch(parent: int, tag: str) -> None:
    """Wait for `parent` to go (this process is re-parented when it does), then reap."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # the parent handles Ctrl-C; this one outlives it on purpose
    while os.getppid() == parent:
        time.sleep(POLL_S)
    reap(tag)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit() or not argv[1]:
        print("usage: python -m federated.runtime.reaper PARENT_PID TAG", file=sys.stderr)
        return 2
    if Path("/proc/self/environ").exists():
        watch(int(argv[0]), argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
