"""A local certificate authority and SuperLink server certificates, for demos and tests.

`create_ca` writes a self-signed CA (`ca.pem`, key `ca.key` mode 0600); `issue_server_certificate`
signs a TLS server certificate for the SuperLink whose subject alternative names are the hosts
partners dial (IP addresses as iPAddress SANs, names as dNSName SANs: TLS clients check SANs,
never the common name). Keys are ECDSA P-256, certificates SHA-256, valid for `days`.

A production deployment uses its organisation's CA instead; nothing else in Accord depends on
this module. It must never print private key material and never import `federated`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.errors import KeyFileError
from crypto.identity import (
    _write_atomically,  # one atomic, 0600-capable key writer for the package
)

CA_CERTIFICATE = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERTIFICATE = "superlink.pem"
SERVER_KEY = "superlink.key"


@dataclass(frozen=True)
class CertificateFiles:
    certificate: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Accord"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    if days < 1:
        raise KeyFileError(f"a certificate must be valid for at least 1 day (got {days})")
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))


def subject_alternative_names(hosts: list[str]) -> list[x509.GeneralName]:
    """iPAddress SANs for addresses, dNSName SANs for names; refuses an empty list."""
    if not hosts:
        raise KeyFileError("a SuperLink certificate needs at least one host (IP address or DNS name)")
    names: list[x509.GeneralName] = []
    for host in hosts:
        host = host.strip().strip("[]")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(c.isspace() or c in "/:@" for c in host):
                raise KeyFileError(f"{host!r} is neither an IP address nor a DNS name") from None
            names.append(x509.DNSName(host))
    return names


def create_ca(out: str | os.PathLike[str], *, common_name: str = "Accord local test CA", days: int = 365,
              overwrite: bool = False) -> CertificateFiles:
    """A self-signed CA certificate and key in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _validity(x509.CertificateBuilder(), days)
    certificate = (
        builder.subject_name(_name(common_name)).issuer_name(_name(common_name)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = CertificateFiles(out / CA_CERTIFICATE, out / CA_KEY)
    _write_atomically(files.key, _key_pem(key), mode=0o600, overwrite=overwrite)
    _write_atomically(files.certificate, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644, overwrite=overwrite)
    return files


def load_ca(ca_dir: str | os.PathLike[str]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key that `create_ca` wrote in `ca_dir`."""
    ca_dir = Path(ca_dir)
    try:
        certificate = x509.load_pem_x509_certificate((ca_dir / CA_CERTIFICATE).read_bytes())
        key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    except OSError as exc:
        raise KeyFileError(f"{ca_dir}: no readable CA ({CA_CERTIFICATE} and {CA_KEY}): {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{ca_dir}: {CA_CERTIFICATE}/{CA_KEY} are not a PEM certificate and unencrypted key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certificate.public_key():
        raise KeyFileError(f"{ca_dir}: {CA_KEY} is not the key of {CA_CERTIFICATE}")
    return certificate, key


def issue_server_certificate(ca_dir: str | os.PathLike[str], out: str | os.PathLike[str], hosts: list[str], *,
                             days: int = 365, overwrite: bool = False) -> CertificateFiles:
    """A SuperLink TLS certificate for `hosts`, signed by the CA in `ca_dir`, written to `out`."""
    ca_certificate, ca_key = load_ca(ca_dir)
    sans = subject_alternative_names(hosts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _validity(x509.CertificateBuilder(), days)
    certificate = (
        builder.subject_name(_name(hosts[0])).issuer_name(ca_certificate.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = CertificateFiles(out / SERVER_CERTIFICATE, out / SERVER_KEY)
    _write_atomically(files.key, _key_pem(key), mode=0o600, overwrite=overwrite)
    _write_atomically(files.certificate, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644, overwrite=overwrite)
    return files
