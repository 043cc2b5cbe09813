"""The encrypted demo study in configs/ loads with the keys the README's key-ceremony command makes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from federated.server.encryption import load_study_context
from federated.study import load_study

ROOT = Path(__file__).resolve().parents[2]


def test_the_encrypted_demo_study_loads_with_freshly_made_keys(tmp_path, hospitals):
    (tmp_path / "configs").mkdir()
    study = tmp_path / "configs" / "demo-evaluation-encrypted.toml"
    shutil.copy(ROOT / "configs" / study.name, study)
    shutil.copytree(hospitals / "models", tmp_path / "demo" / "models")
    done = subprocess.run([sys.executable, "-m", "crypto.keys", "init", "--study", "demo-evaluation-he",
                           "--out", str(tmp_path / "demo" / "keys"), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    public = load_study_context(load_study(study), study)
    assert public is not None and public.study_id == "demo-evaluation-he"
