"""Key ceremony and custody: what each HE key file holds, and who may load it."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import tenseal as ts

from accord.errors import ExitCode
from crypto.errors import HEKeyError
from crypto.he_keys import (
    KeyFiles,
    generate_context,
    load_public_context,
    load_secret_context,
    write_key_files,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    return write_key_files(generate_context("study-keys"), tmp_path_factory.mktemp("keys"))


def _doc(path: Path) -> dict:
    return json.loads(path.read_text())


def test_default_parameters_meet_at_least_128_bit_security() -> None:
    params = generate_context("s").public.parameters
    assert params.security_bits >= 128
    assert params.log_q <= 109 and params.poly_modulus_degree == 4096


def test_public_context_file_holds_no_key_material(key_files: KeyFiles) -> None:
    public = _doc(key_files.public)
    secret = _doc(key_files.secret)
    assert "secret_key" not in public and public["kind"] == "public"
    assert secret["secret_key"][:64] not in key_files.public.read_text()
    assert "secret_key" not in _doc(key_files.params)


def test_coordinator_loader_refuses_a_secret_context(key_files: KeyFiles) -> None:
    with pytest.raises(HEKeyError, match="holds a secret key: the coordinator must never load one"):
        load_public_context(key_files.secret)


def test_coordinator_loader_refuses_a_raw_tenseal_context_with_a_secret_key(tmp_path: Path) -> None:
    context = ts.context(ts.SCHEME_TYPE.BFV, poly_modulus_degree=4096, plain_modulus=1032193)
    path = tmp_path / "tenseal.ctx"
    path.write_bytes(context.serialize(save_secret_key=True))
    with pytest.raises(HEKeyError, match="raw TenSEAL context that holds a secret key"):
        load_public_context(path)


def test_partner_loader_requires_the_secret_key(key_files: KeyFiles) -> None:
    with pytest.raises(HEKeyError, match="holds no secret key"):
        load_secret_context(key_files.public)


def test_both_files_carry_the_same_verified_fingerprint(key_files: KeyFiles) -> None:
    public = load_public_context(key_files.public)
    secret = load_secret_context(key_files.secret)
    assert public.fingerprint == secret.fingerprint == _doc(key_files.params)["fingerprint"]
    assert public == secret.public


def test_each_study_gets_its_own_keys_and_fingerprint() -> None:
    first, second = generate_context("same-study"), generate_context("same-study")
    assert first.fingerprint != second.fingerprint
    assert first.secret_key != second.secret_key


def test_a_tampered_public_context_is_refused(key_files: KeyFiles, tmp_path: Path) -> None:
    doc = _doc(key_files.public)
    doc["study_id"] = "another-study"
    path = tmp_path / "public.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(HEKeyError, match="does not match the file's contents"):
        load_public_context(path)


def test_a_secret_key_that_does_not_match_its_commitment_is_refused(key_files: KeyFiles, tmp_path: Path) -> None:
    doc = _doc(key_files.secret)
    doc["secret_key"] = json.loads(generate_context("other").to_bytes())["secret_key"]
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(HEKeyError, match="does not match the file's key commitment"):
        load_secret_context(path)


def test_the_secret_file_is_readable_by_its_owner_only(key_files: KeyFiles) -> None:
    assert stat.S_IMODE(key_files.secret.stat().st_mode) == 0o600


def test_key_files_are_never_overwritten(key_files: KeyFiles) -> None:
    with pytest.raises(HEKeyError, match="never overwritten"):
        write_key_files(generate_context("study-keys"), key_files.secret.parent)


def test_a_secret_context_never_shows_its_key_in_repr() -> None:
    secret = generate_context("s")
    assert "secret_key" not in repr(secret)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crypto.keys", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_cli_init_then_show_json(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    init = _cli("init", "--study", "cli-study", "--out", str(out), "--json")
    assert init.returncode == 0, init.stderr
    created = json.loads(init.stdout)
    for name in ("secret", "public"):
        shown = _cli("show", created["files"][name], "--json")
        assert shown.returncode == 0, shown.stderr
        summary = json.loads(shown.stdout)
        assert summary["has_secret_key"] is (name == "secret")
        assert summary["fingerprint"] == created["fingerprint"] and summary["fingerprint_verified"]
        assert summary["study_id"] == "cli-study" and summary["scheme"] == "bfv"
        assert summary["security_bits"] >= 128 and summary["coeff_modulus_bits"] == [58]
    secret_key = json.loads(Path(created["files"]["secret"]).read_text())["secret_key"]
    assert secret_key[:64] not in _cli("show", created["files"]["secret"], "--json").stdout


def test_cli_show_exits_invalid_input_on_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-key.json"
    path.write_text("{}")
    result = _cli("show", str(path))
    assert result.returncode == ExitCode.INVALID_INPUT
    assert "not an Accord HE context file" in result.stderr
