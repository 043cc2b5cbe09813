"""Fixtures for encrypted aggregation: the demo hospitals, a study's keys, an in-process federation."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.supercore.task_identity import TaskIdentity

from crypto.he_keys import KeyFiles, generate_context, write_key_files
from examples.hospitals.prepare import HOSPITALS, prepare

STUDY = "he-study"


@pytest.fixture(scope="session")
def hospitals(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hospitals")
    prepare(root)
    return root


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> KeyFiles:
    return write_key_files(generate_context(STUDY), tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory) -> KeyFiles:
    return write_key_files(generate_context("another-study"), tmp_path_factory.mktemp("other-keys"))


@pytest.fixture
def flower_task_identity(monkeypatch):
    # Flower's Message needs the identity a ServerApp process has; give it one.
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def hospital_files(hospitals: Path) -> list[tuple[str, Path, Path]]:
    return [(name, hospitals / "data" / f"{name}.csv", hospitals / "data" / f"{name}.toml") for name, *_ in HOSPITALS]
