"""Key custody and study validation: the coordinator never loads a secret key, partners refuse what is not one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from federated.errors import ConfigError
from federated.local.localhost import free_port
from federated.server.encryption import load_study_context
from federated.study import load_study
from tests.he.conftest import STUDY


def _study_file(tmp_path: Path, hospitals: Path, context: Path, *, study_id: str = STUDY, extra: str = "") -> Path:
    path = tmp_path / "study.toml"
    path.write_text(f"""
id = "{study_id}"
purpose = "evaluation"
output_dir = "{tmp_path / 'out'}"
[[models]]
name = "logreg"
path = "{hospitals / 'models' / 'logreg.onnx'}"
[encryption]
enabled = true
public_context = "{context}"
{extra}
""", encoding="utf-8")
    return path


def test_the_coordinator_cli_refuses_a_secret_context_with_exit_code_3(tmp_path, hospitals, keys):
    study = _study_file(tmp_path, hospitals, keys.secret)
    done = subprocess.run(
        [sys.executable, "-m", "federated.server", "--study", str(study), "--insecure", "--port", str(free_port())],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 3, done.stderr
    message = " ".join(done.stderr.split())
    assert "encryption.public_context" in message and "holds a secret key: the coordinator must never load one" in message
    assert not (tmp_path / "out" / "runs").exists()  # refused before anything started (no run folder, no SuperLink log)


def test_the_study_loader_refuses_a_secret_context(tmp_path, hospitals, keys):
    path = _study_file(tmp_path, hospitals, keys.secret)
    with pytest.raises(ConfigError, match="holds a secret key"):
        load_study_context(load_study(path), path)


def test_the_public_context_loads_and_names_its_fingerprint(tmp_path, hospitals, keys):
    path = _study_file(tmp_path, hospitals, keys.public)
    public = load_study_context(load_study(path), path)
    assert public is not None and public.study_id == STUDY and len(public.fingerprint) == 64


def test_another_studys_keys_are_refused(tmp_path, hospitals, keys):
    path = _study_file(tmp_path, hospitals, keys.public, study_id="some-other-study")
    with pytest.raises(ConfigError, match="holds the keys of study 'he-study', not 'some-other-study'"):
        load_study_context(load_study(path), path)


def test_robust_aggregators_are_refused_with_encryption(tmp_path, hospitals, keys):
    path = tmp_path / "train.toml"
    path.write_text(f"""
id = "{STUDY}"
purpose = "training"
output_dir = "{tmp_path / 'out'}"
[training]
architecture = "mlp"
num_features = 30
aggregator = "krum"
[encryption]
enabled = true
public_context = "{keys.public}"
""", encoding="utf-8")
    with pytest.raises(ConfigError, match="the 'krum' aggregator needs each partner's update in plaintext"):
        load_study(path)


def test_encryption_without_a_public_context_is_refused(tmp_path, hospitals):
    path = tmp_path / "study.toml"
    path.write_text(_study_file(tmp_path, hospitals, Path("x")).read_text().replace('public_context = "x"\n', ""))
    with pytest.raises(ConfigError, match="public_context is not set"):
        load_study(path)


def test_the_partner_cli_refuses_a_public_context_as_its_secret_context(tmp_path, hospitals, keys):
    done = subprocess.run(
        [sys.executable, "-m", "federated.client", "--data", str(hospitals / "data" / "hospital-a.csv"),
         "--manifest", str(hospitals / "data" / "hospital-a.toml"), "--coordinator", f"127.0.0.1:{free_port()}",
         "--insecure", "--workdir", str(tmp_path / "node"), "--he-secret-context", str(keys.public)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "holds no secret key" in " ".join(done.stderr.split())
