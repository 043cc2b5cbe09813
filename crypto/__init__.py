"""Accord's cryptography: Merkle trees, Ed25519 identities, signed checkpoints, SuperNode keys and a test CA (and HE).

The public names below are the package's API; modules hold the internals. This
package must never import `federated`.
"""

from crypto.errors import (
    CryptoError,
    KeyFileError,
    MerkleTreeError,
    NoteFormatError,
    ProofError,
    SignatureError,
    UnknownSignerError,
)
from crypto.identity import (
    Identity,
    fingerprint,
    load_public_key,
    public_key_bytes,
    public_key_from_bytes,
    save_public_key,
    verify,
)
from crypto.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from crypto.node_auth import AuthorizedNode, NodeAuthKey, read_authorized_nodes
from crypto.note import (
    Checkpoint,
    NoteVerifier,
    OpenedNote,
    SignatureType,
    cosign_note,
    key_id,
    open_note,
    sign_note,
)
from crypto.tls import create_ca, issue_server_certificate

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "AuthorizedNode",
    "Checkpoint",
    "CryptoError",
    "Identity",
    "KeyFileError",
    "MerkleTree",
    "MerkleTreeError",
    "NodeAuthKey",
    "NoteFormatError",
    "NoteVerifier",
    "OpenedNote",
    "ProofError",
    "SignatureError",
    "SignatureType",
    "UnknownSignerError",
    "cosign_note",
    "create_ca",
    "fingerprint",
    "issue_server_certificate",
    "key_id",
    "leaf_hash",
    "load_public_key",
    "node_hash",
    "open_note",
    "public_key_bytes",
    "public_key_from_bytes",
    "read_authorized_nodes",
    "root_from_leaf_hashes",
    "save_public_key",
    "sign_note",
    "verify",
    "verify_consistency",
    "verify_inclusion",
]
