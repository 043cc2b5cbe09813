"""Shared test setup: Flower never phones home, every test gets its own FLWR_HOME, and the monitoring example
runs at most once per session for the tests that read its outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"


@pytest.fixture(autouse=True)
def private_flwr_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / ".flwr-home"))


@pytest.fixture(scope="session")
def monitoring_example_out(tmp_path_factory) -> Path:
    """The monitoring example (`examples.monitoring.run_monitoring`, real Flower processes) run once per session
    under a temporary folder; that folder (data/, nodes/, output/ with output/latest the run's directory).
    The e2e monitoring test and the dashboard's browser test both read it."""
    from examples.monitoring.run_monitoring import main

    out = tmp_path_factory.mktemp("monitoring-example")
    with pytest.MonkeyPatch.context() as patch:  # session-scoped: set up before the per-test FLWR_HOME
        patch.setenv("FLWR_HOME", str(out / ".flwr-home"))
        code = main(out)
    assert code == 0, f"the monitoring example failed; its nodes' logs: {out / 'nodes'}"
    return out
