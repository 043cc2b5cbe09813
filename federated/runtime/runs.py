"""Run folders: each coordinator run writes into its own folder under the study's `output_dir`.

    OUTPUT_DIR/
      coordinator.key, .pub   the coordinator's signing key (the default `--key`), shared by every run
      .flwr/                  the Flower home of the SuperLink the coordinator CLI starts
      runs/RUN_ID/            one run: coordinator-trail.jsonl and its checkpoints, submitted-study.toml,
                              results.json, report.md, plots, models/, superlink.log
      latest                  a symlink to the newest run's folder (`OUTPUT_DIR/latest/results.json`)

A run folder is created once and never reused: a second run gets a new RUN_ID (a UTC timestamp),
so a failed re-run cannot replace the files of the run before it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from federated.errors import ConfigError

RUNS = "runs"
LATEST = "latest"
RUN_CONFIG_RUN_DIR = "run-dir"  # the run folder, as the coordinator CLI passes it to the ServerApp
RUN_CONFIG_EXPECTED_WAIT = "expected-wait-s"  # the CLI's --wait-for-partners, overriding the study's expected_wait_s
_RUN_MARKERS = ("coordinator-trail.jsonl", "results.json")


def new_run_dir(output_dir: Path, *, now: datetime | None = None) -> Path:
    """Create OUTPUT_DIR/runs/RUN_ID for a new run; never an existing folder."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%SZ")
    runs = Path(output_dir) / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 100):
        run_dir = runs / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        return run_dir
    raise ConfigError(f"{runs}: cannot create a new run folder for {stamp}: refusing to overwrite an earlier run")


def mark_latest(output_dir: Path, run_dir: Path) -> None:
    """Point OUTPUT_DIR/latest at `run_dir` (a relative symlink, replaced atomically)."""
    link = Path(output_dir) / LATEST
    if link.exists() and not link.is_symlink():
        raise ConfigError(f"{link}: exists and is not the `latest` run link; move it away")
    staging = link.with_name(f".{LATEST}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    staging.symlink_to(Path(run_dir).relative_to(Path(output_dir)), target_is_directory=True)
    os.replace(staging, link)


def run_directories(output_dir: Path) -> list[Path]:
    """The run folders under OUTPUT_DIR/runs, oldest first."""
    runs = Path(output_dir) / RUNS
    return sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name) if runs.is_dir() else []


def run_directory(path: Path) -> Path:
    """The folder of one run: `path` itself when it is one (or anything else: an extracted pack, an older,
    flat output directory), else the run its `latest` link names, else its newest run folder."""
    path = Path(path)
    if any((path / marker).exists() for marker in _RUN_MARKERS):
        return path
    latest = path / LATEST
    if latest.is_dir():
        return latest.resolve()
    runs = run_directories(path)
    return runs[-1] if runs else path


def output_dir_of(run_dir: Path) -> Path:
    """The study's output_dir a run folder belongs to (the folder itself when it is not under runs/)."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent if run_dir.parent.name == RUNS else run_dir
