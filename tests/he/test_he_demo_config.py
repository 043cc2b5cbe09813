"""The encrypted demo study in configs/ loads with the keys the README's key-ceremony command makes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crypto.he_keys import generate_context, write_key_files
from examples.hospitals.prepare import HOSPITALS
from federated.audit.keys import load_or_create_identity
from federated.errors import ConfigError
from federated.server.encryption import load_study_context
from federated.study import load_study

ROOT = Path(__file__).resolve().parents[2]


def test_the_encrypted_demo_study_loads_with_freshly_made_keys(tmp_path, hospitals):
    (tmp_path / "configs").mkdir()
    study = tmp_path / "configs" / "demo-evaluation-encrypted.toml"
    shutil.copy(ROOT / "configs" / study.name, study)
    shutil.copytree(hospitals / "models", tmp_path / "demo" / "models")
    pins = []
    for name, *_ in HOSPITALS:  # each hospital's node signing key, whose .pub it hands to the ceremony
        load_or_create_identity(tmp_path / "node-keys" / f"{name}.key")
        pins += ["--partner", f"{name}={tmp_path / 'node-keys' / f'{name}.key.pub'}"]
    done = subprocess.run([sys.executable, "-m", "crypto.keys", "init", "--study", "demo-evaluation-he",
                           "--out", str(tmp_path / "demo" / "keys"), *pins, "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    public = load_study_context(load_study(study), study)
    assert public is not None and public.study_id == "demo-evaluation-he"
    assert sorted(public.partner_keys) == [name for name, *_ in HOSPITALS]


def test_an_encrypted_study_whose_keys_pin_no_partners_is_refused(tmp_path, hospitals):
    (tmp_path / "configs").mkdir()
    study = tmp_path / "configs" / "demo-evaluation-encrypted.toml"
    shutil.copy(ROOT / "configs" / study.name, study)
    shutil.copytree(hospitals / "models", tmp_path / "demo" / "models")
    write_key_files(generate_context("demo-evaluation-he"), tmp_path / "demo" / "keys")
    with pytest.raises(ConfigError, match="pins 0 partner key\\(s\\); an encrypted study's cohort is its pinned partners"):
        load_study_context(load_study(study), study)
