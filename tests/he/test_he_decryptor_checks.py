"""The decrypting partner's checks: what it refuses to decrypt, and that it decrypts the honest sum."""

from __future__ import annotations

import numpy as np
import pytest

from crypto import Identity
from crypto.he_aggregation import (
    EncryptedBundle,
    add_bundles,
    decrypt_bundle,
    encrypt_bundle,
    slot_blinding,
)
from crypto.he_errors import EncodingError
from crypto.he_keys import load_secret_context
from crypto.he_layout import plan_layout
from federated.client.encryption import (
    MIN_DECRYPTION_COHORT,
    canary_for,
    decrypt_aggregate,
)
from federated.errors import RefusalError
from federated.messages.encryption import DecryptSpec, DecryptTask, sign_contribution

ROUND = 3
PARTNERS = ("hospital-a", "hospital-b", "hospital-c")


@pytest.fixture(scope="module")
def secret(keys):
    return load_secret_context(keys.secret)


@pytest.fixture(scope="module")
def identities() -> dict[str, Identity]:
    return {name: Identity.generate() for name in PARTNERS}


def _layout(secret, *, update: bool):
    template = {"canary": np.zeros(2, np.int64), "confusion": np.zeros((2, 2), np.int64)}
    if update:  # a training bundle: the canary and the blinding prove membership, as for statistics
        template["update/w"] = np.zeros(3, np.float64)
    bounds = {"canary": 3 * 2.0**30, "confusion": 10_000, "update/w": 100.0}
    return plan_layout(template, context=secret.public, bounds=bounds)


def _bundles(secret, layout, *, update: bool, blinded: bool = True):
    bundles = {}
    for i, name in enumerate(PARTNERS):
        arrays = {"canary": canary_for(secret, study="he-study", round=ROUND, partner=name), "confusion": np.full((2, 2), i + 1)}
        if update:
            arrays["update/w"] = np.full(3, 0.5 * (i + 1))
        blinding = slot_blinding(secret, study="he-study", round=ROUND, partner=name, layout=layout) if blinded else None
        bundles[name] = encrypt_bundle(arrays, context=secret, layout=layout, blinding=blinding)
    return bundles


@pytest.fixture(scope="module")
def layout(secret):
    return _layout(secret, update=False)


@pytest.fixture(scope="module")
def bundles(secret, layout):
    return _bundles(secret, layout, update=False)


@pytest.fixture(scope="module")
def training_layout(secret):
    return _layout(secret, update=True)


@pytest.fixture(scope="module")
def training_bundles(secret, training_layout):
    return _bundles(secret, training_layout, update=True)


def _task(secret, layout, bundles, identities, *, partners=PARTNERS, min_cohort=2, aggregate=None,
          contributions=None) -> DecryptTask:
    chosen = [bundles[p] for p in partners]
    total = aggregate or add_bundles(chosen, public_context=secret.public)
    signed = contributions or [
        sign_contribution(identities[p], partner=p, study="he-study", round=ROUND, bundle=bundles[p]) for p in partners
    ]
    spec = DecryptSpec(study="he-study", round=ROUND, fingerprint=secret.fingerprint, layout_sha256=layout.digest,
                       min_cohort=min_cohort, aggregate_sha256=total.digest, contributions=signed)
    return DecryptTask(spec=spec, aggregate=total)


def _decrypt(task: DecryptTask, secret, identities, me: str = "hospital-a"):
    return decrypt_aggregate(task, partner=me, identity=identities[me], secret=secret)


def test_the_honest_sum_of_the_cohort_is_decrypted_and_the_canary_stripped(secret, layout, bundles, identities):
    result = _decrypt(_task(secret, layout, bundles, identities), secret, identities)
    np.testing.assert_array_equal(result["confusion"], np.full((2, 2), 1 + 2 + 3))
    assert set(result) == {"confusion"}


def test_an_honest_training_sum_is_decrypted_from_signed_digests_alone(secret, training_layout, training_bundles, identities):
    task = _task(secret, training_layout, training_bundles, identities)
    np.testing.assert_allclose(_decrypt(task, secret, identities)["update/w"], np.full(3, 0.5 * (1 + 2 + 3)))


def test_one_partners_update_summed_with_itself_is_caught_by_the_canary(secret, training_layout, training_bundles, identities):
    # Three signed contributions, three addends, but the aggregate is hospital-a's bundle three times.
    thrice = add_bundles([training_bundles["hospital-a"]] * 3, public_context=secret.public)
    task = _task(secret, training_layout, training_bundles, identities, aggregate=thrice)
    with pytest.raises(RefusalError, match="does not hold exactly one bundle of each listed contributor"):
        _decrypt(task, secret, identities)


def test_a_single_contribution_aggregate_is_refused_whatever_the_declared_minimum(secret, layout, bundles, identities):
    task = _task(secret, layout, bundles, identities, partners=("hospital-a",), min_cohort=1)
    with pytest.raises(RefusalError, match=f"holds 1 contribution\\(s\\), fewer than the minimum cohort of {MIN_DECRYPTION_COHORT}") as refusal:
        _decrypt(task, secret, identities)
    assert refusal.value.clause == "encryption"


def test_an_aggregate_below_the_study_minimum_cohort_is_refused(secret, layout, bundles, identities):
    task = _task(secret, layout, bundles, identities, partners=("hospital-a", "hospital-b"), min_cohort=3)
    with pytest.raises(RefusalError, match="holds 2 contribution\\(s\\), fewer than the minimum cohort of 3"):
        _decrypt(task, secret, identities)


def test_an_aggregate_without_the_decryptors_own_contribution_is_refused(secret, layout, bundles, identities):
    task = _task(secret, layout, bundles, identities, partners=("hospital-b", "hospital-c"))
    with pytest.raises(RefusalError, match=r"this node's own contribution \(hospital-a\) is not among the aggregate's"):
        _decrypt(task, secret, identities)


def test_a_contribution_the_partner_did_not_sign_is_refused(secret, layout, bundles, identities):
    forged = sign_contribution(Identity.generate(), partner="hospital-b", study="he-study", round=ROUND, bundle=bundles["hospital-b"])
    genuine = sign_contribution(identities["hospital-b"], partner="hospital-b", study="he-study", round=ROUND, bundle=bundles["hospital-b"])
    tampered = forged.model_copy(update={"key": genuine.key})  # the right key, someone else's signature
    contributions = [sign_contribution(identities["hospital-a"], partner="hospital-a", study="he-study", round=ROUND,
                                       bundle=bundles["hospital-a"]), tampered]
    task = _task(secret, layout, bundles, identities, partners=("hospital-a", "hospital-b"), contributions=contributions)
    with pytest.raises(RefusalError, match="the contribution of 'hospital-b' .* is not signed by its key"):
        _decrypt(task, secret, identities)


def test_a_contribution_signed_for_another_round_is_refused(secret, layout, bundles, identities):
    stale = [sign_contribution(identities[p], partner=p, study="he-study", round=ROUND - 1, bundle=bundles[p]) for p in PARTNERS]
    with pytest.raises(RefusalError, match="is not signed by its key"):
        _decrypt(_task(secret, layout, bundles, identities, contributions=stale), secret, identities)


def test_one_partner_counted_twice_is_refused(secret, layout, bundles, identities):
    twice = [sign_contribution(identities["hospital-a"], partner="hospital-a", study="he-study", round=ROUND,
                               bundle=bundles["hospital-a"])] * 2
    task = _task(secret, layout, bundles, identities, partners=("hospital-a",), contributions=twice,
                 aggregate=add_bundles([bundles["hospital-a"]] * 2, public_context=secret.public))
    with pytest.raises(RefusalError, match="each must be distinct"):
        _decrypt(task, secret, identities)


def test_an_aggregate_that_is_not_one_bundle_of_each_contributor_is_refused(secret, layout, bundles, identities):
    # The coordinator tries to have hospital-b's bundle decrypted next to a doubled own contribution.
    lopsided = add_bundles([bundles["hospital-a"], bundles["hospital-a"], bundles["hospital-b"]], public_context=secret.public)
    task = _task(secret, layout, bundles, identities, aggregate=lopsided)
    with pytest.raises(RefusalError, match="does not hold exactly one bundle of each listed contributor"):
        _decrypt(task, secret, identities)


def test_a_bundle_unblinds_only_as_part_of_the_exact_cohort_it_was_summed_with(secret, layout, bundles):
    # Control: hospital-a's bundle with hospital-a's own blinding removed gives its values back (all 1s).
    own = slot_blinding(secret, study="he-study", round=ROUND, partner="hospital-a", layout=layout)
    np.testing.assert_array_equal(decrypt_bundle(bundles["hospital-a"], secret_context=secret, blinding=own)["confusion"],
                                  np.full((2, 2), 1))
    # What a decryptor removes for a claimed cohort {a, b}: hospital-b's blinding stays in, a uniform value mod t.
    other = slot_blinding(secret, study="he-study", round=ROUND, partner="hospital-b", layout=layout)
    try:
        confusion = decrypt_bundle(bundles["hospital-a"], secret_context=secret,
                                   blinding=np.mod(own + other, layout.plain_modulus))["confusion"]
    except EncodingError:
        return  # out of the layout's bounds: refused, nothing of hospital-a's comes out
    assert not np.any(confusion == 1), confusion


def test_one_bundle_presented_as_the_cohorts_aggregate_is_refused(secret, layout, bundles, identities):
    alone = bundles["hospital-a"]
    dressed = EncryptedBundle(alone.study_id, alone.fingerprint, alone.layout, len(PARTNERS), alone.ciphertexts)
    with pytest.raises(RefusalError, match="does not hold exactly one bundle of each listed contributor"):
        _decrypt(_task(secret, layout, bundles, identities, aggregate=dressed), secret, identities)


def test_blindings_are_uniform_mod_t_and_differ_by_partner_and_round(secret, layout):
    a = slot_blinding(secret, study="he-study", round=ROUND, partner="hospital-a", layout=layout)
    assert a.shape == (layout.used_slots,) and a.dtype == np.int64 and np.all((0 <= a) & (a < layout.plain_modulus))
    assert np.array_equal(a, slot_blinding(secret, study="he-study", round=ROUND, partner="hospital-a", layout=layout))
    for other in (dict(partner="hospital-b", round=ROUND), dict(partner="hospital-a", round=ROUND + 1)):
        assert not np.any(a == slot_blinding(secret, study="he-study", layout=layout, **other))


def test_a_decryption_task_carrying_a_partners_bundle_is_refused(secret, layout, bundles, identities):
    from federated.errors import MessageError
    from federated.messages.encryption import build_decrypt_task, parse_decrypt_task

    task = _task(secret, layout, bundles, identities)
    content = build_decrypt_task(task.spec, task.aggregate)
    assert parse_decrypt_task(content).aggregate.digest == task.aggregate.digest
    content["forwarded"] = type(content["task"])({"hospital-b": bundles["hospital-b"].to_bytes()})
    with pytest.raises(MessageError, match="carries only its spec, the aggregate and its audit record; it also carries \\['forwarded'\\]"):
        parse_decrypt_task(content)


def test_an_aggregate_under_another_key_is_refused(secret, other_keys, layout, bundles, identities):
    other = load_secret_context(other_keys.secret)
    with pytest.raises(RefusalError, match="not under this study's key"):
        decrypt_aggregate(_task(secret, layout, bundles, identities), partner="hospital-a",
                          identity=identities["hospital-a"], secret=other)
