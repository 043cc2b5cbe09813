"""The trail verifier's fast canonical-form check accepts exactly what RFC 8785 (rfc8785) would.

`parse_canonical` takes a shortcut through the json module for common entries; these
properties pin it to the reference: for any JSON object encoded any which way, the line is
accepted if and only if it is byte-for-byte the rfc8785 encoding of what it decodes to.
"""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from federated.audit.trail import parse_canonical

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
