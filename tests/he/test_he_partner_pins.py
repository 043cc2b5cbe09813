"""The key ceremony pins each partner's node signing key in the study's contexts, under the fingerprint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from crypto import Identity, public_key_bytes
from crypto.errors import HEKeyError
from crypto.he_keys import generate_context, load_public_context, load_secret_context, write_key_files


def _keys(count: int) -> dict[str, bytes]:
    return {f"hospital-{i}": public_key_bytes(Identity.generate().public_key) for i in range(count)}


def test_pinned_keys_travel_in_both_contexts(tmp_path):
    pinned = _keys(3)
    files = write_key_files(generate_context("pins", partners=pinned), tmp_path)
    assert load_public_context(files.public).partner_keys == pinned
    assert load_secret_context(files.secret).public.partner_keys == pinned


def test_the_fingerprint_covers_the_pins_so_a_swapped_key_is_detected(tmp_path):
    files = write_key_files(generate_context("pins", partners=_keys(2)), tmp_path)
    doc = json.loads(files.public.read_text())
    doc["partners"]["hospital-1"] = doc["partners"]["hospital-0"][:-4] + "AAA="  # the coordinator's own key, say
    files.public.write_text(json.dumps(doc))
    with pytest.raises(HEKeyError, match="does not match the file's contents"):
        load_public_context(files.public)


def test_a_context_made_before_pinning_loads_with_no_partners(tmp_path):
    files = write_key_files(generate_context("unpinned"), tmp_path)
    assert "partners" not in json.loads(files.public.read_text())
    assert load_public_context(files.public).partner_keys == {}


@pytest.mark.parametrize(("partners", "problem"), [
    ({"hospital a": b"\x01" * 32}, "partner id 'hospital a' must be"),
    ({"hospital-a": b"\x01" * 31}, "is not a raw 32-byte Ed25519 key"),
    ({"hospital-a": b"\x01" * 32, "hospital-b": b"\x01" * 32}, "two partners are pinned to the same key"),
])
def test_malformed_pins_are_refused(partners, problem):
    with pytest.raises(HEKeyError, match=problem):
        generate_context("pins", partners=partners)


def test_the_ceremony_cli_pins_the_partners_public_key_files(tmp_path):
    for name in ("hospital-a", "hospital-b"):
        Identity.generate().save(tmp_path / f"{name}.key")
    done = subprocess.run(
        [sys.executable, "-m", "crypto.keys", "init", "--study", "pins", "--out", str(tmp_path / "keys"), "--json",
         "--partner", f"hospital-a={tmp_path / 'hospital-a.key.pub'}", "--partner", f"hospital-b={tmp_path / 'hospital-b.key.pub'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    pinned = load_public_context(tmp_path / "keys" / "he-public-context.json").partner_keys
    assert pinned["hospital-a"] == public_key_bytes(Identity.load(tmp_path / "hospital-a.key").public_key)
    assert json.loads(done.stdout)["partners"] == "hospital-a, hospital-b"
