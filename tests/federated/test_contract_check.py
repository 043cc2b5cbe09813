"""`python -m federated.client check`: the node's contract verdict on a study, before it starts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from examples.hospitals.prepare import prepare
from federated.client.check import check_study

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo-root")
    (root / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "demo-evaluation.toml", root / "configs")
    prepare(root / "demo")
    return root


def _check(demo: Path, hospital: str, study: Path | None = None, **extra: object):
    data = demo / "demo" / "data"
    return check_study(
        data / f"{hospital}.contract.toml", study or demo / "configs" / "demo-evaluation.toml",
        coordinator_key=_fingerprint(demo),
        data=data / f"{hospital}.csv", manifest=data / f"{hospital}.toml", records=None, **extra,
    )


def _fingerprint(demo: Path) -> str:
    from crypto import Identity

    return Identity.load(demo / "demo" / "keys" / "coordinator.key").fingerprint


@pytest.mark.parametrize("hospital", ["hospital-a", "hospital-b", "hospital-c"])
def test_every_demo_hospital_accepts_the_demo_study(demo, hospital):
    results = _check(demo, hospital)
    assert all(r.ok for r in results), [r for r in results if not r.ok]


def test_hospital_b_refuses_training(demo, tmp_path):
    study = tmp_path / "training.toml"
    study.write_text(
        'id = "t"\npurpose = "training"\noutput_dir = "out"\n[training]\narchitecture = "mlp"\nnum_features = 30\n'
        '[training.privacy]\nnoise_multiplier = 1.0\n[evaluation.privacy]\nenabled = true\nepsilon = 0.5\n'
        '[governance]\njurisdiction = "EU"\nlegal_basis = "consent"\naccepted_licences = ["accord-demo-research-1.0"]\n'
        "retention_days = 30\n"
    )
    verdicts = {r.clause: r for r in _check(demo, "hospital-b", study)}
    assert not verdicts["allowed_purposes"].ok and "'training'" in verdicts["allowed_purposes"].detail
    # DP-SGD's ε for this dataset's size plus the evaluation's ε exceeds hospital-b's cap of 2.
    assert not verdicts["protections.max_epsilon_per_release"].ok
    assert {r.clause for r in _check(demo, "hospital-a", study) if not r.ok} == set()


def test_cli_exit_code_and_json(demo):
    data = demo / "demo" / "data"
    base = [sys.executable, "-m", "federated.client", "check", "--contract", str(data / "hospital-b.contract.toml"),
            "--study", str(demo / "configs" / "demo-evaluation.toml"), "--json"]
    refused = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 5  # no coordinator key given: that clause cannot pass
    verdict = json.loads(refused.stdout)
    assert not verdict["accepted"]
    assert [c["clause"] for c in verdict["clauses"] if not c["ok"]] == ["allowed_coordinators"]
    accepted = subprocess.run(base + ["--coordinator-key", str(demo / "demo" / "keys" / "coordinator.key.pub")],
                              capture_output=True, text=True, timeout=60)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
