"""The RFC 9162 (Certificate Transparency v2) Merkle tree behind the audit trail.

Leaf hash = SHA-256(0x00 || entry), node hash = SHA-256(0x01 || left || right),
and the root of the empty tree is SHA-256(""). `MerkleTree` keeps every complete
power-of-two subtree hash, so appending is amortised O(1) and a root or proof for
any earlier size costs O(log n) hashes. The verifiers follow RFC 9162 §2.1.3.2
and §2.1.4.2 step by step, deriving every left/right direction from the index
and sizes alone.

This module must never trust anything a proof says about its own shape (it
carries hashes only), never return a boolean from a verifier (they raise
`ProofError`), and never import `federated`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from crypto.errors import MerkleTreeError, ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """The RFC 9162 hash of one log entry: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k, for n >= 2: where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only list of leaf hashes with roots and proofs for every size it has held."""

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # _levels[h][i] is the hash of the complete subtree of 2**h leaves starting at leaf i * 2**h.
        self._levels: list[list[bytes]] = [[]]
        for hash_ in leaf_hashes:
            self.append_leaf_hash(hash_)

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Sequence[bytes]) -> MerkleTree:
        """The same tree as appending each hash in turn, built a level at a time (about twice as fast)."""
        row = list(leaf_hashes)
        if not all(isinstance(hash_, bytes) and len(hash_) == HASH_SIZE for hash_ in row):
            bad = next(hash_ for hash_ in row if not isinstance(hash_, bytes) or len(hash_) != HASH_SIZE)
            raise MerkleTreeError(f"a leaf hash must be {HASH_SIZE} bytes, got {_describe(bad)}")
        levels = [row]
        sha256 = hashlib.sha256
        while len(row) >= 2:
            row = [sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)]
            levels.append(row)
        tree = cls()
        tree._levels = levels
        return tree

    def __len__(self) -> int:
        return len(self._levels[0])

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0])

    def append(self, entry: bytes) -> int:
        """Append one entry (hashed as a leaf) and return its index."""
        return self.append_leaf_hash(leaf_hash(entry))

    def append_leaf_hash(self, hash_: bytes) -> int:
        """Append an already computed leaf hash and return its index."""
        if not isinstance(hash_, bytes) or len(hash_) != HASH_SIZE:
            raise MerkleTreeError(f"a leaf hash must be {HASH_SIZE} bytes, got {_describe(hash_)}")
        levels = self._levels
        levels[0].append(hash_)
        height = 0
        while len(levels[height]) % 2 == 0:  # the newest subtree at this height just became complete
            row = levels[height]
            if height + 1 == len(levels):
                levels.append([])
            levels[height + 1].append(node_hash(row[-2], row[-1]))
            height += 1
        return len(levels[0]) - 1

    def leaf_hash_at(self, index: int) -> bytes:
        """The leaf hash stored at `index`."""
        self._check_index(index, self.size)
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree made of the first `size` leaves (default: all of them)."""
        size = self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 PATH(index, D[size]): sibling hashes from the leaf up to the root."""
        size = self._check_size(size)
        self._check_index(index, size)
        proof: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _largest_power_of_two_below(hi - lo)
            if index < lo + k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo += k
        proof.reverse()  # collected root-down; RFC 9162 lists them leaf-up
        return proof

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 PROOF(old_size, D[new_size]): what shows the old tree is a prefix of the new."""
        new_size = self._check_size(new_size)
        if isinstance(old_size, bool) or not isinstance(old_size, int) or not 0 <= old_size <= new_size:
            raise MerkleTreeError(f"old size {old_size!r} must be an integer in [0, {new_size}]")
        if old_size in (0, new_size):
            return []
        proof: list[bytes] = []
        lo, hi, m, whole_old_tree = 0, new_size, old_size, True
        while True:  # SUBPROOF(m, D[lo:hi], whole_old_tree), unrolled
            if m == hi - lo:
                if not whole_old_tree:
                    proof.append(self._subtree(lo, hi))
                break
            k = _largest_power_of_two_below(hi - lo)
            if m <= k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo, m, whole_old_tree = lo + k, m - k, False
        proof.reverse()
        return proof

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC 9162 recursion produces (start aligned, end <= size)."""
        n = end - start
        if n & (n - 1) == 0:
            height = n.bit_length() - 1
            return self._levels[height][start >> height]
        k = _largest_power_of_two_below(n)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= self.size:
            raise MerkleTreeError(f"tree size {size!r} must be an integer in [0, {self.size}]")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
            raise MerkleTreeError(f"leaf index {index!r} is not inside a tree of size {size}")


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 root over a complete list of leaf hashes."""
    return MerkleTree(leaf_hashes).root()


def verify_inclusion(
    *, leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` sits at `index` in the tree of `tree_size` leaves with `root`.

    RFC 9162 §2.1.3.2. Returns None; raises `ProofError` naming what failed.
    """
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root")
    _check_proof(proof)
    _check_count(tree_size, "tree size")
    _check_count(index, "leaf index")
    where = f"leaf {index} of a tree of size {tree_size}"
    if index >= tree_size:
        raise ProofError(f"leaf index {index} is not inside a tree of size {tree_size}")
    expected = _inclusion_proof_length(index, tree_size)
    if len(proof) != expected:
        raise ProofError(
            f"an inclusion proof for {where} holds {expected} hashes, this one holds {len(proof)}"
        )
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError(f"the inclusion proof for {where} has more hashes than the tree has levels")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"the inclusion proof for {where} has fewer hashes than the tree has levels")
    if r != root:
        raise ProofError(
            f"the inclusion proof for {where} leads to root {r.hex()}, not to the given root {root.hex()}"
        )


def verify_consistency(
    *, old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that the tree of `old_size` leaves with `old_root` is a prefix of the one with `new_root`.

    RFC 9162 §2.1.4.2 for 0 < old_size < new_size. Equal sizes need an empty proof and equal
    roots; old_size 0 needs an empty proof and `old_root` equal to the empty-tree root.
    Returns None; raises `ProofError` naming what failed.
    """
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    _check_proof(proof)
    _check_count(old_size, "old size")
    _check_count(new_size, "new size")
    where = f"from size {old_size} to size {new_size}"
    if old_size > new_size:
        raise ProofError(f"no consistency proof can go {where}: the log would have shrunk")
    if old_size == 0 or old_size == new_size:
        if proof:
            raise ProofError(f"a consistency proof {where} must be empty, this one holds {len(proof)} hashes")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise ProofError(f"the old root {old_root.hex()} is not the root of the empty tree")
        if old_size == new_size and old_root != new_root:
            raise ProofError(f"two different roots for the same size {old_size}: the log forked")
        return
    if not proof:  # RFC 9162 §2.1.4.2 step 1
        raise ProofError(f"the consistency proof {where} is empty")
    expected = _consistency_proof_length(old_size, new_size)
    if len(proof) != expected:
        raise ProofError(f"a consistency proof {where} holds {expected} hashes, this one holds {len(proof)}")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"the consistency proof {where} has more hashes than the trees have levels")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"the consistency proof {where} has fewer hashes than the trees have levels")
    if fr != old_root:
        raise ProofError(
            f"the consistency proof {where} leads to old root {fr.hex()}, not to the given {old_root.hex()}"
        )
    if sr != new_root:
        raise ProofError(
            f"the consistency proof {where} leads to new root {sr.hex()}, not to the given {new_root.hex()}"
        )


def _inclusion_proof_length(index: int, size: int) -> int:
    """Hashes in PATH(index, D[size]): levels below where the paths to index and size-1 part, plus
    the left siblings above that point."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_proof_length(old_size: int, new_size: int) -> int:
    """Hashes in PROOF(old_size, D[new_size]) for 0 < old_size < new_size."""
    shift = (old_size & -old_size).bit_length() - 1  # trailing zero bits of old_size
    length = _inclusion_proof_length(old_size - 1, new_size) - shift
    return length if old_size == 1 << shift else length + 1


def _check_hash(value: object, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"the {what} must be {HASH_SIZE} bytes, got {_describe(value)}")


def _check_proof(proof: Sequence[bytes]) -> None:
    if isinstance(proof, (bytes, str)):
        raise ProofError("a proof must be a sequence of hashes, not a single bytes or str value")
    for position, hash_ in enumerate(proof):
        if not isinstance(hash_, bytes) or len(hash_) != HASH_SIZE:
            raise ProofError(f"proof[{position}] must be {HASH_SIZE} bytes, got {_describe(hash_)}")


def _check_count(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofError(f"the {what} must be a non-negative integer, got {value!r}")


def _describe(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
