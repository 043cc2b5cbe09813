"""Ed25519 identities: RFC 8032 test vector 1, verification failures, key files on disk."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from accord.errors import ExitCode
from crypto.errors import KeyFileError, SignatureError
from crypto.identity import (
    Identity,
    fingerprint,
    load_public_key,
    public_key_bytes,
    public_key_from_bytes,
    save_public_key,
    verify,
)

# RFC 8032 §7.1, TEST 1 (empty message).
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


@pytest.fixture
def rfc_identity() -> Identity:
    return Identity.from_seed(RFC8032_SECRET)


def test_rfc8032_vector_1_public_key(rfc_identity: Identity) -> None:
    assert public_key_bytes(rfc_identity.public_key) == RFC8032_PUBLIC


def test_rfc8032_vector_1_signature_is_reproduced_and_verifies(rfc_identity: Identity) -> None:
    assert rfc_identity.sign(b"") == RFC8032_SIGNATURE
    assert verify(public_key_from_bytes(RFC8032_PUBLIC), b"", RFC8032_SIGNATURE) is None


def test_fingerprint_is_hex_sha256_of_the_raw_public_key(rfc_identity: Identity) -> None:
    expected = hashlib.sha256(RFC8032_PUBLIC).hexdigest()
    assert fingerprint(rfc_identity.public_key) == rfc_identity.fingerprint == expected
    assert expected == expected.lower() and len(expected) == 64


@pytest.mark.parametrize(
    ("message", "signature"),
    [
        (b"", bytes([RFC8032_SIGNATURE[0] ^ 1]) + RFC8032_SIGNATURE[1:]),
        (b"", RFC8032_SIGNATURE[:-1] + bytes([RFC8032_SIGNATURE[-1] ^ 0x80])),
        (b"x", RFC8032_SIGNATURE),
    ],
    ids=["flipped first bit", "flipped last byte", "other message"],
)
def test_verify_rejects_a_tampered_signature_or_message(message: bytes, signature: bytes) -> None:
    with pytest.raises(SignatureError, match=hashlib.sha256(RFC8032_PUBLIC).hexdigest()) as failure:
        verify(public_key_from_bytes(RFC8032_PUBLIC), message, signature)
    assert failure.value.exit_code is ExitCode.VERIFICATION_FAILED


def test_verify_rejects_a_signature_by_another_key() -> None:
    with pytest.raises(SignatureError):
        verify(Identity.generate().public_key, b"", RFC8032_SIGNATURE)


@pytest.mark.parametrize("signature", [b"", RFC8032_SIGNATURE[:63], RFC8032_SIGNATURE + b"\x00"])
def test_verify_rejects_a_signature_of_the_wrong_length(signature: bytes) -> None:
    with pytest.raises(SignatureError, match="64 bytes"):
        verify(public_key_from_bytes(RFC8032_PUBLIC), b"", signature)


def test_public_key_from_bytes_rejects_the_wrong_length() -> None:
    with pytest.raises(KeyFileError, match="32 bytes"):
        public_key_from_bytes(RFC8032_PUBLIC[:31])


def test_generated_identities_are_distinct_and_sign_verifiably() -> None:
    first, second = Identity.generate(), Identity.generate()
    assert first.fingerprint != second.fingerprint
    verify(first.public_key, b"task", first.sign(b"task"))


def test_repr_shows_the_fingerprint_and_no_key_material(rfc_identity: Identity) -> None:
    text = repr(rfc_identity)
    assert rfc_identity.fingerprint in text
    assert RFC8032_SECRET.hex() not in text and "PRIVATE" not in text


# --- key files ---------------------------------------------------------------------------------


def test_saved_identity_loads_back_with_private_file_mode_0600(tmp_path: Path, rfc_identity: Identity) -> None:
    key_path = tmp_path / "node.key"
    rfc_identity.save(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = Identity.load(key_path)
    assert loaded.sign(b"") == RFC8032_SIGNATURE
    public = load_public_key(tmp_path / "node.key.pub")
    assert public_key_bytes(public) == RFC8032_PUBLIC


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    Identity.generate().save(tmp_path / "a.key", public_path=tmp_path / "a.pem")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.key", "a.pem"]


def test_save_refuses_to_overwrite_a_key_unless_asked(tmp_path: Path) -> None:
    key_path = tmp_path / "node.key"
    first = Identity.generate()
    first.save(key_path)
    with pytest.raises(KeyFileError, match="already exists") as failure:
        Identity.generate().save(key_path)
    assert str(key_path) in str(failure.value)
    assert Identity.load(key_path).fingerprint == first.fingerprint
    second = Identity.generate()
    second.save(key_path, overwrite=True)
    assert Identity.load(key_path).fingerprint == second.fingerprint


def test_password_protected_key_needs_its_password(tmp_path: Path, rfc_identity: Identity) -> None:
    key_path = tmp_path / "node.key"
    rfc_identity.save(key_path, password=b"correct horse")
    assert b"ENCRYPTED" in key_path.read_bytes()
    assert Identity.load(key_path, password=b"correct horse").fingerprint == rfc_identity.fingerprint
    for password in (None, b"wrong"):
        with pytest.raises(KeyFileError, match=re.escape(str(key_path))):
            Identity.load(key_path, password=password)


def test_loading_a_missing_key_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.key"
    with pytest.raises(KeyFileError, match=re.escape(str(missing))) as failure:
        Identity.load(missing)
    assert failure.value.exit_code is ExitCode.INVALID_INPUT
    with pytest.raises(KeyFileError, match=re.escape(str(missing))):
        load_public_key(missing)


def test_loading_a_file_that_is_not_pem_names_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    with pytest.raises(KeyFileError, match=re.escape(str(garbage))):
        Identity.load(garbage)
    with pytest.raises(KeyFileError, match=re.escape(str(garbage))):
        load_public_key(garbage)


def test_loading_a_non_ed25519_key_names_the_file_and_the_type(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    private_path, public_path = tmp_path / "ec.key", tmp_path / "ec.pub"
    private_path.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_path.write_bytes(
        ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError, match=rf"{re.escape(str(private_path))}.*not an Ed25519 private key"):
        Identity.load(private_path)
    with pytest.raises(KeyFileError, match=rf"{re.escape(str(public_path))}.*not an Ed25519 public key"):
        load_public_key(public_path)


def test_a_private_key_file_is_not_a_public_key_file(tmp_path: Path) -> None:
    key_path = tmp_path / "node.key"
    Identity.generate().save(key_path)
    with pytest.raises(KeyFileError, match=re.escape(str(key_path))):
        load_public_key(key_path)


def test_saving_into_a_missing_directory_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "node.pub"
    with pytest.raises(KeyFileError, match="node.pub"):
        save_public_key(Identity.generate().public_key, target)
