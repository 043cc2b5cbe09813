"""Fixtures for encrypted aggregation: the demo hospitals, their node signing keys, a study's keys that
pin them (the key ceremony), an in-process federation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flwr.supercore.task_identity import TaskIdentity

from crypto import public_key_bytes
from crypto.he_keys import KeyFiles, generate_context, write_key_files
from examples.hospitals.prepare import HOSPITALS, prepare
from federated.audit.keys import load_or_create_identity

STUDY = "he-study"


@pytest.fixture(scope="session")
def hospitals(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hospitals")
    prepare(root)
    return root


@pytest.fixture(scope="session")
def node_keys(tmp_path_factory) -> Path:
    """Each hospital's node signing key (NAME.key, NAME.key.pub), made before the key ceremony pins them."""
    directory = tmp_path_factory.mktemp("node-keys")
    for name, *_ in HOSPITALS:
        load_or_create_identity(directory / f"{name}.key")
    return directory


def pinned(node_keys: Path) -> dict[str, bytes]:
    return {name: public_key_bytes(load_or_create_identity(node_keys / f"{name}.key")[0].public_key) for name, *_ in HOSPITALS}


def install_node_keys(node_keys: Path, nodes: Path) -> None:
    """Put each hospital's pinned key where its node (`node_config(..., nodes)`) looks for it."""
    for name, *_ in HOSPITALS:
        (nodes / name).mkdir(parents=True, exist_ok=True)
        for suffix in ("key", "key.pub"):
            shutil.copy(node_keys / f"{name}.{suffix}", nodes / name / f"node.{suffix}")


@pytest.fixture(scope="session")
def keys(tmp_path_factory, node_keys) -> KeyFiles:
    return write_key_files(generate_context(STUDY, partners=pinned(node_keys)), tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory, node_keys) -> KeyFiles:
    return write_key_files(generate_context("another-study", partners=pinned(node_keys)), tmp_path_factory.mktemp("other-keys"))


@pytest.fixture
def flower_task_identity(monkeypatch):
    # Flower's Message needs the identity a ServerApp process has; give it one.
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def hospital_files(hospitals: Path) -> list[tuple[str, Path, Path]]:
    return [(name, hospitals / "data" / f"{name}.csv", hospitals / "data" / f"{name}.toml") for name, *_ in HOSPITALS]
