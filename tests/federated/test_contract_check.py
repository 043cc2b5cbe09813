"""`python -m federated.client check`: the node's contract verdict on a study, before it starts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from examples.hospitals.prepare import COORDINATOR_KEY, prepare
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

    return Identity.load(demo / "demo" / COORDINATOR_KEY).fingerprint


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
    accepted = subprocess.run(base + ["--coordinator-key", f"{demo / 'demo' / COORDINATOR_KEY}.pub"],
                              capture_output=True, text=True, timeout=60)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


COORDINATOR = "c" * 64


def _contract(tmp_path: Path, *, purposes: list[str], max_epsilon_per_study: float = 50.0) -> Path:
    path = tmp_path / "contract.toml"
    path.write_text(
        f'dataset_id = "d"\ndata_sha256 = "{"a" * 64}"\nlicence = "research-1.0"\nprovenance = "test"\n'
        f'sensitivity = "confidential"\njurisdictions = ["EU"]\nlegal_bases = ["consent"]\n'
        f"allowed_purposes = {json.dumps(purposes)}\nallowed_coordinators = [\"{COORDINATOR}\"]\n"
        "retention_days = 90\nexpires = 2099-01-01\n"
        f"[budget]\nmax_epsilon_per_study = {max_epsilon_per_study}\nmax_epsilon_total = 100.0\n"
    )
    return path


def _training_study(tmp_path: Path, *, rounds: int = 2) -> Path:
    path = tmp_path / "training.toml"
    path.write_text(
        f'id = "t"\npurpose = "training"\noutput_dir = "out"\nrounds = {rounds}\n'
        '[training]\narchitecture = "mlp"\nnum_features = 4\n'
        "[training.privacy]\nnoise_multiplier = 1.0\naccountant = \"rdp\"\n[evaluation.privacy]\nenabled = true\nepsilon = 0.5\n"
        '[governance]\njurisdiction = "EU"\nlegal_basis = "consent"\naccepted_licences = ["research-1.0"]\n'
        "retention_days = 30\n"
    )
    return path


def test_a_training_only_contract_refuses_the_final_evaluation(tmp_path):
    """A training study ends with an evaluation task (purpose "evaluation"): a contract that allows only
    training accepts every training round and refuses that last task, as the node would."""
    from federated.client.check import check_study_tasks

    contract, study = _contract(tmp_path, purposes=["training"]), _training_study(tmp_path, rounds=2)
    _, tasks = check_study_tasks(contract, study, coordinator_key=COORDINATOR, data=None, manifest=None, records=200)
    verdicts = {task.label: task for task in tasks}
    assert [t.message_type for t in tasks] == ["train", "train", "query.evaluate", "query.seal"]
    assert verdicts["round 1"].accepted and verdicts["round 2"].accepted
    final = verdicts["round 3: final evaluation"]
    assert not final.accepted
    assert [c.clause for c in final.clauses if not c.ok] == ["allowed_purposes"]
    merged = {r.clause: r for r in check_study(contract, study, coordinator_key=COORDINATOR, data=None, manifest=None,
                                                records=200)}
    assert not merged["allowed_purposes"].ok
    assert "final evaluation" in merged["allowed_purposes"].detail and "'evaluation'" in merged["allowed_purposes"].detail


def test_a_contract_allowing_both_purposes_accepts_every_task_of_a_training_study(tmp_path):
    from federated.client.check import check_study_tasks

    contract, study = _contract(tmp_path, purposes=["training", "evaluation"]), _training_study(tmp_path)
    _, tasks = check_study_tasks(contract, study, coordinator_key=COORDINATOR, data=None, manifest=None, records=200)
    assert all(task.accepted for task in tasks), [(t.label, [c for c in t.clauses if not c.ok]) for t in tasks]


def test_the_seal_uses_no_data_and_is_not_checked_against_the_contract(tmp_path):
    from federated.client.check import check_study_tasks

    contract, study = _contract(tmp_path, purposes=["evaluation"]), _training_study(tmp_path)
    _, tasks = check_study_tasks(contract, study, coordinator_key=COORDINATOR, data=None, manifest=None, records=200)
    assert (tasks[-1].label, tasks[-1].clauses, tasks[-1].accepted) == ("seal", [], True)


def test_rounds_that_together_exceed_the_per_study_cap_are_refused_from_the_round_that_would_exceed_it(tmp_path):
    """The budget is charged task by task in a fresh ledger, as the node's ledger would be."""
    from federated.client.check import check_study_tasks
    from federated.client.costs import round_cost
    from federated.study import load_study

    study_path = _training_study(tmp_path, rounds=3)
    training = load_study(study_path)
    per_round = round_cost(evaluation=training.evaluation, training=training.training, round_number=1, num_examples=200)
    cap = 2.5 * per_round.private.epsilon  # rounds 1 and 2 fit, round 3 does not
    contract = _contract(tmp_path, purposes=["training", "evaluation"], max_epsilon_per_study=cap)
    _, tasks = check_study_tasks(contract, study_path, coordinator_key=COORDINATOR, data=None, manifest=None, records=200)
    privacy = {task.label: next(c for c in task.clauses if c.clause == "privacy") for task in tasks if task.clauses}
    assert privacy["round 1"].ok and privacy["round 2"].ok
    assert not privacy["round 3"].ok
