"""The signing keys of a study's two sides: created on first use, pinned by fingerprint.

A coordinator and each partner node sign with their own Ed25519 key (`--key PATH`); when
none exists at the path, one is created there (private key 0600, public key beside it as
`PATH.pub`). A partner may pin the coordinator's key in advance with `--coordinator-key`,
given as a PEM public key file or its 64-hex fingerprint.
This module must never print or log private key material.
"""

from __future__ import annotations

import re
from pathlib import Path

from accord.durable import make_directory
from crypto import Identity, KeyFileError, fingerprint, load_public_key
from federated.errors import ConfigError

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
COORDINATOR_KEY_NAME = "coordinator.key"
RUN_CONFIG_KEY = "coordinator-key"


def coordinator_key_path(run_config: dict[str, object], output_dir: Path) -> Path:
    """The coordinator key the CLI named in the run config, else OUTPUT_DIR/coordinator.key."""
    named = run_config.get(RUN_CONFIG_KEY)
    return Path(str(named)) if named else Path(output_dir) / COORDINATOR_KEY_NAME


def load_or_create_identity(path: Path) -> tuple[Identity, bool]:
    """The key at `path`, or a new one written there; the flag says whether it was created."""
    path = Path(path)
    if path.exists():
        return Identity.load(path), False
    make_directory(path.parent)
    identity = Identity.generate()
    try:
        identity.save(path)
    except KeyFileError:
        if path.exists():  # another process of the same side created it first
            return Identity.load(path), False
        raise
    return identity, True


def pinned_fingerprint(value: str) -> str:
    """A `--coordinator-key` value (PEM public key file or hex fingerprint) as a fingerprint."""
    text = value.strip().lower()
    if _FINGERPRINT.fullmatch(text):
        return text
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"--coordinator-key: {value!r} is neither a 64-hex key fingerprint nor a public key file")
    try:
        return fingerprint(load_public_key(path))
    except KeyFileError as exc:
        raise ConfigError(f"--coordinator-key: {exc}") from None
