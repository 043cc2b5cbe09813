"""Signed checkpoints: C2SP signed-note, tlog-checkpoint and tlog-cosignature/v1.

Interoperability vectors: the PeterNeumann key and note of golang.org/x/mod/sumdb/note
(note.go's package documentation and note_test.go), and the verifier keys of
transparency-dev/formats note/note_cosigv1_test.go.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accord.errors import ExitCode
from crypto.errors import (
    NoteFormatError,
    ProofError,
    SignatureError,
    UnknownSignerError,
)
from crypto.identity import Identity, public_key_bytes
from crypto.merkle import MerkleTree, verify_consistency
from crypto.note import (
    Checkpoint,
    NoteVerifier,
    SignatureType,
    cosign_note,
    key_id,
    open_note,
    sign_note,
)

GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT
    + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
C2SP_CHECKPOINT_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

COORDINATOR = Identity.generate()
PARTNER = Identity.generate()
ORIGIN = "accord.example/study-42"
LOG = NoteVerifier(ORIGIN, COORDINATOR.public_key)
COSIGNER = NoteVerifier("partner.example/node-1", PARTNER.public_key, SignatureType.COSIGNATURE_V1)


def _checkpoint(size: int = 5) -> Checkpoint:
    tree = MerkleTree()
    for i in range(size):
        tree.append(b"event %d" % i)
    return Checkpoint(origin=ORIGIN, size=size, root=tree.root())


def _signed(body: str | None = None) -> str:
    return sign_note(body or _checkpoint().to_body(), name=ORIGIN, private_key=COORDINATOR.private_key)


def _signature_payload(note: str, line: int = -1) -> bytes:
    return base64.b64decode(note.rstrip("\n").split("\n")[line].split(" ")[2])


# --- interoperability with Go ------------------------------------------------------------------


def test_signing_reproduces_the_go_sumdb_note_byte_for_byte() -> None:
    seed = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])
    assert seed[0] == SignatureType.ED25519
    key = Ed25519PrivateKey.from_private_bytes(seed[1:])
    assert sign_note(GO_TEXT, name="PeterNeumann", private_key=key) == GO_NOTE


def test_the_go_sumdb_note_opens_with_its_published_verifier_key() -> None:
    opened = open_note(GO_NOTE, verifiers=[NoteVerifier.from_vkey(GO_VERIFIER_KEY)])
    assert opened.body == GO_TEXT
    assert opened.signers == ("PeterNeumann",)


@pytest.mark.parametrize(
    ("vkey", "signature_type"),
    [
        (GO_VERIFIER_KEY, SignatureType.ED25519),
        ("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6", SignatureType.ED25519),
        ("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2", SignatureType.COSIGNATURE_V1),
    ],
)
def test_published_verifier_keys_parse_and_round_trip(vkey: str, signature_type: SignatureType) -> None:
    verifier = NoteVerifier.from_vkey(vkey)
    assert verifier.signature_type is signature_type
    assert verifier.to_vkey() == vkey


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "PeterNeumanN+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong name
        "PeterNeumann+c74f20a3+BRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown type 0x05
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",  # short key
        "PeterNeumann+c74f20a3+!!!",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_mangled_verifier_keys_are_rejected(vkey: str) -> None:
    with pytest.raises(NoteFormatError):
        NoteVerifier.from_vkey(vkey)


# --- checkpoint bodies -------------------------------------------------------------------------


def test_checkpoint_body_is_origin_size_and_base64_root_lines() -> None:
    root = hashlib.sha256(b"x").digest()
    body = Checkpoint(origin="example.com/log", size=7, root=root).to_body()
    assert body == f"example.com/log\n7\n{base64.b64encode(root).decode()}\n"


def test_checkpoint_round_trips_with_extension_lines() -> None:
    checkpoint = Checkpoint(origin=ORIGIN, size=0, root=hashlib.sha256(b"").digest(), extensions=("round 3",))
    assert checkpoint.to_body().endswith("\nround 3\n")
    assert Checkpoint.parse_body(checkpoint.to_body()) == checkpoint


def test_the_c2sp_example_checkpoint_body_parses() -> None:
    checkpoint = Checkpoint.parse_body(C2SP_CHECKPOINT_BODY)
    assert (checkpoint.origin, checkpoint.size, checkpoint.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert checkpoint.to_body() == C2SP_CHECKPOINT_BODY


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("example.com/log\n7\n", "at least 3 lines"),
        ("example.com/log\n07\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "line 2"),
        ("example.com/log\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "line 2"),
        ("example.com/log\n٣\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "line 2"),
        ("example.com/log\n7\nnot base64!\n", "line 3"),
        ("example.com/log\n7\nAAAA\n", "line 3"),
        ("example.com/log\n7\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=", "end with a newline"),
        ("example.com/log\n7\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n", "extension"),
        ("\n7\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "origin"),
        ("example.com/log\n7\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\tx\n", "control character"),
    ],
)
def test_malformed_checkpoint_bodies_are_rejected(body: str, message: str) -> None:
    with pytest.raises(NoteFormatError, match=message) as failure:
        Checkpoint.parse_body(body)
    assert failure.value.exit_code is ExitCode.INVALID_INPUT


def test_checkpoint_refuses_impossible_fields() -> None:
    with pytest.raises(NoteFormatError):
        Checkpoint(origin=ORIGIN, size=-1, root=bytes(32))
    with pytest.raises(NoteFormatError):
        Checkpoint(origin=ORIGIN, size=1, root=bytes(31))
    with pytest.raises(NoteFormatError):
        Checkpoint(origin="two\nlines", size=1, root=bytes(32))


# --- signing and opening -----------------------------------------------------------------------


def test_signed_checkpoint_round_trips() -> None:
    checkpoint = _checkpoint()
    note = _signed(checkpoint.to_body())
    assert note.startswith(checkpoint.to_body() + "\n— " + ORIGIN + " ")
    opened = open_note(note, verifiers=[LOG])
    assert opened.signers == (ORIGIN,)
    assert Checkpoint.parse_body(opened.body) == checkpoint


def test_signature_line_carries_the_c2sp_key_id_and_a_64_byte_signature() -> None:
    payload = _signature_payload(_signed())
    raw_key = public_key_bytes(COORDINATOR.public_key)
    expected_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw_key).digest()[:4]
    assert payload[:4] == expected_id == key_id(ORIGIN, COORDINATOR.public_key, SignatureType.ED25519)
    assert len(payload) == 4 + 64


def test_open_note_accepts_bytes() -> None:
    assert open_note(_signed().encode(), verifiers=[LOG]).signers == (ORIGIN,)


def test_a_tampered_body_fails_its_signature() -> None:
    note = _signed()
    tampered = note.replace("\n5\n", "\n4\n", 1)
    assert tampered != note
    with pytest.raises(SignatureError, match=f"signature by {ORIGIN}.*does not verify") as failure:
        open_note(tampered, verifiers=[LOG])
    assert not isinstance(failure.value, UnknownSignerError)
    assert failure.value.exit_code is ExitCode.VERIFICATION_FAILED


def test_a_forged_signature_under_a_known_key_id_is_rejected() -> None:
    note = _signed()
    payload = bytearray(_signature_payload(note))
    payload[10] ^= 1
    forged = note.rsplit(" ", 1)[0] + " " + base64.b64encode(bytes(payload)).decode() + "\n"
    with pytest.raises(SignatureError, match="does not verify"):
        open_note(forged, verifiers=[LOG])


def test_a_note_from_an_unknown_key_is_rejected() -> None:
    stranger = NoteVerifier(ORIGIN, Identity.generate().public_key)
    with pytest.raises(UnknownSignerError, match="none of the trusted keys"):
        open_note(_signed(), verifiers=[stranger])


def test_the_right_key_under_the_wrong_name_is_unknown() -> None:
    with pytest.raises(UnknownSignerError):
        open_note(_signed(), verifiers=[NoteVerifier("someone.else/log", COORDINATOR.public_key)])


def test_no_verifiers_means_nothing_opens() -> None:
    with pytest.raises(UnknownSignerError, match=r"\(none\)"):
        open_note(_signed(), verifiers=[])


def test_signatures_from_unknown_keys_are_ignored() -> None:
    stranger = Identity.generate()
    note = sign_note(_checkpoint().to_body(), name="stranger.example", private_key=stranger.private_key)
    note += _signed().split("\n\n", 1)[1]  # add the coordinator's signature line after the stranger's
    assert open_note(note, verifiers=[LOG]).signers == (ORIGIN,)


def test_one_bad_signature_from_a_known_key_rejects_the_whole_note() -> None:
    other = Identity.generate()
    body = _checkpoint().to_body()
    note = _signed(body) + sign_note(body + "x\n", name="other.example", private_key=other.private_key).split(
        "\n\n", 1
    )[1]  # a known key's signature over different text
    with pytest.raises(SignatureError, match="other.example"):
        open_note(note, verifiers=[LOG, NoteVerifier("other.example", other.public_key)])


def test_two_signatures_by_the_same_known_key_are_malformed() -> None:
    note = _signed()
    with pytest.raises(NoteFormatError, match="two signatures"):
        open_note(note + note.split("\n\n", 1)[1], verifiers=[LOG])


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("text\n— a AAAAAAA=\n", "no blank line"),
        ("text\n\n", "no signature lines"),
        ("text\n\n- a AAAAAAA=\n", "em dash"),
        ("text\n\n— a AAAAAAA=", "end with a newline"),
        ("text\n\n— a\n", "signature line 1"),
        ("text\n\n— a b c\n", "signature line 1"),
        ("text\n\n— a+b AAAAAAA=\n", "key name"),
        ("text\n\n— a not*base64\n", "not base64"),
        ("text\n\n— a AAAA\n", "too short"),
        ("te\x00xt\n\n— a AAAAAAA=\n", "control character"),
        ("text\r\n\n— a AAAAAAA=\n", "control character"),
        (b"\xff\xfe\n\n\xe2\x80\x94 a AAAAAAA=\n", "UTF-8"),
        ("text\n\n" + "— a AAAAAAA=\n" * 4097, "more than"),
    ],
)
def test_malformed_notes_are_rejected_with_a_precise_message(note: str | bytes, message: str) -> None:
    with pytest.raises(NoteFormatError, match=message):
        open_note(note, verifiers=[LOG])


def test_sign_note_rejects_bad_text_and_names() -> None:
    with pytest.raises(NoteFormatError, match="newline"):
        sign_note("no newline", name=ORIGIN, private_key=COORDINATOR.private_key)
    for name in ("", "has space", "has+plus", "tab\tname", "nbsp\u00a0name"):
        with pytest.raises(NoteFormatError, match="key name"):
            sign_note("text\n", name=name, private_key=COORDINATOR.private_key)


# --- cosignatures ------------------------------------------------------------------------------


def _cosigned(timestamp: int = 1_700_000_000) -> str:
    return cosign_note(_signed(), name=COSIGNER.name, private_key=PARTNER.private_key, timestamp=timestamp)


def test_a_partner_cosignature_verifies_with_its_timestamp() -> None:
    opened = open_note(_cosigned(), verifiers=[LOG, COSIGNER])
    assert opened.signers == (ORIGIN, COSIGNER.name)
    assert opened.cosignature_times == {COSIGNER.name: 1_700_000_000}
    assert open_note(_cosigned(), verifiers=[COSIGNER]).signers == (COSIGNER.name,)


def test_cosignature_bytes_follow_tlog_cosignature_v1() -> None:
    note = _cosigned(1_679_315_147)
    body = note.split("\n\n", 1)[0] + "\n"
    payload = _signature_payload(note)
    raw_key = public_key_bytes(PARTNER.public_key)
    assert payload[:4] == hashlib.sha256(COSIGNER.name.encode() + b"\n\x04" + raw_key).digest()[:4]
    assert struct.unpack(">Q", payload[4:12]) == (1_679_315_147,) and len(payload) == 4 + 8 + 64
    message = b"cosignature/v1\ntime 1679315147\n" + body.encode()
    PARTNER.public_key.verify(payload[12:], message)  # raises InvalidSignature if not


def test_a_cosignature_with_an_altered_timestamp_is_rejected() -> None:
    note = _cosigned()
    payload = bytearray(_signature_payload(note))
    payload[4:12] = struct.pack(">Q", 1_700_000_001)
    forged = note.rsplit(" ", 1)[0] + " " + base64.b64encode(bytes(payload)).decode() + "\n"
    with pytest.raises(SignatureError, match="cosignature_v1 signature by partner.example/node-1"):
        open_note(forged, verifiers=[COSIGNER])


def test_a_cosignature_moved_onto_another_checkpoint_is_rejected() -> None:
    cosignature_line = _cosigned().rstrip("\n").split("\n")[-1] + "\n"
    other = _signed(_checkpoint(6).to_body())
    with pytest.raises(SignatureError, match="does not verify"):
        open_note(other + cosignature_line, verifiers=[LOG, COSIGNER])


def test_a_cosigner_key_is_not_a_plain_note_key() -> None:
    plain = NoteVerifier(COSIGNER.name, PARTNER.public_key, SignatureType.ED25519)
    with pytest.raises(UnknownSignerError):
        open_note(_cosigned(), verifiers=[plain])
    assert plain.key_id != COSIGNER.key_id


def test_cosign_note_refuses_a_body_that_is_not_a_checkpoint() -> None:
    note = _signed("just some text\n")
    with pytest.raises(NoteFormatError, match="at least 3 lines"):
        cosign_note(note, name=COSIGNER.name, private_key=PARTNER.private_key, timestamp=1)


@pytest.mark.parametrize("timestamp", [-1, 2**63, True])
def test_cosign_note_refuses_an_out_of_range_timestamp(timestamp: int) -> None:
    with pytest.raises(NoteFormatError, match="timestamp"):
        cosign_note(_signed(), name=COSIGNER.name, private_key=PARTNER.private_key, timestamp=timestamp)


def test_cosign_note_defaults_to_the_current_time() -> None:
    note = cosign_note(_signed(), name=COSIGNER.name, private_key=PARTNER.private_key)
    assert open_note(note, verifiers=[COSIGNER]).cosignature_times[COSIGNER.name] > 1_700_000_000


# --- what cosigned checkpoints are for ---------------------------------------------------------


def test_a_partner_holding_a_cosigned_checkpoint_detects_a_rollback() -> None:
    tree = MerkleTree()
    for i in range(8):
        tree.append(b"event %d" % i)
    kept = open_note(
        cosign_note(_signed(Checkpoint(ORIGIN, 8, tree.root()).to_body()), name=COSIGNER.name,
                    private_key=PARTNER.private_key, timestamp=1),
        verifiers=[LOG, COSIGNER],
    )  # fmt: skip
    kept_checkpoint = Checkpoint.parse_body(kept.body)
    # The coordinator later presents a signed checkpoint of a rewritten, shorter trail.
    rewritten = MerkleTree(tree.leaf_hash_at(i) for i in range(5))
    rewritten.append(b"a different event")
    shown = Checkpoint.parse_body(open_note(_signed(Checkpoint(ORIGIN, 6, rewritten.root()).to_body()),
                                            verifiers=[LOG]).body)  # fmt: skip
    with pytest.raises(ProofError, match="shrunk"):
        verify_consistency(old_size=kept_checkpoint.size, new_size=shown.size, proof=[],
                           old_root=kept_checkpoint.root, new_root=shown.root)  # fmt: skip


def test_listing_the_same_trusted_key_twice_is_harmless() -> None:
    assert open_note(_signed(), verifiers=[LOG, NoteVerifier(ORIGIN, COORDINATOR.public_key)]).signers == (ORIGIN,)
