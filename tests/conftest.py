"""Shared test setup: Flower never phones home, and every test gets its own FLWR_HOME."""

from __future__ import annotations

import os

import pytest

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"


@pytest.fixture(autouse=True)
def private_flwr_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / ".flwr-home"))
