"""`python -m crypto.keys identity` and `ca`: the files Accord and Flower 1.42 read, and nothing else.

The SuperNode keys are checked with Flower's own loaders (`flwr supernode register` and
`flower-supernode`), the SuperLink certificate with a real TLS handshake to 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from crypto import Identity, KeyFileError, load_public_key
from crypto.keys import app
from crypto.node_auth import NodeAuthKey, node_key_fingerprint, read_authorized_nodes

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def _said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _identity(out: Path, name: str = "hospital-a", *extra: str) -> dict:
    result = _invoke("identity", "--name", name, "--out", str(out), "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _ca(out: Path, *hosts: str) -> dict:
    result = _invoke("ca", "--out", str(out), *[arg for host in hosts for arg in ("--host", host)], "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_identity_writes_a_signing_key_and_a_supernode_key_with_their_public_halves(tmp_path):
    summary = _identity(tmp_path)
    files = {role: Path(path) for role, path in summary["files"].items()}
    assert files == {
        "signing_key": tmp_path / "hospital-a.key", "signing_public_key": tmp_path / "hospital-a.key.pub",
        "supernode_key": tmp_path / "hospital-a.supernode.key",
        "supernode_public_key": tmp_path / "hospital-a.supernode.key.pub",
    }
    for role in ("signing_key", "supernode_key"):
        assert stat.S_IMODE(files[role].stat().st_mode) == 0o600
    signing = Identity.load(files["signing_key"])
    assert signing.fingerprint == summary["signing_fingerprint"]
    assert isinstance(load_public_key(files["signing_public_key"]), ed25519.Ed25519PublicKey)


def test_supernode_keys_load_with_flowers_own_readers(tmp_path):
    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes

    summary = _identity(tmp_path)
    private = serialization.load_ssh_private_key((tmp_path / "hospital-a.supernode.key").read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1)
    registered = try_load_public_key(tmp_path / "hospital-a.supernode.key.pub")  # what `flwr supernode register` sends
    assert registered == public_key_to_bytes(private.public_key())  # what `flower-supernode` presents
    assert node_key_fingerprint(private.public_key()) == summary["supernode_key_fingerprint"]
    assert (tmp_path / "hospital-a.supernode.key.pub").read_text().split()[2] == "hospital-a"


def test_identity_with_ca_copies_the_ca_certificate_only(tmp_path):
    _ca(tmp_path / "ca", "127.0.0.1")
    summary = _identity(tmp_path / "keys", "hospital-a", "--ca", str(tmp_path / "ca"))
    assert Path(summary["files"]["ca_certificate"]).read_bytes() == (tmp_path / "ca" / "ca.pem").read_bytes()
    assert not (tmp_path / "keys" / "ca.key").exists()


def test_identity_never_overwrites_keys_without_force(tmp_path):
    first = _identity(tmp_path)
    result = _invoke("identity", "--name", "hospital-a", "--out", str(tmp_path))
    assert result.exit_code == 3
    assert "hospital-a.key already exists" in _said(result)
    assert Identity.load(tmp_path / "hospital-a.key").fingerprint == first["signing_fingerprint"]
    assert _identity(tmp_path, "hospital-a", "--force")["signing_fingerprint"] != first["signing_fingerprint"]


@pytest.mark.parametrize(("args", "message"), [
    (("--name", "bad name"), "must be 1-64 letters"),
    (("--name", "a", "--ca", "/nonexistent-ca"), "no ca.pem there"),
])
def test_identity_refuses_bad_input_naming_it(tmp_path, args, message):
    result = _invoke("identity", "--out", str(tmp_path), *args)
    assert result.exit_code == 3
    assert message in _said(result)


def test_ca_issues_a_superlink_certificate_naming_every_host(tmp_path):
    summary = _ca(tmp_path, "127.0.0.1", "localhost", "::1")
    ca = x509.load_pem_x509_certificate(Path(summary["files"]["ca_certificate"]).read_bytes())
    server = x509.load_pem_x509_certificate(Path(summary["files"]["superlink_certificate"]).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    for key in ("ca_key", "superlink_key"):
        assert stat.S_IMODE(Path(summary["files"][key]).stat().st_mode) == 0o600


def _handshake(ca_dir: Path, server_name: str) -> None:
    """A TLS handshake from a client trusting only ca.pem to a server on 127.0.0.1 using superlink.pem."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(ca_dir / "superlink.pem", ca_dir / "superlink.key")
    client_context = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with client_context.wrap_socket(raw, server_hostname=server_name):
                    pass
        finally:
            thread.join(timeout=10)


def test_a_client_trusting_the_ca_verifies_the_superlink_at_its_address(tmp_path):
    _ca(tmp_path, "127.0.0.1")
    _handshake(tmp_path, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        _handshake(tmp_path, "127.0.0.2")


def test_ca_refuses_to_overwrite_and_to_issue_for_no_valid_host(tmp_path):
    _ca(tmp_path / "a", "127.0.0.1")
    again = _invoke("ca", "--out", str(tmp_path / "a"), "--host", "127.0.0.1")
    assert again.exit_code == 3 and "already exists" in _said(again)
    bad = _invoke("ca", "--out", str(tmp_path / "b"), "--host", "https://example.org")
    assert bad.exit_code == 3 and "neither an IP address nor a DNS name" in _said(bad)


def test_authorized_nodes_from_a_directory_or_one_file_of_lines(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    lines = []
    for name in ("hospital-a", "hospital-b"):
        NodeAuthKey.generate().save(keys / f"{name}.supernode.key", name=name)
        lines.append((keys / f"{name}.supernode.key.pub").read_text())
    (keys / "hospital-a.supernode.key").unlink()  # only public halves in the directory
    (keys / "hospital-b.supernode.key").unlink()
    from_dir = read_authorized_nodes(keys)
    assert [node.name for node in from_dir] == ["hospital-a", "hospital-b"]
    listing = tmp_path / "authorized_keys"
    listing.write_text("# partners of study s1\n\n" + "".join(lines))
    assert read_authorized_nodes(listing) == [
        type(node)(node.name, node.line, node.fingerprint, f"{listing}:{number}")
        for node, number in zip(from_dir, (3, 4))
    ]


def test_authorized_nodes_refuse_repeats_and_keys_flower_cannot_use(tmp_path):
    key = NodeAuthKey.generate()
    key.save(tmp_path / "a.supernode.key", name="hospital-a")
    line = (tmp_path / "a.supernode.key.pub").read_text()
    (tmp_path / "twice").write_text(line + line)
    with pytest.raises(KeyFileError, match="the same fingerprint"):
        read_authorized_nodes(tmp_path / "twice")
    ed_line = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    (tmp_path / "ed25519").write_text(ed_line + " x\n")
    with pytest.raises(KeyFileError, match="needs an ecdsa-sha2-nistp"):
        read_authorized_nodes(tmp_path / "ed25519")
    (tmp_path / "empty").write_text("# nobody yet\n")
    with pytest.raises(KeyFileError, match="holds no SuperNode public key"):
        read_authorized_nodes(tmp_path / "empty")


def test_a_supernode_key_file_that_is_not_an_ec_key_is_named(tmp_path):
    Identity.generate().save(tmp_path / "ed.key")
    with pytest.raises(KeyFileError, match="ed.key is not an OpenSSH private key"):
        NodeAuthKey.load(tmp_path / "ed.key")


def test_the_documented_key_commands_run_as_written(tmp_path):
    import re
    import subprocess
    import sys

    from tests.documentation import section

    commands = re.findall(r"^python -m crypto\.keys .*?(?=\s+#|$)", section("Secure mode"), re.MULTILINE)
    assert len(commands) == 4  # ca, identity ×2, show (a key's fingerprint)
    for command in commands:
        args = command.split()[1:]
        done = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    for path in ("keys/ca/superlink.pem", "keys/coordinator/coordinator.key", "keys/hospital-a/ca.pem",
                 "keys/hospital-a/hospital-a.supernode.key.pub"):
        assert (tmp_path / path).is_file(), path


@pytest.mark.parametrize(("file", "key"), [
    ("hospital-a.key.pub", "signing_fingerprint"), ("hospital-a.key", "signing_fingerprint"),
    ("hospital-a.supernode.key.pub", "supernode_key_fingerprint"), ("hospital-a.supernode.key", "supernode_key_fingerprint"),
])
def test_show_prints_the_fingerprint_of_an_identity_or_supernode_key(tmp_path, file, key):
    summary = _identity(tmp_path)
    shown = _invoke("show", str(tmp_path / file), "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["fingerprint"] == summary[key]


def test_show_prints_a_fingerprint_alone_on_its_line_never_folded(tmp_path):
    summary = _identity(tmp_path)
    shown = runner.invoke(app, ["show", str(tmp_path / "hospital-a.key.pub")], env={"COLUMNS": "40"})
    assert shown.exit_code == 0, shown.output
    assert summary["signing_fingerprint"] in shown.stdout.splitlines()


def test_show_never_prints_a_private_key(tmp_path):
    _identity(tmp_path)
    secret = (tmp_path / "hospital-a.key").read_text()
    shown = _invoke("show", str(tmp_path / "hospital-a.key"))
    body = "".join(secret.splitlines()[1:-1])
    assert body[:40] not in shown.output


@pytest.mark.parametrize(("name", "extra", "said", "not_said"), [
    ("hospital-a", (), "Partner:", "Coordinator:"),
    ("coordinator", (), "Coordinator:", "Partner:"),
    ("central", ("--role", "coordinator"), "Coordinator:", "Partner:"),
])
def test_identity_prints_only_its_role_s_advice(tmp_path, name, extra, said, not_said):
    result = _invoke("identity", "--name", name, "--out", str(tmp_path), *extra)
    assert result.exit_code == 0, result.output
    assert said in result.stdout and not_said not in result.stdout
