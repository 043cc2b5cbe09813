"""Attack (4): differencing encrypted aggregates.

A hostile coordinator (the legitimate key, `tests.adversarial.conftest.HostileCoordinator`) drives the
three hospitals' real nodes, which hold the study's HE secret context and the node keys its key
ceremony pinned. It collects their bundles and asks for decryptions of its choosing: a subset at one
decryptor and the whole cohort at another, several aggregates at one decryptor, different cohorts
told to different partners, a smaller cohort in a later round, and contributions signed by keys the
ceremony did not pin. Each test COUNTS how many of hospital-c's non-zero statistic values come out
exactly (as the difference of two decrypted aggregates over different partner sets), next to the
count today's protocol gave (`_todays_decryptor`: the decryptor removed the pads of whichever
contributors the coordinator listed, and remembered nothing), on the very same values.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from accord.hashing import sha256_bytes
from crypto import Identity, public_key_bytes
from crypto.he_aggregation import EncryptedBundle, add_bundles, cohort_blinding, decrypt_bundle, encrypt_bundle
from crypto.he_keys import (
    KeyFiles,
    SecretContext,
    generate_context,
    load_public_context,
    load_secret_context,
    write_key_files,
)
from examples.hospitals.prepare import HOSPITALS
from federated.audit.keys import load_or_create_identity
from federated.client.refusals import NodeLog
from federated.messages.encryption import (
    Contribution,
    DecryptSpec,
    build_decrypt_task,
    parse_decrypt_reply,
    sign_contribution,
)
from federated.messages.encryption_spec import DECRYPT_MESSAGE_TYPE
from federated.messages.evaluation import MESSAGE_TYPE, ModelRef, TaskSpec, build_task, parse_reply
from federated.messages.he_codec import CANARY, evaluation_plan
from federated.server.collect import collect_replies
from federated.server.encryption import EncryptedAggregation
from federated.study import EncryptionSettings
from tests.adversarial.conftest import EVALUATION, GOVERNANCE, HostileCoordinator

STUDY = "he-differencing"
A, B, C = (name for name, *_ in HOSPITALS)
COHORT = [A, B, C]


@pytest.fixture(scope="module")
def node_keys(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("node-keys")
    for name in COHORT:
        load_or_create_identity(directory / f"{name}.key")
    return directory


@pytest.fixture(scope="module")
def keys(tmp_path_factory, node_keys) -> KeyFiles:
    pinned = {name: public_key_bytes(load_or_create_identity(node_keys / f"{name}.key")[0].public_key) for name in COHORT}
    return write_key_files(generate_context(STUDY, partners=pinned), tmp_path_factory.mktemp("he-keys"))


@pytest.fixture
def hostile(coordinator: HostileCoordinator, keys: KeyFiles, node_keys: Path) -> HostileCoordinator:
    """The hostile coordinator's hospitals, each with the study's secret context and its pinned node key."""
    for index, name in coordinator.names.items():
        coordinator.grid.nodes[index]["he-secret-context"] = str(keys.secret)
        node = coordinator.partner_dir(name)
        node.mkdir(parents=True, exist_ok=True)
        for suffix in ("key", "key.pub"):
            (node / f"node.{suffix}").write_bytes((node_keys / f"{name}.{suffix}").read_bytes())
    return coordinator


@pytest.fixture(scope="module")
def secret(keys: KeyFiles) -> SecretContext:
    return load_secret_context(keys.secret)


def _encrypted_round(hostile: HostileCoordinator, keys: KeyFiles, round_number: int, *, told: dict[str, list[str]],
                     refused: list[dict[str, str]] | None = None):
    """Send round `round_number`'s encrypted task, telling each partner in `told` the cohort given; return
    the layout's plan and the bundles that came back (partner -> SignedBundle); `refused` gets the refusals."""
    settings = EncryptionSettings(enabled=True, public_context=keys.public)
    aggregation = EncryptedAggregation(load_public_context(keys.public), settings, min_cohort=2, timeout_s=1.0)
    logreg = {"logreg": (hostile.hospitals / "models" / "logreg.onnx").read_bytes()}
    plain = TaskSpec(study=STUDY, round=round_number, study_sha256="0" * 64, evaluation=EVALUATION, governance=GOVERNANCE,
                     min_cohort=2, models=[ModelRef(name="logreg", sha256=sha256_bytes(logreg["logreg"]), output="probabilities")])
    bundles, plan = {}, None
    for partner, cohort in told.items():
        spec, plan = aggregation.encrypt_spec(plain, partners=3, plan_for=evaluation_plan)
        spec = spec.model_copy(update={"encryption": spec.encryption.model_copy(update={"cohort": cohort})})
        collected = collect_replies(
            hostile.channel(STUDY), [hostile.node(partner)], content=lambda: build_task(spec, logreg),
            message_type=MESSAGE_TYPE, parse=lambda content: parse_reply(content, spec),
            where={"study": STUDY, "round": round_number}, task_sha256=spec.sha256(), timeout_s=1.0,
        )
        bundles |= {reply.info.partner: reply.encrypted for reply in collected.accepted}
        if refused is not None:
            refused += collected.refused
    return plan, bundles


def _ask(hostile: HostileCoordinator, secret: SecretContext, plan, round_number: int, decryptor: str,
         bundles: list[EncryptedBundle], contributions: list[Contribution]) -> dict[str, np.ndarray] | None:
    """One decryption task to `decryptor`: the sum of `bundles`, listed as `contributions`. The plaintext, or None."""
    total = add_bundles(bundles, public_context=secret.public)
    spec = DecryptSpec(study=STUDY, round=round_number, fingerprint=secret.fingerprint, layout_sha256=plan.sha256,
                       min_cohort=2, aggregate_sha256=total.digest, contributions=contributions)
    collected = collect_replies(
        hostile.channel(STUDY), [hostile.node(decryptor)], content=lambda: build_decrypt_task(spec, total),
        message_type=DECRYPT_MESSAGE_TYPE, parse=parse_decrypt_reply, where={"study": STUDY, "round": round_number},
        task_sha256=spec.sha256(), timeout_s=1.0,
    )
    return collected.accepted[0].arrays if collected.accepted else None


def _unpadded(secret: SecretContext, bundle: EncryptedBundle, partner: str, cohort: list[str], round_number: int):
    """The test's oracle (it holds the secret key, the coordinator does not): what `partner` put in its bundle."""
    layout = bundle.layout
    pad = cohort_blinding(secret, study=STUDY, round=round_number, partner=partner, cohort=cohort, layout=layout)
    zeros = {a.name: np.zeros(a.shape, np.int64 if a.kind == "int" else np.float64) for a in layout.arrays}
    minus_pad = encrypt_bundle(zeros, context=secret, layout=layout, blinding=np.mod(-pad, layout.plain_modulus))
    return decrypt_bundle(add_bundles([bundle, minus_pad], public_context=secret.public), secret_context=secret)


def _todays_decryptor(secret: SecretContext, layout, values: dict[str, dict[str, np.ndarray]], subset) -> dict[str, np.ndarray]:
    """The control, today's protocol on the same values: the decryptor removed the pads of whichever
    contributors the coordinator listed (the same as none added) and remembered nothing, so any subset
    decrypted, at any decryptor, any number of times."""
    bundles = [encrypt_bundle(values[p], context=secret, layout=layout) for p in subset]
    arrays = decrypt_bundle(add_bundles(bundles, public_context=secret.public), secret_context=secret)
    return {k: v for k, v in arrays.items() if k != CANARY}


def _recovered(truth: dict[str, np.ndarray], decrypted: list[tuple[frozenset[str], dict[str, np.ndarray]]]) -> int:
    """How many of `truth`'s non-zero values equal, in place, the difference of two decrypted aggregates
    over different partner sets (the most any one pair gives)."""
    best = 0
    for (set_x, x), (set_y, y) in itertools.permutations(decrypted, 2):
        if set_x == set_y:
            continue
        hits = sum(int(np.sum((truth[name] != 0) & (x[name] - y[name] == truth[name]))) for name in truth)
        best = max(best, hits)
    return best


def _nonzero(truth: dict[str, np.ndarray]) -> int:
    return sum(int(np.count_nonzero(values)) for values in truth.values())


def _truths(secret, bundles, cohort, round_number):
    return {p: _unpadded(secret, bundles[p].bundle, p, cohort, round_number) for p in cohort}


def _signed(bundles, partners):
    return [bundles[p].contribution for p in partners]


def test_a_subset_at_one_decryptor_and_the_cohort_at_another_give_none_of_c(hostile, keys, secret, record_property):
    plan, bundles = _encrypted_round(hostile, keys, 1, told={p: COHORT for p in COHORT})
    values = _truths(secret, bundles, COHORT, 1)
    truth = {k: v for k, v in values[C].items() if k != CANARY}
    subset = _ask(hostile, secret, plan, 1, A, [bundles[p].bundle for p in (A, B)], _signed(bundles, (A, B)))
    whole = _ask(hostile, secret, plan, 1, B, [bundles[p].bundle for p in COHORT], _signed(bundles, COHORT))
    got = [(frozenset(s), x) for s, x in (((A, B), subset), (COHORT, whole)) if x is not None]
    control = [(frozenset(s), _todays_decryptor(secret, plan.layout, values, s)) for s in ((A, B), COHORT)]
    counts = {"now": _recovered(truth, got), "today": _recovered(truth, control), "values": _nonzero(truth)}
    record_property("hospital_c_values_recovered", counts)
    assert subset is None and whole is not None  # the cohort's own sum is the round's release
    assert counts["now"] == 0 and counts["today"] == counts["values"] > 0, counts


def test_one_decryptor_asked_for_several_aggregates_of_a_round_decrypts_one(hostile, keys, secret, record_property):
    plan, bundles = _encrypted_round(hostile, keys, 1, told={p: COHORT for p in COHORT})
    values = _truths(secret, bundles, COHORT, 1)
    truth = {k: v for k, v in values[C].items() if k != CANARY}
    asked = [COHORT, COHORT, (A, B), (A, C)]
    answers = [_ask(hostile, secret, plan, 1, A, [bundles[p].bundle for p in s], _signed(bundles, s)) for s in asked]
    got = [(frozenset(s), x) for s, x in zip(asked, answers) if x is not None]
    control = [(frozenset(s), _todays_decryptor(secret, plan.layout, values, s)) for s in asked]
    assert [x is not None for x in answers] == [True, False, False, False]  # the whole sum once, then nothing
    counts = {"now": _recovered(truth, got), "today": _recovered(truth, control), "values": _nonzero(truth)}
    record_property("hospital_c_values_recovered", counts)
    assert counts["now"] == 0 and counts["today"] == counts["values"] > 0, counts


def test_different_cohorts_told_to_different_partners_leave_c_undecryptable(hostile, keys, secret):
    # a and b are told "{a, b}" and c "{a, b, c}", in the same round: {a, b} is a legitimate release of
    # their own cohort; c's bundle carries a pad that cancels only against bundles a and b never made.
    plan, bundles = _encrypted_round(hostile, keys, 1, told={A: [A, B], B: [A, B], C: COHORT})
    pair = _ask(hostile, secret, plan, 1, A, [bundles[p].bundle for p in (A, B)], _signed(bundles, (A, B)))
    at_b = _ask(hostile, secret, plan, 1, B, [bundles[p].bundle for p in COHORT], _signed(bundles, COHORT))
    at_c = _ask(hostile, secret, plan, 1, C, [bundles[p].bundle for p in COHORT], _signed(bundles, COHORT))
    truth = {k: v for k, v in _unpadded(secret, bundles[C].bundle, C, COHORT, 1).items() if k != CANARY}
    got = [(frozenset(s), x) for s, x in (((A, B), pair), (COHORT, at_b), (COHORT, at_c)) if x is not None]
    assert pair is not None and at_b is None and at_c is None
    assert _recovered(truth, got) == 0


def test_a_smaller_cohort_in_a_later_round_gets_no_bundle(hostile, keys, secret):
    plan, bundles = _encrypted_round(hostile, keys, 1, told={p: COHORT for p in COHORT})
    assert _ask(hostile, secret, plan, 1, A, [bundles[p].bundle for p in COHORT], _signed(bundles, COHORT)) is not None
    refusals: list[dict[str, str]] = []
    _, later = _encrypted_round(hostile, keys, 2, told={A: [A, B], B: [A, B]}, refused=refusals)  # the same data, no c
    assert later == {}  # one cohort per study key: {a, b} minus {a, b, c} is never decrypted
    assert {r["partner"] for r in refusals} == {A, B} and {r["clause"] for r in refusals} == {"encryption"}
    for partner in (A, B):  # the detail stays in the partner's local log
        (logged,) = [r for r in NodeLog.beside(hostile.partner_dir(partner) / "trail.jsonl").records() if r["round"] == 2]
        assert "this study key's cohort is ['hospital-a', 'hospital-b', 'hospital-c']" in logged["detail"]


def test_contributions_signed_by_keys_the_ceremony_did_not_pin_are_not_decrypted(hostile, keys, secret):
    plan, bundles = _encrypted_round(hostile, keys, 1, told={p: COHORT for p in COHORT})
    intruder = Identity.generate()  # the coordinator's own key, or any key it made
    resigned = sign_contribution(intruder, partner=C, study=STUDY, round=1, bundle=bundles[C].bundle)
    forged = _signed(bundles, (A, B)) + [resigned]
    assert _ask(hostile, secret, plan, 1, A, [bundles[p].bundle for p in COHORT], forged) is None
    # The same aggregate with the partners' own contributions is the round's release, at another decryptor.
    assert _ask(hostile, secret, plan, 1, B, [bundles[p].bundle for p in COHORT], _signed(bundles, COHORT)) is not None
    # A sybil cohort: one real partner and a name the ceremony never pinned; no partner binds a bundle to it.
    _, sybil = _encrypted_round(hostile, keys, 2, told={C: [C, "hospital-x"]})
    assert sybil == {}


def test_a_contribution_cannot_carry_a_key_of_its_own():
    with pytest.raises(ValidationError, match="[Ee]xtra inputs are not permitted"):
        Contribution.model_validate({"partner": C, "bundle_sha256": "0" * 64, "signature": "", "key": "AAAA"})
