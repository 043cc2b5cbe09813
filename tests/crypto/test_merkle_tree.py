"""The RFC 9162 Merkle tree: published Certificate Transparency vectors, mutated proofs, properties.

Vectors: the 8-leaf data set of google/certificate-transparency's merkle tree tests, with the
roots and proofs published in transparency-dev/merkle proof/verify_test.go (1-based leaf numbers
there; 0-based indices here).
"""

from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import ExitCode
from crypto.errors import MerkleTreeError, ProofError
from crypto.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
]
ROOTS = [  # ROOTS[n - 1] is the root of the first n leaves
    bytes.fromhex(h)
    for h in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
INCLUSION_PROOFS = [  # (0-based index, tree size, proof)
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CONSISTENCY_PROOFS = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _tree(leaves: list[bytes] = LEAVES) -> MerkleTree:
    tree = MerkleTree()
    for entry in leaves:
        tree.append(entry)
    return tree


def _flip(hash_: bytes, bit: int = 3) -> bytes:
    return bytes([hash_[0] ^ (1 << bit)]) + hash_[1:]


def _short_id(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()[:8]
    if isinstance(value, list):
        return f"{len(value)}-hash proof"
    return str(value)


def reference_root(hashes: list[bytes]) -> bytes:
    """MTH straight from the RFC's recursive definition, independent of MerkleTree's cache."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(reference_root(hashes[:k]), reference_root(hashes[k:]))


# --- hashing and roots -----------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert MerkleTree().root() == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


@pytest.mark.parametrize("size", range(1, 9))
def test_root_of_each_prefix_matches_published_vector(size: int) -> None:
    assert _tree(LEAVES[:size]).root() == ROOTS[size - 1]
    assert _tree().root(size) == ROOTS[size - 1]  # earlier sizes stay answerable after appends


def test_root_from_leaf_hashes_matches_published_vector() -> None:
    assert root_from_leaf_hashes([leaf_hash(e) for e in LEAVES]) == ROOTS[7]
    assert root_from_leaf_hashes([]) == EMPTY_ROOT


def test_append_returns_the_new_leaf_index_and_tree_keeps_leaf_hashes() -> None:
    tree = MerkleTree()
    assert [tree.append(e) for e in LEAVES] == list(range(8))
    assert len(tree) == tree.size == 8
    assert tree.leaf_hash_at(3) == leaf_hash(LEAVES[3])
    assert MerkleTree(leaf_hash(e) for e in LEAVES).root() == ROOTS[7]


def test_hundred_thousand_leaves_build_and_root_quickly() -> None:
    start = time.perf_counter()
    tree = MerkleTree()
    for i in range(100_000):
        tree.append(i.to_bytes(8, "big"))
    tree.root()
    tree.root(99_999)
    tree.inclusion_proof(12_345)
    tree.consistency_proof(65_537)
    assert time.perf_counter() - start < 2.0


# --- inclusion proofs ------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_PROOFS)
def test_inclusion_proof_matches_published_vector_and_verifies(index: int, size: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert _tree().inclusion_proof(index, size) == expected
    verify_inclusion(leaf_hash=leaf_hash(LEAVES[index]), index=index, tree_size=size, proof=expected,
                     root=ROOTS[size - 1])  # fmt: skip


def _inclusion_mutations(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes) -> list:
    """The corruptions transparency-dev/merkle checks, as (description, keyword arguments)."""
    base = {"leaf_hash": leaf, "index": index, "tree_size": size, "proof": proof, "root": root}
    cases = [
        ("index - 1", {**base, "index": index - 1}),
        ("index + 1", {**base, "index": index + 1}),
        ("index ^ 2", {**base, "index": index ^ 2}),
        ("size * 2", {**base, "tree_size": size * 2}),
        ("size / 2", {**base, "tree_size": size // 2}),
        ("wrong leaf", {**base, "leaf_hash": leaf_hash(b"WrongLeaf")}),
        ("empty root", {**base, "root": EMPTY_ROOT}),
        ("random root", {**base, "root": SOME_HASH}),
        ("trailing garbage", {**base, "proof": [*proof, b""]}),
        ("trailing root", {**base, "proof": [*proof, root]}),
        ("preceding garbage", {**base, "proof": [b"", *proof]}),
        ("preceding root", {**base, "proof": [root, *proof]}),
    ]
    for i in range(len(proof)):
        cases.append((f"proof[{i}] bit flip", {**base, "proof": [*proof[:i], _flip(proof[i]), *proof[i + 1 :]]}))
    if proof:
        cases.append(("removed hash", {**base, "proof": proof[:-1]}))
    if len(proof) > 1:
        cases.append(("inserted hash", {**base, "proof": [proof[0], SOME_HASH, *proof[1:]]}))
    return cases


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_PROOFS)
def test_every_mutation_of_a_published_inclusion_proof_is_rejected(index: int, size: int, proof: list[str]) -> None:
    hashes = [bytes.fromhex(h) for h in proof]
    for description, kwargs in _inclusion_mutations(index, size, hashes, ROOTS[size - 1], leaf_hash(LEAVES[index])):
        with pytest.raises(ProofError):
            verify_inclusion(**kwargs)
            pytest.fail(f"mutation accepted: {description}")


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (1, 1)])
def test_inclusion_rejects_an_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ProofError, match="not inside a tree"):
        verify_inclusion(leaf_hash=SOME_HASH, index=index, tree_size=size, proof=[], root=EMPTY_ROOT)


def test_single_leaf_tree_has_an_empty_proof_and_its_leaf_as_root() -> None:
    hash_ = leaf_hash(b"data")
    verify_inclusion(leaf_hash=hash_, index=0, tree_size=1, proof=[], root=hash_)
    with pytest.raises(ProofError, match="leads to root"):
        verify_inclusion(leaf_hash=hash_, index=0, tree_size=1, proof=[], root=SOME_HASH)


def test_inclusion_failure_names_the_expected_proof_length() -> None:
    proof = _tree().inclusion_proof(5, 8)
    with pytest.raises(ProofError, match="holds 3 hashes, this one holds 4"):
        verify_inclusion(leaf_hash=leaf_hash(LEAVES[5]), index=5, tree_size=8, proof=[*proof, SOME_HASH],
                         root=ROOTS[7])  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"proof": [b"\x00" * 31]}, r"proof\[0\] must be 32 bytes, got 31 bytes"),
        ({"proof": b"\x00" * 32}, "sequence of hashes"),
        ({"root": b"short"}, "root must be 32 bytes"),
        ({"leaf_hash": "not bytes"}, "leaf hash must be 32 bytes, got str"),
        ({"index": -1}, "non-negative integer"),
        ({"index": True}, "non-negative integer"),
        ({"tree_size": 1.0}, "non-negative integer"),
    ],
)
def test_inclusion_rejects_malformed_input_with_a_precise_message(change: dict, message: str) -> None:
    kwargs = {"leaf_hash": SOME_HASH, "index": 0, "tree_size": 2, "proof": [SOME_HASH], "root": SOME_HASH}
    with pytest.raises(ProofError, match=message):
        verify_inclusion(**{**kwargs, **change})


def test_verifiers_take_keyword_arguments_only() -> None:
    with pytest.raises(TypeError):
        verify_inclusion(SOME_HASH, 0, 1, [], SOME_HASH)  # type: ignore[misc]
    with pytest.raises(TypeError):
        verify_consistency(1, 1, [], SOME_HASH, SOME_HASH)  # type: ignore[misc]


# --- consistency proofs ----------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_PROOFS)
def test_consistency_proof_matches_published_vector_and_verifies(old: int, new: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert _tree().consistency_proof(old, new) == expected
    verify_consistency(old_size=old, new_size=new, proof=expected, old_root=ROOTS[old - 1], new_root=ROOTS[new - 1])


def _consistency_mutations(old: int, new: int, proof: list[bytes], old_root: bytes, new_root: bytes) -> list:
    base = {"old_size": old, "new_size": new, "proof": proof, "old_root": old_root, "new_root": new_root}
    wrong = leaf_hash(b"WrongRoot")
    cases = [
        ("old size - 1", {**base, "old_size": old - 1}),
        ("old size + 1", {**base, "old_size": old + 1}),
        ("old size ^ 2", {**base, "old_size": old ^ 2}),
        ("new size * 2", {**base, "new_size": new * 2}),
        ("new size / 2", {**base, "new_size": new // 2}),
        ("swapped sizes", {**base, "old_size": new, "new_size": old}),
        ("wrong old root", {**base, "old_root": wrong}),
        ("wrong new root", {**base, "new_root": wrong}),
        ("swapped roots", {**base, "old_root": new_root, "new_root": old_root}),
        ("swapped sizes and roots", {**base, "old_size": new, "new_size": old, "old_root": new_root,
                                     "new_root": old_root}),
        ("empty proof", {**base, "proof": []}),
        ("trailing garbage", {**base, "proof": [*proof, b""]}),
        ("trailing old root", {**base, "proof": [*proof, old_root]}),
        ("trailing new root", {**base, "proof": [*proof, new_root]}),
        ("preceding garbage", {**base, "proof": [b"", *proof]}),
        ("preceding old root", {**base, "proof": [old_root, *proof]}),
        ("preceding new root", {**base, "proof": [new_root, *proof]}),
        ("preceding proof[0]", {**base, "proof": [proof[0], *proof]}),
        ("truncated proof", {**base, "proof": proof[:-1]}),
    ]  # fmt: skip
    for i in range(len(proof)):
        cases.append((f"proof[{i}] bit flip", {**base, "proof": [*proof[:i], _flip(proof[i], 4), *proof[i + 1 :]]}))
    return cases


@pytest.mark.parametrize(("old", "new", "proof"), [v for v in CONSISTENCY_PROOFS if v[2]])
def test_every_mutation_of_a_published_consistency_proof_is_rejected(old: int, new: int, proof: list[str]) -> None:
    hashes = [bytes.fromhex(h) for h in proof]
    for description, kwargs in _consistency_mutations(old, new, hashes, ROOTS[old - 1], ROOTS[new - 1]):
        with pytest.raises(ProofError):
            verify_consistency(**kwargs)
            pytest.fail(f"mutation accepted: {description}")


@pytest.mark.parametrize(
    ("old", "new", "old_root", "new_root", "proof"),
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, []),
        (0, 1, EMPTY_ROOT, ROOTS[0], []),
        (0, 8, EMPTY_ROOT, ROOTS[7], []),
        (1, 1, ROOTS[0], ROOTS[0], []),
        (8, 8, ROOTS[7], ROOTS[7], []),
    ],
    ids=lambda value: _short_id(value),
)
def test_trivially_consistent_sizes_need_an_empty_proof(old, new, old_root, new_root, proof) -> None:
    verify_consistency(old_size=old, new_size=new, proof=proof, old_root=old_root, new_root=new_root)


@pytest.mark.parametrize(
    ("old", "new", "old_root", "new_root", "proof", "message"),
    [
        (1, 1, ROOTS[0], ROOTS[1], [], "forked"),
        (0, 0, EMPTY_ROOT, ROOTS[0], [], "forked"),
        (1, 0, ROOTS[0], EMPTY_ROOT, [], "shrunk"),
        (2, 1, ROOTS[1], ROOTS[0], [], "shrunk"),
        (1, 2, ROOTS[0], ROOTS[1], [], "is empty"),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], "must be empty"),
        (0, 1, EMPTY_ROOT, ROOTS[0], [EMPTY_ROOT], "must be empty"),
        (1, 1, ROOTS[0], ROOTS[0], [EMPTY_ROOT], "must be empty"),
        # Stricter than transparency-dev/merkle, which accepts any old root for size 0.
        (0, 5, ROOTS[0], ROOTS[4], [], "not the root of the empty tree"),
    ],
    ids=lambda value: _short_id(value),
)
def test_consistency_edge_cases_are_rejected(old, new, old_root, new_root, proof, message) -> None:
    with pytest.raises(ProofError, match=message) as failure:
        verify_consistency(old_size=old, new_size=new, proof=proof, old_root=old_root, new_root=new_root)
    assert failure.value.exit_code is ExitCode.VERIFICATION_FAILED


def test_consistency_failure_says_which_root_differs() -> None:
    proof = _tree().consistency_proof(3, 8)
    with pytest.raises(ProofError, match="leads to old root"):
        verify_consistency(old_size=3, new_size=8, proof=proof, old_root=ROOTS[1], new_root=ROOTS[7])
    with pytest.raises(ProofError, match="leads to new root"):
        verify_consistency(old_size=3, new_size=8, proof=proof, old_root=ROOTS[2], new_root=ROOTS[6])


# --- the tree refuses questions it cannot answer ----------------------------------------------


@pytest.mark.parametrize(
    "ask",
    [
        lambda t: t.root(9),
        lambda t: t.root(-1),
        lambda t: t.inclusion_proof(8),
        lambda t: t.inclusion_proof(0, 0),
        lambda t: t.inclusion_proof(-1, 4),
        lambda t: t.consistency_proof(5, 4),
        lambda t: t.consistency_proof(3, 9),
        lambda t: t.leaf_hash_at(8),
        lambda t: t.append_leaf_hash(b"too short"),
    ],
)
def test_tree_rejects_sizes_and_indices_it_does_not_hold(ask) -> None:
    with pytest.raises(MerkleTreeError) as failure:
        ask(_tree())
    assert failure.value.exit_code is ExitCode.INVALID_INPUT


# --- exhaustive small trees and properties ----------------------------------------------------

MAX_LEAVES = 260
ENTRIES = [b"entry-%d" % i for i in range(MAX_LEAVES)]  # distinct, so no two leaves share a hash
BIG_TREE = _tree(ENTRIES)


def test_every_proof_verifies_in_every_tree_up_to_33_leaves() -> None:
    for size in range(1, 34):
        root = BIG_TREE.root(size)
        assert root == reference_root([leaf_hash(e) for e in ENTRIES[:size]])
        for index in range(size):
            verify_inclusion(leaf_hash=leaf_hash(ENTRIES[index]), index=index, tree_size=size,
                             proof=BIG_TREE.inclusion_proof(index, size), root=root)  # fmt: skip
        for old in range(size + 1):
            verify_consistency(old_size=old, new_size=size, proof=BIG_TREE.consistency_proof(old, size),
                               old_root=BIG_TREE.root(old), new_root=root)  # fmt: skip


@st.composite
def sizes_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_LEAVES))
    return size, draw(st.integers(0, size - 1))


@st.composite
def old_and_new_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(1, MAX_LEAVES))
    return draw(st.integers(0, new)), new


@settings(max_examples=150, deadline=None)
@given(sizes_and_index())
def test_property_every_inclusion_proof_verifies(size_index: tuple[int, int]) -> None:
    size, index = size_index
    root = BIG_TREE.root(size)
    assert root == reference_root([leaf_hash(e) for e in ENTRIES[:size]])
    verify_inclusion(leaf_hash=leaf_hash(ENTRIES[index]), index=index, tree_size=size,
                     proof=BIG_TREE.inclusion_proof(index, size), root=root)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(old_and_new_sizes())
def test_property_every_consistency_proof_verifies(sizes: tuple[int, int]) -> None:
    old, new = sizes
    verify_consistency(old_size=old, new_size=new, proof=BIG_TREE.consistency_proof(old, new),
                       old_root=BIG_TREE.root(old), new_root=BIG_TREE.root(new))  # fmt: skip


def _random_bit_flip(proof: list[bytes], data: st.DataObject) -> list[bytes]:
    position, bit = data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 8 * 32 - 1))
    flipped = bytearray(proof[position])
    flipped[bit // 8] ^= 1 << (bit % 8)
    return [*proof[:position], bytes(flipped), *proof[position + 1 :]]


@settings(max_examples=200, deadline=None)
@given(sizes_and_index(), st.data())
def test_property_a_random_inclusion_mutation_fails(size_index: tuple[int, int], data: st.DataObject) -> None:
    size, index = size_index
    proof, root, leaf = BIG_TREE.inclusion_proof(index, size), BIG_TREE.root(size), leaf_hash(ENTRIES[index])
    cases = _inclusion_mutations(index, size, proof, root, leaf)
    if proof:
        cases.append(("random bit flip", {"leaf_hash": leaf, "index": index, "tree_size": size,
                                          "proof": _random_bit_flip(proof, data), "root": root}))  # fmt: skip
    description, kwargs = data.draw(st.sampled_from(cases))
    with pytest.raises(ProofError):
        verify_inclusion(**kwargs)
        pytest.fail(f"mutation accepted: {description}")


@settings(max_examples=200, deadline=None)
@given(old_and_new_sizes(), st.data())
def test_property_a_random_consistency_mutation_fails(sizes: tuple[int, int], data: st.DataObject) -> None:
    old, new = sizes
    proof, old_root, new_root = BIG_TREE.consistency_proof(old, new), BIG_TREE.root(old), BIG_TREE.root(new)
    base = {"old_size": old, "new_size": new, "proof": proof, "old_root": old_root, "new_root": new_root}
    if proof:
        cases = _consistency_mutations(old, new, proof, old_root, new_root)
        cases.append(("random bit flip", {**base, "proof": _random_bit_flip(proof, data)}))
    else:  # old is 0 or equal to new: only an extra hash or a different root can be tried
        cases = [
            ("extra hash", {**base, "proof": [SOME_HASH]}),
            ("old root bit flip", {**base, "old_root": _flip(old_root)}),
            ("old size 0 with a non-empty old root", {**base, "old_size": 0}) if old else
            ("old root is the new root", {**base, "old_root": new_root}),
        ]
    description, kwargs = data.draw(st.sampled_from(cases))
    with pytest.raises(ProofError):
        verify_consistency(**kwargs)
        pytest.fail(f"mutation accepted: {description}")


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70))
def test_bulk_construction_builds_the_same_tree_as_appending(hashes):
    appended, bulk = MerkleTree(hashes), MerkleTree.from_leaf_hashes(hashes)
    assert bulk._levels == appended._levels
    bulk.append_leaf_hash(b"\x07" * 32)
    appended.append_leaf_hash(b"\x07" * 32)
    assert bulk.root() == appended.root()


def test_bulk_construction_refuses_a_malformed_leaf_hash():
    with pytest.raises(MerkleTreeError, match="a leaf hash must be 32 bytes, got 31 bytes"):
        MerkleTree.from_leaf_hashes([b"\x00" * 32, b"\x00" * 31])
