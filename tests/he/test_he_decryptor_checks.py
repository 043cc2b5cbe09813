"""The decrypting partner's checks: what it refuses to decrypt, and that it decrypts the honest sum once."""

from __future__ import annotations

import numpy as np
import pytest

from crypto import Identity
from crypto.he_aggregation import (
    EncryptedBundle,
    add_bundles,
    cohort_blinding,
    decrypt_bundle,
    encrypt_bundle,
)
from crypto.errors import EncodingError
from crypto.he_keys import load_secret_context
from crypto.he_layout import plan_layout
from federated.audit.keys import load_or_create_identity
from federated.client.encryption import NOT_THE_COHORT_SUM, canary_for, decrypt_aggregate
from federated.client.encryption_memory import EncryptionMemory
from federated.errors import RefusalError
from federated.messages.encryption import DecryptSpec, DecryptTask, sign_contribution

ROUND = 3
PARTNERS = ["hospital-a", "hospital-b", "hospital-c"]
STUDY = "he-study"


@pytest.fixture(scope="module")
def secret(keys):
    return load_secret_context(keys.secret)


@pytest.fixture(scope="module")
def identities(node_keys) -> dict[str, Identity]:
    return {name: load_or_create_identity(node_keys / f"{name}.key")[0] for name in PARTNERS}


def _layout(secret, *, update: bool):
    template = {"canary": np.zeros(2, np.int64), "confusion": np.zeros((2, 2), np.int64)}
    if update:  # a training bundle: the canary and the cohort pads prove membership, as for statistics
        template["update/w"] = np.zeros(3, np.float64)
    bounds = {"canary": 3 * 2.0**30, "confusion": 10_000, "update/w": 100.0}
    return plan_layout(template, context=secret.public, bounds=bounds)


def _bundles(secret, layout, *, update: bool, cohort=PARTNERS, round=ROUND):
    bundles = {}
    for i, name in enumerate(cohort):
        arrays = {"canary": canary_for(secret, study=STUDY, round=round, partner=name), "confusion": np.full((2, 2), i + 1)}
        if update:
            arrays["update/w"] = np.full(3, 0.5 * (i + 1))
        blinding = cohort_blinding(secret, study=STUDY, round=round, partner=name, cohort=cohort, layout=layout)
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


def _memory(tmp_path, secret, bundles, me="hospital-a", cohort=PARTNERS) -> EncryptionMemory:
    """The decryptor's memory once it sent its own bundle of the round."""
    memory = EncryptionMemory(tmp_path / "node-he.sqlite")
    memory.record_bundle(fingerprint=secret.fingerprint, study=STUDY, round=ROUND, cohort=list(cohort),
                         bundle_sha256=bundles[me].digest)
    return memory


def _task(secret, layout, bundles, identities, *, partners=PARTNERS, min_cohort=2, aggregate=None,
          contributions=None) -> DecryptTask:
    chosen = [bundles[p] for p in partners]
    total = aggregate or add_bundles(chosen, public_context=secret.public)
    signed = contributions or [
        sign_contribution(identities[p], partner=p, study=STUDY, round=ROUND, bundle=bundles[p]) for p in partners
    ]
    spec = DecryptSpec(study=STUDY, round=ROUND, fingerprint=secret.fingerprint, layout_sha256=layout.digest,
                       min_cohort=min_cohort, aggregate_sha256=total.digest, contributions=signed)
    return DecryptTask(spec=spec, aggregate=total)


def _decrypt(task: DecryptTask, secret, memory, me: str = "hospital-a"):
    return decrypt_aggregate(task, partner=me, secret=secret, memory=memory)


def test_the_honest_sum_of_the_cohort_is_decrypted_and_the_canary_stripped(tmp_path, secret, layout, bundles, identities):
    result = _decrypt(_task(secret, layout, bundles, identities), secret, _memory(tmp_path, secret, bundles))
    np.testing.assert_array_equal(result["confusion"], np.full((2, 2), 1 + 2 + 3))
    assert set(result) == {"confusion"}


def test_an_honest_training_sum_is_decrypted_from_signed_digests_alone(tmp_path, secret, training_layout, training_bundles, identities):
    task = _task(secret, training_layout, training_bundles, identities)
    result = _decrypt(task, secret, _memory(tmp_path, secret, training_bundles))
    np.testing.assert_allclose(result["update/w"], np.full(3, 0.5 * (1 + 2 + 3)))


def test_a_second_decryption_of_the_same_round_is_refused_even_of_the_honest_sum(tmp_path, secret, layout, bundles, identities):
    memory = _memory(tmp_path, secret, bundles)
    task = _task(secret, layout, bundles, identities)
    _decrypt(task, secret, memory)
    with pytest.raises(RefusalError, match="already decrypted an aggregate of this round") as refusal:
        _decrypt(task, secret, EncryptionMemory(memory.path))  # a fresh process reads the same file
    assert refusal.value.clause == "encryption"


def test_a_failed_attempt_uses_up_the_rounds_decryption(tmp_path, secret, layout, bundles, identities):
    memory = _memory(tmp_path, secret, bundles)
    lopsided = add_bundles([bundles["hospital-a"]] * 2 + [bundles["hospital-b"]], public_context=secret.public)
    with pytest.raises(RefusalError, match=NOT_THE_COHORT_SUM):
        _decrypt(_task(secret, layout, bundles, identities, aggregate=lopsided), secret, memory)
    with pytest.raises(RefusalError, match="already decrypted an aggregate of this round"):
        _decrypt(_task(secret, layout, bundles, identities), secret, memory)


def test_a_decryptor_that_sent_no_bundle_of_the_round_refuses(tmp_path, secret, layout, bundles, identities):
    with pytest.raises(RefusalError, match=r"this node \(hospital-a\) sent no bundle for this round"):
        _decrypt(_task(secret, layout, bundles, identities), secret, EncryptionMemory(tmp_path / "empty.sqlite"))


def test_one_partners_update_summed_with_itself_is_caught_by_the_canary(tmp_path, secret, training_layout, training_bundles, identities):
    # Three signed contributions, three addends, but the aggregate is hospital-a's bundle three times.
    thrice = add_bundles([training_bundles["hospital-a"]] * 3, public_context=secret.public)
    task = _task(secret, training_layout, training_bundles, identities, aggregate=thrice)
    with pytest.raises(RefusalError, match=NOT_THE_COHORT_SUM):
        _decrypt(task, secret, _memory(tmp_path, secret, training_bundles))


@pytest.mark.parametrize("listed", [["hospital-a"], ["hospital-a", "hospital-b"], ["hospital-b", "hospital-c"]])
def test_an_aggregate_of_any_other_set_than_the_announced_cohort_is_refused(tmp_path, secret, layout, bundles, identities, listed):
    task = _task(secret, layout, bundles, identities, partners=listed)
    with pytest.raises(RefusalError, match=r"lists contributions of \[.*\]; this round's cohort is \[.hospital-a., .hospital-b., .hospital-c.\]"):
        _decrypt(task, secret, _memory(tmp_path, secret, bundles))


def test_an_aggregate_below_the_study_minimum_cohort_is_refused(tmp_path, secret, layout, bundles, identities):
    task = _task(secret, layout, bundles, identities, min_cohort=4)
    with pytest.raises(RefusalError, match="holds 3 contribution\\(s\\), fewer than the minimum cohort of 4"):
        _decrypt(task, secret, _memory(tmp_path, secret, bundles))


def test_a_contribution_the_pinned_key_did_not_sign_is_refused(tmp_path, secret, layout, bundles, identities):
    forged = sign_contribution(Identity.generate(), partner="hospital-b", study=STUDY, round=ROUND, bundle=bundles["hospital-b"])
    contributions = [sign_contribution(identities[p], partner=p, study=STUDY, round=ROUND, bundle=bundles[p])
                     for p in ("hospital-a", "hospital-c")] + [forged]
    task = _task(secret, layout, bundles, identities, contributions=contributions)
    with pytest.raises(RefusalError, match="the contribution of 'hospital-b' .* is not signed by the key pinned for it"):
        _decrypt(task, secret, _memory(tmp_path, secret, bundles))


def test_a_contribution_signed_for_another_round_is_refused(tmp_path, secret, layout, bundles, identities):
    stale = [sign_contribution(identities[p], partner=p, study=STUDY, round=ROUND - 1, bundle=bundles[p]) for p in PARTNERS]
    with pytest.raises(RefusalError, match="is not signed by the key pinned for it"):
        _decrypt(_task(secret, layout, bundles, identities, contributions=stale), secret, _memory(tmp_path, secret, bundles))


def test_one_partner_counted_twice_is_refused(tmp_path, secret, layout, bundles, identities):
    twice = [sign_contribution(identities["hospital-a"], partner="hospital-a", study=STUDY, round=ROUND,
                               bundle=bundles["hospital-a"])] * 2
    task = _task(secret, layout, bundles, identities, partners=("hospital-a",), contributions=twice,
                 aggregate=add_bundles([bundles["hospital-a"]] * 2, public_context=secret.public))
    with pytest.raises(RefusalError, match="one contribution each"):
        _decrypt(task, secret, _memory(tmp_path, secret, bundles))


def test_a_listed_own_contribution_other_than_the_bundle_this_node_sent_is_refused(tmp_path, secret, layout, bundles, identities):
    memory = EncryptionMemory(tmp_path / "node-he.sqlite")
    memory.record_bundle(fingerprint=secret.fingerprint, study=STUDY, round=ROUND, cohort=PARTNERS, bundle_sha256="0" * 64)
    with pytest.raises(RefusalError, match=r"the contribution listed for this node \(hospital-a\) is not the bundle it sent"):
        _decrypt(_task(secret, layout, bundles, identities), secret, memory)


def test_an_aggregate_that_is_not_one_bundle_of_each_member_is_refused(tmp_path, secret, layout, bundles, identities):
    # The coordinator tries to have hospital-b's bundle decrypted next to a doubled own contribution.
    lopsided = add_bundles([bundles["hospital-a"], bundles["hospital-a"], bundles["hospital-b"]], public_context=secret.public)
    task = _task(secret, layout, bundles, identities, aggregate=lopsided)
    with pytest.raises(RefusalError, match=NOT_THE_COHORT_SUM):
        _decrypt(task, secret, _memory(tmp_path, secret, bundles))


def test_one_bundle_presented_as_the_cohorts_aggregate_is_refused(tmp_path, secret, layout, bundles, identities):
    alone = bundles["hospital-a"]
    dressed = EncryptedBundle(alone.study_id, alone.fingerprint, alone.layout, len(PARTNERS), alone.ciphertexts)
    with pytest.raises(RefusalError, match=NOT_THE_COHORT_SUM):
        _decrypt(_task(secret, layout, bundles, identities, aggregate=dressed), secret, _memory(tmp_path, secret, bundles))


def test_only_the_whole_cohorts_sum_decrypts_a_subset_is_noise_in_every_slot(secret, layout, bundles):
    whole = decrypt_bundle(add_bundles(list(bundles.values()), public_context=secret.public), secret_context=secret)
    np.testing.assert_array_equal(whole["confusion"], np.full((2, 2), 6))
    for subset in (["hospital-a"], ["hospital-a", "hospital-b"], ["hospital-b", "hospital-c"]):
        try:
            confusion = decrypt_bundle(add_bundles([bundles[p] for p in subset], public_context=secret.public),
                                       secret_context=secret)["confusion"]
        except EncodingError:
            continue  # out of the layout's bounds: refused, nothing comes out
        truth = sum(PARTNERS.index(p) + 1 for p in subset)
        assert not np.any(confusion == truth), (subset, confusion)


def test_cohort_pads_are_shares_of_zero_uniform_and_bound_to_round_and_cohort(secret, layout):
    modulus = layout.plain_modulus

    def pad(partner, *, cohort=PARTNERS, round=ROUND):
        return cohort_blinding(secret, study=STUDY, round=round, partner=partner, cohort=cohort, layout=layout)

    pads = [pad(p) for p in PARTNERS]
    assert all(p.shape == (layout.used_slots,) and p.dtype == np.int64 and np.all((0 <= p) & (p < modulus)) for p in pads)
    assert not np.any(np.mod(sum(pads), modulus))  # the whole cohort: zero in every slot
    assert np.all(np.mod(pads[0] + pads[1], modulus))  # a subset: no slot cancels
    a = pads[0]
    assert np.array_equal(a, pad("hospital-a"))  # every key holder derives the same pad
    for other in (dict(round=ROUND + 1), dict(cohort=["hospital-a", "hospital-b"])):
        assert not np.any(a == pad("hospital-a", **other))


def test_a_cohort_of_one_has_no_pad(secret, layout):
    with pytest.raises(Exception, match="at least 2 distinct members"):
        cohort_blinding(secret, study=STUDY, round=ROUND, partner="hospital-a", cohort=["hospital-a"], layout=layout)


def test_a_decryption_task_carrying_a_partners_bundle_is_refused(secret, layout, bundles, identities):
    from federated.errors import MessageError
    from federated.messages.encryption import build_decrypt_task, parse_decrypt_task

    task = _task(secret, layout, bundles, identities)
    content = build_decrypt_task(task.spec, task.aggregate)
    assert parse_decrypt_task(content).aggregate.digest == task.aggregate.digest
    content["forwarded"] = type(content["task"])({"hospital-b": bundles["hospital-b"].to_bytes()})
    with pytest.raises(MessageError, match="carries only its spec, the aggregate and its audit record; it also carries \\['forwarded'\\]"):
        parse_decrypt_task(content)


def test_an_aggregate_under_another_key_is_refused(tmp_path, secret, other_keys, layout, bundles, identities):
    other = load_secret_context(other_keys.secret)
    with pytest.raises(RefusalError, match="not under this study's key"):
        decrypt_aggregate(_task(secret, layout, bundles, identities), partner="hospital-a", secret=other,
                          memory=_memory(tmp_path, secret, bundles))
