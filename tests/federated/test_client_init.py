"""`python -m federated.client init` (a manifest and a safe contract template for a data file) and
`check`'s connectivity and model-fit verdicts."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import date
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from accord.hashing import sha256_file
from federated.client.check import connectivity, model_fit
from federated.client.data import load_manifest, load_partner_data
from federated.client.init import contract_template, manifest_for, read_columns
from federated.errors import ConfigError
from federated.study import load_study
from privacy.contract import load_contract

CSV = "age,bmi,site,group,label\n50,22.5,x,old,1\n30,19.0,y,young,0\n"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "federated.client", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "clinic data.csv"
    path.write_text(CSV)
    return path


def test_init_writes_a_manifest_the_node_loads_and_a_contract_that_loads(data, tmp_path):
    done = _run("init", "--data", str(data), "--label", "label", "--subgroup", "group", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    manifest = load_manifest(tmp_path / "out" / "clinic-data.toml")
    assert manifest.features == ["age", "bmi"]  # numeric columns only, label and subgroup left out
    assert (manifest.label, manifest.subgroup, manifest.sha256) == ("label", "group", sha256_file(data))
    assert manifest.release_per_partner is False
    assert load_partner_data(data, manifest).size == 2
    contract = load_contract(tmp_path / "out" / "clinic-data.contract.toml")
    assert contract.data_sha256 == sha256_file(data)


def test_the_contract_template_has_safe_defaults():
    text = contract_template(dataset_id="d", data_sha256="a" * 64, coordinator=None, today=date(2026, 1, 1))
    assert 'allowed_purposes = ["evaluation"]' in text
    assert not [line for line in text.splitlines() if line.startswith("allow_exact_statistics")]  # DP stays required
    assert 'allowed_coordinators = ["' + "0" * 64 + '"]' in text  # matches no coordinator until filled in
    assert "expires = 2027-01-01" in text


def test_the_template_requires_dp(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(contract_template(dataset_id="d", data_sha256="a" * 64, coordinator="b" * 64, today=date(2026, 1, 1)))
    contract = load_contract(path)
    assert contract.protections.require_dp and not contract.protections.allow_exact_statistics
    assert contract.allowed_coordinators == ["b" * 64] and not contract.release_per_partner


def test_init_refuses_to_overwrite_without_force(data, tmp_path):
    assert _run("init", "--data", str(data), "--out", str(tmp_path / "out")).returncode == 0
    again = _run("init", "--data", str(data), "--out", str(tmp_path / "out"))
    assert again.returncode == 3
    assert "already there; pass --force" in again.stderr
    assert _run("init", "--data", str(data), "--out", str(tmp_path / "out"), "--force").returncode == 0


def test_an_unknown_label_column_is_named_with_the_columns_there_are(data):
    with pytest.raises(ConfigError, match=r"--label 'outcome': .* has no such column \(its columns: age, bmi, site, group, label\)"):
        manifest_for(data, read_columns(data), label="outcome", subgroup=None, dataset_id="d")


def test_parquet_columns_are_read_from_its_schema(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1.0, 2.0], "label": [0, 1]}), tmp_path / "d.parquet")
    assert read_columns(tmp_path / "d.parquet") == {"x": "double", "label": "int64"}


# --- check: connectivity and model fit ----------------------------------------------------------

def test_a_listening_coordinator_is_reachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        result = connectivity(f"127.0.0.1:{server.getsockname()[1]}")
    assert result.ok and result.clause == "connectivity"


def test_a_closed_port_is_not_reachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = connectivity(f"127.0.0.1:{port}", timeout_s=2)
    assert not result.ok and f"cannot reach 127.0.0.1:{port}" in result.detail


def _onnx(path: Path, width: int) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["probabilities"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, width])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _manifest(tmp_path: Path, features: list[str]):
    path = tmp_path / "m.toml"
    path.write_text(f'dataset_id = "d"\nfeatures = {features!r}\nlabel = "label"\nsha256 = "{"a" * 64}"\n'.replace("'", '"'))
    return load_manifest(path)


def test_a_model_that_takes_another_number_of_features_does_not_fit(tmp_path):
    _onnx(tmp_path / "m.onnx", 3)
    (tmp_path / "s.toml").write_text('id = "s"\npurpose = "evaluation"\noutput_dir = "o"\n[[models]]\nname = "m"\npath = "m.onnx"\n')
    study = load_study(tmp_path / "s.toml")
    (verdict,) = model_fit(study, _manifest(tmp_path, ["age", "bmi"]))
    assert not verdict.ok and verdict.detail == "m takes 3 features, the manifest lists 2"
    (verdict,) = model_fit(study, _manifest(tmp_path, ["a", "b", "c"]))
    assert verdict.ok
