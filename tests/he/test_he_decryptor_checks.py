"""The decrypting partner's checks: what it refuses to decrypt, and that it decrypts the honest sum."""

from __future__ import annotations

import numpy as np
import pytest

from crypto import Identity
from crypto.he_aggregation import add_bundles, encrypt_bundle
from crypto.he_keys import load_secret_context
from crypto.he_layout import plan_layout
from federated.client.encryption import MIN_DECRYPTION_COHORT, canary_for, decrypt_aggregate
from federated.client.pipeline import Refusal
from federated.he_messages import DecryptSpec, DecryptTask, sign_contribution

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
    if update:  # a training bundle: no forwarded bundles, the canary alone proves membership
        template["update/w"] = np.zeros(3, np.float64)
    bounds = {"canary": 3 * 2.0**30, "confusion": 10_000, "update/w": 100.0}
    return plan_layout(template, context=secret.public, bounds=bounds)


def _bundles(secret, layout, *, update: bool):
    bundles = {}
    for i, name in enumerate(PARTNERS):
        arrays = {"canary": canary_for(secret, study="he-study", round=ROUND, partner=name), "confusion": np.full((2, 2), i + 1)}
        if update:
            arrays["update/w"] = np.full(3, 0.5 * (i + 1))
        bundles[name] = encrypt_bundle(arrays, context=secret, layout=layout)
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


def _task(secret, layout, bundles, identities, *, partners=PARTNERS, min_cohort=2, forwarded=None, aggregate=None,
          contributions=None) -> DecryptTask:
    chosen = [bundles[p] for p in partners]
    total = aggregate or add_bundles(chosen, public_context=secret.public)
    signed = contributions or [
        sign_contribution(identities[p], partner=p, study="he-study", round=ROUND, bundle=bundles[p]) for p in partners
    ]
    spec = DecryptSpec(study="he-study", round=ROUND, fingerprint=secret.fingerprint, layout_sha256=layout.digest,
                       min_cohort=min_cohort, aggregate_sha256=total.digest, contributions=signed)
    return DecryptTask(spec=spec, aggregate=total, forwarded={p: bundles[p] for p in partners} if forwarded is None else forwarded)


def _decrypt(task: DecryptTask, secret, identities, me: str = "hospital-a"):
    return decrypt_aggregate(task, partner=me, identity=identities[me], secret=secret)


def test_the_honest_sum_of_the_cohort_is_decrypted_and_the_canary_stripped(secret, layout, bundles, identities):
    result = _decrypt(_task(secret, layout, bundles, identities), secret, identities)
    np.testing.assert_array_equal(result["confusion"], np.full((2, 2), 1 + 2 + 3))
    assert set(result) == {"confusion"}


def test_an_honest_training_sum_is_decrypted_from_signed_digests_alone(secret, training_layout, training_bundles, identities):
    task = _task(secret, training_layout, training_bundles, identities, forwarded={})
    np.testing.assert_allclose(_decrypt(task, secret, identities)["update/w"], np.full(3, 0.5 * (1 + 2 + 3)))


def test_one_partners_update_summed_with_itself_is_caught_by_the_canary(secret, training_layout, training_bundles, identities):
    # Three signed contributions, three addends, but the aggregate is hospital-a's bundle three times.
    thrice = add_bundles([training_bundles["hospital-a"]] * 3, public_context=secret.public)
    task = _task(secret, training_layout, training_bundles, identities, forwarded={}, aggregate=thrice)
    with pytest.raises(Refusal, match="does not hold exactly one bundle of each listed contributor"):
        _decrypt(task, secret, identities)


def test_a_single_contribution_aggregate_is_refused_whatever_the_declared_minimum(secret, layout, bundles, identities):
    task = _task(secret, layout, bundles, identities, partners=("hospital-a",), min_cohort=1)
    with pytest.raises(Refusal, match=f"holds 1 contribution\\(s\\), fewer than the minimum cohort of {MIN_DECRYPTION_COHORT}") as refusal:
        _decrypt(task, secret, identities)
    assert refusal.value.clause == "encryption"


def test_an_aggregate_below_the_study_minimum_cohort_is_refused(secret, layout, bundles, identities):
    task = _task(secret, layout, bundles, identities, partners=("hospital-a", "hospital-b"), min_cohort=3)
    with pytest.raises(Refusal, match="holds 2 contribution\\(s\\), fewer than the minimum cohort of 3"):
        _decrypt(task, secret, identities)


def test_an_aggregate_without_the_decryptors_own_contribution_is_refused(secret, layout, bundles, identities):
    task = _task(secret, layout, bundles, identities, partners=("hospital-b", "hospital-c"))
    with pytest.raises(Refusal, match=r"this node's own contribution \(hospital-a\) is not among the aggregate's"):
        _decrypt(task, secret, identities)


def test_a_contribution_the_partner_did_not_sign_is_refused(secret, layout, bundles, identities):
    forged = sign_contribution(Identity.generate(), partner="hospital-b", study="he-study", round=ROUND, bundle=bundles["hospital-b"])
    genuine = sign_contribution(identities["hospital-b"], partner="hospital-b", study="he-study", round=ROUND, bundle=bundles["hospital-b"])
    tampered = forged.model_copy(update={"key": genuine.key})  # the right key, someone else's signature
    contributions = [sign_contribution(identities["hospital-a"], partner="hospital-a", study="he-study", round=ROUND,
                                       bundle=bundles["hospital-a"]), tampered]
    task = _task(secret, layout, bundles, identities, partners=("hospital-a", "hospital-b"), contributions=contributions)
    with pytest.raises(Refusal, match="the contribution of 'hospital-b' .* is not signed by its key"):
        _decrypt(task, secret, identities)


def test_a_contribution_signed_for_another_round_is_refused(secret, layout, bundles, identities):
    stale = [sign_contribution(identities[p], partner=p, study="he-study", round=ROUND - 1, bundle=bundles[p]) for p in PARTNERS]
    with pytest.raises(Refusal, match="is not signed by its key"):
        _decrypt(_task(secret, layout, bundles, identities, contributions=stale), secret, identities)


def test_one_partner_counted_twice_is_refused(secret, layout, bundles, identities):
    twice = [sign_contribution(identities["hospital-a"], partner="hospital-a", study="he-study", round=ROUND,
                               bundle=bundles["hospital-a"])] * 2
    task = _task(secret, layout, bundles, identities, partners=("hospital-a",), contributions=twice,
                 aggregate=add_bundles([bundles["hospital-a"]] * 2, public_context=secret.public))
    with pytest.raises(Refusal, match="each must be distinct"):
        _decrypt(task, secret, identities)


def test_an_aggregate_that_is_not_the_sum_of_the_forwarded_bundles_is_refused(secret, layout, bundles, identities):
    # The coordinator tries to have hospital-b's bundle decrypted next to a doubled own contribution.
    lopsided = add_bundles([bundles["hospital-a"], bundles["hospital-a"], bundles["hospital-b"]], public_context=secret.public)
    task = _task(secret, layout, bundles, identities, aggregate=lopsided)
    with pytest.raises(Refusal, match="the aggregate is not the sum of the forwarded contributions"):
        _decrypt(task, secret, identities)


def test_evaluation_statistics_are_not_decrypted_without_the_forwarded_bundles(secret, layout, bundles, identities):
    task = _task(secret, layout, bundles, identities, forwarded={})
    with pytest.raises(Refusal, match="the task forwards bundles of \\[\\]"):
        _decrypt(task, secret, identities)


def test_an_aggregate_under_another_key_is_refused(secret, other_keys, layout, bundles, identities):
    other = load_secret_context(other_keys.secret)
    with pytest.raises(Refusal, match="not under this study's key"):
        decrypt_aggregate(_task(secret, layout, bundles, identities), partner="hospital-a",
                          identity=identities["hospital-a"], secret=other)
