"""Encrypted aggregation: exactness against the plaintext path, custody, and every refusal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from crypto.he_aggregation import (
    EncryptedBundle,
    add_bundles,
    decrypt_bundle,
    encrypt_bundle,
)
from crypto.errors import (
    CiphertextError,
    EncodingError,
    HEKeyError,
    LayoutMismatchError,
)
from crypto.he_keys import SecretContext, generate_context
from crypto.he_layout import BundleLayout, plan_layout

PARTNERS = 10
CLIP = 1.0  # largest |weight update| a partner may send
MAX_EXAMPLES = 1000  # per partner


@pytest.fixture(scope="module")
def study() -> SecretContext:
    return generate_context("study-a")


@pytest.fixture(scope="module")
def other_study() -> SecretContext:
    return generate_context("study-b")


def _round(seed: int) -> dict[str, np.ndarray]:
    """One partner's round: weights already multiplied by its example count, plus integer statistics."""
    rng = np.random.default_rng(seed)
    examples = int(rng.integers(1, MAX_EXAMPLES))
    weights = np.clip(rng.normal(0.0, 0.2, size=(50, 97)), -CLIP, CLIP)
    return {
        "weights": examples * weights,
        "confusion": rng.integers(0, examples, size=(3, 3)),
        "histogram": rng.integers(0, examples, size=(2, 64)),
        "examples": np.array(examples),
    }


@pytest.fixture(scope="module")
def rounds() -> list[dict[str, np.ndarray]]:
    return [_round(seed) for seed in range(PARTNERS)]


@pytest.fixture(scope="module")
def layout(study: SecretContext, rounds: list[dict[str, np.ndarray]]) -> BundleLayout:
    total = PARTNERS * MAX_EXAMPLES
    return plan_layout(rounds[0], context=study.public, bounds={"weights": total * CLIP, "confusion": total,
                                                                 "histogram": total, "examples": total})


@pytest.fixture(scope="module")
def bundles(study: SecretContext, layout: BundleLayout, rounds: list[dict[str, np.ndarray]]) -> list[bytes]:
    return [encrypt_bundle(r, context=study, layout=layout).to_bytes() for r in rounds]


@pytest.fixture(scope="module")
def aggregate(study: SecretContext, bundles: list[bytes]) -> EncryptedBundle:
    received = [EncryptedBundle.from_bytes(b, source=f"partner {i}") for i, b in enumerate(bundles)]
    return add_bundles(received, public_context=study.public)


def _tamper(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_counts_are_exact_after_encrypt_add_decrypt(study, rounds, aggregate) -> None:
    result = decrypt_bundle(EncryptedBundle.from_bytes(aggregate.to_bytes()), secret_context=study)
    for name in ("confusion", "histogram", "examples"):
        assert result[name].dtype == np.int64
        np.testing.assert_array_equal(result[name], sum(r[name] for r in rounds))
    assert aggregate.addends == PARTNERS


def test_averaged_weights_are_within_1e4_of_the_largest_magnitude(study, rounds, aggregate) -> None:
    result = decrypt_bundle(aggregate, secret_context=study)
    plain_mean = sum(r["weights"] for r in rounds) / sum(int(r["examples"]) for r in rounds)
    he_mean = result["weights"] / result["examples"]
    assert np.max(np.abs(he_mean - plain_mean)) <= 1e-4 * np.max(np.abs(plain_mean))


def test_the_coordinator_adds_with_the_public_context_alone(study, bundles) -> None:
    public_only = dataclasses.replace(study.public)  # a fresh object: no SEAL key was ever loaded into it
    total = add_bundles([EncryptedBundle.from_bytes(b) for b in bundles[:2]], public_context=public_only)
    assert total.addends == 2


def test_a_public_context_cannot_decrypt(study, aggregate) -> None:
    with pytest.raises(HEKeyError, match="needs a partner's secret context; PublicContext holds no key"):
        decrypt_bundle(aggregate, secret_context=study.public)  # type: ignore[arg-type]


def test_a_bundle_round_trips_through_bytes(study, bundles) -> None:
    bundle = EncryptedBundle.from_bytes(bundles[0])
    assert bundle.to_bytes() == bundles[0] and bundle.addends == 1
    assert BundleLayout.from_json(bundle.layout.to_json()) == bundle.layout


def test_seeded_ciphertexts_halve_the_bytes_on_the_wire(study, layout, rounds) -> None:
    seeded = encrypt_bundle(rounds[0], context=study, layout=layout)
    full = encrypt_bundle(rounds[0], context=study, layout=layout, seeded=False)
    assert seeded.nbytes < 0.55 * full.nbytes
    assert seeded.nbytes / layout.value_count <= 16
    mixed = add_bundles([seeded, full], public_context=study.public)
    np.testing.assert_array_equal(decrypt_bundle(mixed, secret_context=study)["confusion"], 2 * rounds[0]["confusion"])


def test_another_studys_key_is_refused_at_the_coordinator(other_study, bundles) -> None:
    with pytest.raises(HEKeyError, match="bundle 0 was encrypted for study 'study-a'"):
        add_bundles([EncryptedBundle.from_bytes(bundles[0])], public_context=other_study.public)


def test_another_studys_key_is_refused_at_decryption(other_study, aggregate) -> None:
    with pytest.raises(HEKeyError, match="this context is study 'study-b'"):
        decrypt_bundle(aggregate, secret_context=other_study)


def test_a_wrong_key_behind_a_forged_fingerprint_is_detected(other_study, aggregate) -> None:
    forged = dataclasses.replace(aggregate, study_id="study-b", fingerprint=other_study.fingerprint)
    with pytest.raises(CiphertextError, match="wrong key or tampered ciphertext"):
        decrypt_bundle(EncryptedBundle.from_bytes(forged.to_bytes()), secret_context=other_study)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_corrupted_bundle_bytes_are_refused(bundles, where) -> None:
    data = bundles[0]
    with pytest.raises(CiphertextError, match="checksum mismatch"):
        EncryptedBundle.from_bytes(_tamper(data, int(len(data) * where)))


def test_a_truncated_bundle_is_refused(bundles) -> None:
    with pytest.raises(CiphertextError, match="partner 3"):
        EncryptedBundle.from_bytes(bundles[0][:-100], source="partner 3")


@pytest.mark.parametrize("damage", ["truncated", "random", "header"])
def test_a_ciphertext_seal_cannot_read_is_refused_despite_a_recomputed_checksum(study, bundles, damage) -> None:
    bundle = EncryptedBundle.from_bytes(bundles[0])
    blob = bundle.ciphertexts[0]
    broken = {
        "truncated": blob[: len(blob) // 2],
        "random": np.random.default_rng(0).bytes(len(blob)),
        "header": _tamper(blob, 2),
    }[damage]
    tampered = dataclasses.replace(bundle, ciphertexts=(broken, *bundle.ciphertexts[1:]))
    with pytest.raises(CiphertextError, match="ciphertext 0: SEAL cannot load it"):
        decrypt_bundle(EncryptedBundle.from_bytes(tampered.to_bytes()), secret_context=study)


def test_bundles_with_different_layouts_are_not_added(study, layout, rounds, bundles) -> None:
    other_layout = plan_layout(rounds[0], context=study.public, bounds=2 * PARTNERS * MAX_EXAMPLES)
    other = encrypt_bundle(rounds[0], context=study, layout=other_layout)
    with pytest.raises(LayoutMismatchError, match="bundle 1 has layout"):
        add_bundles([EncryptedBundle.from_bytes(bundles[0]), other], public_context=study.public)


def test_arrays_must_match_the_layout(study, layout, rounds) -> None:
    missing = {k: v for k, v in rounds[0].items() if k != "histogram"}
    with pytest.raises(LayoutMismatchError, match=r"missing \['histogram'\]"):
        encrypt_bundle(missing, context=study, layout=layout)
    with pytest.raises(LayoutMismatchError, match="has shape"):
        encrypt_bundle({**rounds[0], "confusion": np.zeros((2, 2), dtype=int)}, context=study, layout=layout)
    with pytest.raises(LayoutMismatchError, match="exact integer counts"):
        encrypt_bundle({**rounds[0], "confusion": np.zeros((3, 3))}, context=study, layout=layout)


def test_values_beyond_the_bound_are_refused_before_encryption(study, layout, rounds) -> None:
    too_big = rounds[0]["weights"].copy()
    too_big[0, 0] = 2 * PARTNERS * MAX_EXAMPLES * CLIP
    with pytest.raises(EncodingError, match="beyond the layout bound"):
        encrypt_bundle({**rounds[0], "weights": too_big}, context=study, layout=layout)
    with pytest.raises(EncodingError, match="NaN"):
        encrypt_bundle({**rounds[0], "weights": np.full((50, 97), np.nan)}, context=study, layout=layout)


def test_an_aggregate_that_overflows_its_bound_is_detected(study) -> None:
    counts = {"counts": np.full(10, 1000)}
    layout = plan_layout(counts, context=study.public, bounds=1000)
    bundles = [encrypt_bundle(counts, context=study, layout=layout) for _ in range(3)]
    with pytest.raises(EncodingError, match="does not fit its layout bound"):
        decrypt_bundle(add_bundles(bundles, public_context=study.public), secret_context=study)


def test_more_contributions_than_the_parameters_allow_are_refused(study, bundles) -> None:
    bundle = EncryptedBundle.from_bytes(bundles[0])
    crowded = dataclasses.replace(bundle, addends=study.public.parameters.max_addends)
    with pytest.raises(CiphertextError, match="exceed"):
        add_bundles([crowded, bundle], public_context=study.public)


def test_small_counts_share_slots(study, layout) -> None:
    by_name = {a.name: a for a in layout.arrays}
    assert by_name["confusion"].lanes == 2 and by_name["weights"].lanes == 1
    assert layout.ciphertext_count == 2
