"""Where each named array of a round lives inside a bundle's ciphertext slots, and how it is encoded.

Each BFV slot holds an integer modulo the plain modulus t (44 bits by default). Values become signed
integers first — exact integer counts as they are, floats as fixed-point `round(x * 2**scale_bits)` —
and as many of them as fit ("lanes") share one slot: slot = sum_k v_k * 2**(lane_bits * k). Packing is
linear, so adding ciphertexts adds every lane independently, as long as no lane's sum leaves its signed
range. A lane is wide enough for the array's declared `bound` (the largest absolute value any entry of the
*aggregate* may reach), plus the rounding slack of the most partners the parameters allow. The bound is
a contract: a partner's own values beyond it are refused before encryption, and an aggregate whose top
lane leaves its range is refused at decryption, but a lower lane overflowing into its neighbour cannot be
told apart from a legitimate value, so bounds must hold for the sum, not just for each partner.

Precision of a fixed-point array: each partner's rounding error is at most 2**-(scale_bits+1) per entry,
so a sum over P partners is within P * 2**-(scale_bits+1); a count-weighted mean (sum / total count) is
within 2**-(scale_bits+1) (7.6e-6 at the default 16 bits).

The layout is serializable JSON holding only its inputs (names, shapes, kinds, scales, bounds, slot count,
plain modulus, partner limit); everything else is re-derived, so two parties that agree on the JSON agree
on every bit position. This module must never round a count: integer arrays are refused, not converted,
when they are not integers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import rfc8785

from crypto.errors import EncodingError, LayoutMismatchError
from crypto.he_keys import PublicContext

DEFAULT_SCALE_BITS = 16
Kind = Literal["int", "fixed"]


@dataclass(frozen=True)
class ArrayLayout:
    """One named array: its encoding and its place (first slot, lanes per slot) in the bundle."""

    name: str
    shape: tuple[int, ...]
    kind: Kind
    scale_bits: int
    bound: float
    lane_bits: int
    lanes: int
    first_slot: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def slots(self) -> int:
        return -(-self.size // self.lanes)

    @property
    def limit(self) -> int:
        """Largest absolute encoded integer one partner may send (and the aggregate may reach, less slack)."""
        return math.floor(self.bound * 2**self.scale_bits)

    def encode(self, values: Any) -> np.ndarray:
        """Check one partner's array against this layout and return its signed integers, flattened."""
        array = np.asarray(values)
        if array.shape != self.shape:
            raise LayoutMismatchError(f"array {self.name!r} has shape {array.shape}, the layout says {self.shape}")
        if self.kind == "int":
            if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
                raise LayoutMismatchError(
                    f"array {self.name!r} is {array.dtype}, but the layout holds it as exact integer counts"
                )
            scaled = array
        else:
            if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
                raise LayoutMismatchError(f"array {self.name!r} is {array.dtype}, not a real number array")
            if not np.all(np.isfinite(array)):
                raise EncodingError(f"array {self.name!r} holds NaN or infinity")
            scaled = np.rint(array.astype(np.float64) * 2.0**self.scale_bits)
        if scaled.size and (scaled.max() > self.limit or scaled.min() < -self.limit):
            peak = float(np.max(np.abs(array.astype(np.float64))))
            raise EncodingError(f"array {self.name!r} reaches |{peak:g}|, beyond the layout bound {self.bound:g}")
        return scaled.astype(np.int64).reshape(-1)

    def decode(self, integers: np.ndarray) -> np.ndarray:
        """Turn aggregated signed integers back into this array's values (int64 or float64)."""
        shaped = integers.reshape(self.shape)
        if self.kind == "int":
            return shaped
        return shaped.astype(np.float64) / 2.0**self.scale_bits

    def pack(self, integers: np.ndarray) -> np.ndarray:
        """Put `lanes` signed integers into each slot value (int64, one per slot)."""
        padded = np.zeros(self.lanes * self.slots, dtype=np.int64)
        padded[: self.size] = integers
        lanes = padded.reshape(self.lanes, self.slots)
        packed = lanes[0].copy()
        for k in range(1, self.lanes):
            packed += lanes[k] * np.int64(1 << (self.lane_bits * k))
        return packed

    def unpack(self, slot_values: np.ndarray) -> np.ndarray:
        """Split summed slot values into lanes; refuse if any lane left its range or padding is not zero."""
        rest = slot_values.astype(np.int64)
        half, mask = np.int64(1 << (self.lane_bits - 1)), np.int64((1 << self.lane_bits) - 1)
        lanes = []
        for _ in range(self.lanes):
            low = ((rest + half) & mask) - half
            lanes.append(low)
            rest = (rest - low) >> self.lane_bits
        values = np.concatenate(lanes)
        if np.any(rest) or np.any(values[self.size :]):
            raise EncodingError(
                f"the aggregate of {self.name!r} does not fit its layout bound {self.bound:g} "
                f"(more partners or larger values than declared)"
            )
        return values[: self.size]


@dataclass(frozen=True)
class BundleLayout:
    """Every array of a round, in order, over the slots of as few ciphertexts as they need."""

    slot_count: int
    plain_modulus: int
    max_addends: int
    arrays: tuple[ArrayLayout, ...]

    @property
    def used_slots(self) -> int:
        return sum(a.slots for a in self.arrays)

    @property
    def ciphertext_count(self) -> int:
        """Ciphertexts needed, always leaving at least one zero slot as a decryption check."""
        return self.used_slots // self.slot_count + 1

    @property
    def value_count(self) -> int:
        return sum(a.size for a in self.arrays)

    def to_json(self) -> dict[str, Any]:
        return {
            "slot_count": self.slot_count,
            "plain_modulus": str(self.plain_modulus),  # RFC 8785 integers stop at 2**53
            "max_addends": self.max_addends,
            "arrays": [
                {"name": a.name, "shape": list(a.shape), "kind": a.kind, "scale_bits": a.scale_bits, "bound": a.bound}
                for a in self.arrays
            ],
        }

    @classmethod
    def from_json(cls, doc: Any) -> BundleLayout:
        try:
            specs = [
                (str(a["name"]), tuple(int(d) for d in a["shape"]), a["kind"], int(a["scale_bits"]), float(a["bound"]))
                for a in doc["arrays"]
            ]
            return _derive(int(doc["slot_count"]), int(doc["plain_modulus"]), int(doc["max_addends"]), specs)
        except (KeyError, TypeError, ValueError) as exc:
            raise LayoutMismatchError(f"malformed layout JSON ({exc!r})") from exc

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical layout JSON: equal digests mean identical packing."""
        return hashlib.sha256(rfc8785.dumps(self.to_json())).hexdigest()

    def check_context(self, public: PublicContext) -> None:
        params = public.parameters
        if (self.slot_count, self.plain_modulus) != (params.slot_count, params.plain_modulus):
            raise LayoutMismatchError(
                f"layout is for {self.slot_count} slots mod {self.plain_modulus}, study {public.study_id!r} "
                f"uses {params.slot_count} slots mod {params.plain_modulus}"
            )

    def check_names(self, arrays: Mapping[str, Any]) -> None:
        expected, given = [a.name for a in self.arrays], set(arrays)
        if set(expected) != given:
            missing, extra = sorted(set(expected) - given), sorted(given - set(expected))
            raise LayoutMismatchError(f"arrays do not match the layout: missing {missing}, unexpected {extra}")


def plan_layout(
    template: Mapping[str, Any],
    *,
    context: PublicContext,
    bounds: float | Mapping[str, float],
    scale_bits: int | Mapping[str, int] = DEFAULT_SCALE_BITS,
) -> BundleLayout:
    """Lay out arrays shaped like `template`'s (integer dtypes exact, floats fixed-point), in its order.

    `bounds` is the largest absolute value any entry of the aggregate may reach (one number, or one per
    array); `scale_bits` the fixed-point fraction bits of float arrays (ignored for integer arrays).
    """
    specs = []
    for name, value in template.items():
        array = np.asarray(value)
        kind: Kind = "int" if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_ else "fixed"
        bound = bounds[name] if isinstance(bounds, Mapping) else bounds
        scale = 0 if kind == "int" else (scale_bits[name] if isinstance(scale_bits, Mapping) else scale_bits)
        specs.append((name, tuple(array.shape), kind, scale, float(bound)))
    params = context.parameters
    return _derive(params.slot_count, params.plain_modulus, params.max_addends, specs)


def _derive(
    slot_count: int, plain_modulus: int, max_addends: int, specs: list[tuple[str, tuple[int, ...], Any, int, float]]
) -> BundleLayout:
    usable_bits = plain_modulus.bit_length() - 1  # |slot| < 2**usable_bits / 2 <= t / 2 keeps the sign
    arrays, first, names = [], 0, set()
    for name, shape, kind, scale, bound in specs:
        if kind not in ("int", "fixed") or name in names or not name:
            raise LayoutMismatchError(f"array {name!r}: duplicate or empty name, or unknown kind {kind!r}")
        if not (math.isfinite(bound) and bound > 0) or scale < 0 or (kind == "int" and scale != 0):
            raise EncodingError(f"array {name!r}: bound must be positive and finite, scale_bits >= 0 (0 for counts)")
        names.add(name)
        slack = 0 if kind == "int" else -(-max_addends // 2)  # rounding: at most 1/2 per partner
        lane_bits = (math.floor(bound * 2**scale) + slack).bit_length() + 1
        lanes = usable_bits // lane_bits
        if lanes == 0:
            raise EncodingError(
                f"array {name!r}: bound {bound:g} at {scale} fraction bits needs {lane_bits}-bit lanes; "
                f"a slot holds {usable_bits} bits (lower the bound or scale_bits)"
            )
        layout = ArrayLayout(name, shape, kind, scale, bound, lane_bits, lanes, first)
        arrays.append(layout)
        first += layout.slots
    return BundleLayout(slot_count, plain_modulus, max_addends, tuple(arrays))
