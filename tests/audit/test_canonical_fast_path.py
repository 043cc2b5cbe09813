"""The trail verifier's fast canonical-form check accepts exactly what RFC 8785 (rfc8785) would.

`parse_canonical` takes a shortcut through the json module for common entries; these
properties pin it to the reference: for any JSON object encoded any which way, the line is
accepted if and only if it is byte-for-byte the rfc8785 encoding of what it decodes to.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from federated.audit.trail import TrailError, parse_canonical, verify_trail

_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["é", "\u2014", "\U0001f600", "\ufb01", "\x7f", "\x1f", "tab\t", "quote\"", "back\\slash"])
)
_objects = st.dictionaries(
    st.text(max_size=6) | st.sampled_from(["\U0001f600", "\ufb01", "a", "B"]),
    st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                 max_leaves=8),
    max_size=6,
)


def _encodings(value: dict) -> list[bytes]:
    encodings = [
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
        json.dumps(value).encode(),
    ]
    try:
        encodings.append(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, ValueError):
        pass
    return encodings


def _is_canonical(line: bytes) -> bool:
    try:
        return rfc8785.dumps(json.loads(line)) == line
    except (rfc8785.CanonicalizationError, ValueError):
        return False


def _accepted(line: bytes) -> bool:
    try:
        parse_canonical(line)
    except ValueError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(_objects)
def test_accepts_exactly_the_rfc8785_encoding(value):
    for line in _encodings(value):
        assert _accepted(line) == _is_canonical(line), line


@pytest.mark.parametrize(
    ("line", "canonical"),
    [
        (b'{"a":1,"b":2}', True),
        (b'{"b":2,"a":1}', False),  # key order
        (b'{"a": 1}', False),  # whitespace
        (b'{"a":2.0}', False),  # RFC 8785 writes 2
        (b'{"a":2}', True),
        (b'{"a":1e-05}', False),  # RFC 8785 writes 0.00001
        (b'{"a":0.00001}', True),
        (b'{"a":1e+16}', False),
        (b'{"a":6.421}', True),
        (b'{"a":123456789012345}', True),
        (b'{"a":-12345678901234}', True),
        (b'{"a":1234567890123456}', True),  # 16 digits, below 2**53: decided by the full check
        (b'{"a":9007199254740993}', False),  # beyond 2**53: not representable in RFC 8785
        (b'{"a":NaN}', False),
        (b'{"a":"\\u00e9"}', False),  # RFC 8785 writes the character itself
        ('{"a":"é"}'.encode(), True),
        (b'{"a":"\\/"}', False),
        (b'{"a":1,"a":1}', False),  # duplicate key
        (b'[1]', False),  # entries are objects
    ],
)
def test_known_cases(line, canonical):
    assert _accepted(line) == canonical


def _chained(entries: list[dict]) -> bytes:
    lines, prev = [], "0" * 64
    for seq, details in enumerate(entries):
        line = rfc8785.dumps({"seq": seq, "prev": prev, "details": details})
        lines.append(line)
        prev = hashlib.sha256(line).hexdigest()
    return b"\n".join(lines) + b"\n"


def test_a_long_trail_with_entries_needing_the_full_check_verifies(tmp_path):
    details = [{"n": i} for i in range(2500)]
    details[1500] = {"reason": "refusé — contract", "ratio": 1e-07, "big": 2**52}  # non-ASCII, exponent, 16 digits
    path = tmp_path / "trail.jsonl"
    path.write_bytes(_chained(details))
    assert verify_trail(path) == 2500


def test_lines_that_only_parse_when_joined_are_refused(tmp_path):
    # Joined with commas these three lines are three valid objects, but no line is one on its own.
    path = tmp_path / "trail.jsonl"
    path.write_bytes(b'{"a":[{"b":1}\n{"c":2}]}\n{"d":1},{"e":2}\n')
    with pytest.raises(TrailError, match="line 1: not valid JSON"):
        verify_trail(path)


def test_a_damaged_line_deep_in_a_long_trail_is_located(tmp_path):
    path = tmp_path / "trail.jsonl"
    path.write_bytes(_chained([{"n": i} for i in range(3000)]))
    lines = path.read_bytes().split(b"\n")
    lines[2047] = lines[2047].replace(b'"n":2047', b'"n": 2047')
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(TrailError, match="line 2048: not canonical JSON"):
        verify_trail(path)
