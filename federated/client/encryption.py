"""The partner's side of encrypted aggregation: the study key, the bundle it sends, and decryption.

- `study_key`: before any data is touched, a task encrypted under a study key needs this node's
  secret context (`--he-secret-context`), and the task's key fingerprint must be that context's;
  otherwise the task is refused with clause "encryption".
- `encrypted_reply`: the partner packs everything a round sends for aggregation (statistics after
  DP noise, and a training round's weighted update) into one bundle, blinds every slot with its own
  `crypto.he_aggregation.slot_blinding` for this study, round and partner, encrypts it, signs its
  SHA-256 with the node key, and sends that instead of plaintext values.
- `decrypt_aggregate`: the decryption task. It carries the aggregate and the signed contributions'
  digests, never another partner's bundle. The node decrypts only an aggregate of at least the
  minimum cohort (never fewer than `MIN_DECRYPTION_COHORT`) of distinct partners' contributions,
  each signed by its partner's key, its own among them, with as many addends as contributions. It
  removes the sum of the listed contributors' blindings: any aggregate other than the exact sum of
  one bundle of each (one bundle alone, a subset, masked slots) decrypts to uniform noise in the
  slots that differ. Before returning anything it checks the membership canary
  (`federated.messages.he_codec`), which turns the coarse forgeries (a bundle missing, doubled or added)
  into a named refusal instead of noise.

This module must never decrypt a single partner's bundle, nor any bundle that fails the checks above.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import RecordDict

from accord.errors import AccordError
from crypto import Identity, public_key_bytes
from crypto.he_aggregation import decrypt_bundle, encrypt_bundle, slot_blinding
from crypto.he_errors import EncodingError
from crypto.he_keys import SecretContext, load_secret_context
from federated.errors import MessageError, RefusalError
from federated.evaluation.statistics import EvaluationStatistics
from federated.messages.common import PartnerInfo, payload_sha256
from federated.messages.encryption import (
    DecryptTask,
    SignedBundle,
    attach_bundle,
    sign_contribution,
)
from federated.messages.encryption_spec import ENCRYPTION_CLAUSE, EncryptionSpec
from federated.messages.evaluation import EvaluationReply, TaskSpec, build_reply
from federated.messages.he_codec import (
    CANARY,
    CANARY_BITS,
    CANARY_WORDS,
    BundlePlan,
    evaluation_plan,
    training_plan,
)

if TYPE_CHECKING:
    from federated.client.settings import NodeSettings
    from federated.client.task_kind import NodeKeys
    from federated.messages.training import TrainTask

MIN_DECRYPTION_COHORT = 2  # a "sum" of one contribution is that partner's values: never decrypted
_CANARY_TAG = b"accord/he/canary-key/v1\x00"


def canary_for(secret: SecretContext, *, study: str, round: int, partner: str) -> np.ndarray:
    """The membership canary of one partner's bundle: HMAC under a key derived from the study's
    secret key, so that partners can compute it and the coordinator cannot."""
    key = hashlib.sha256(_CANARY_TAG + secret.secret_key).digest()
    digest = hmac.new(key, f"{study}\n{round}\n{partner}".encode(), hashlib.sha256).digest()
    words = [int.from_bytes(digest[8 * i : 8 * i + 8], "big") % (1 << CANARY_BITS) for i in range(CANARY_WORDS)]
    return np.array(words, dtype=np.int64)


def study_key(settings: NodeSettings, fingerprint: str | None) -> SecretContext | None:
    """This node's secret context for a task encrypted under `fingerprint` (None: not encrypted)."""
    if fingerprint is None:
        return None
    path = settings.he_secret_context
    if path is None:
        raise RefusalError(
            ENCRYPTION_CLAUSE,
            f"the study encrypts its aggregation under key {fingerprint[:16]}…, and this node holds no secret "
            "context (start it with --he-secret-context)",
        )
    try:
        secret = load_secret_context(path)
    except AccordError as exc:
        raise RefusalError(ENCRYPTION_CLAUSE, f"this node's secret context cannot be used: {exc}") from None
    if secret.fingerprint != fingerprint:
        raise RefusalError(
            ENCRYPTION_CLAUSE,
            f"the task is encrypted under key {fingerprint[:16]}…, but this node's secret context {path} holds the "
            f"key of study {secret.study_id!r} ({secret.fingerprint[:16]}…)",
        )
    return secret


def check_plan(plan: BundlePlan, encryption: EncryptionSpec, records: int) -> None:
    """Refuse a task whose layout this node derives differently, or whose bounds its data exceeds."""
    if plan.sha256 != encryption.layout_sha256:
        raise RefusalError(
            ENCRYPTION_CLAUSE,
            f"the task declares bundle layout {encryption.layout_sha256[:16]}…, this node derives {plan.sha256[:16]}…",
        )
    if records > encryption.max_records_per_partner:
        raise RefusalError(
            ENCRYPTION_CLAUSE,
            f"this node holds {records} records, more than the study's encryption.max_records_per_partner "
            f"({encryption.max_records_per_partner}) the encoding is bounded for",
        )


def encrypted_reply(
    content: RecordDict,
    plan: BundlePlan,
    keys: NodeKeys,
    *,
    statistics: Mapping[str, EvaluationStatistics],
    update: Mapping[str, np.ndarray] | None = None,
    info: PartnerInfo,
    study: str,
    round: int,
) -> tuple[RecordDict, dict[str, Any]]:
    """Encrypt and sign one partner's round; return the reply and what the trail records of it."""
    if keys.he is None:
        raise RefusalError(ENCRYPTION_CLAUSE, "the task is encrypted but no secret context was loaded")
    canary = canary_for(keys.he, study=study, round=round, partner=info.partner)
    try:
        blinding = slot_blinding(keys.he, study=study, round=round, partner=info.partner, layout=plan.layout)
        bundle = encrypt_bundle(plan.pack(statistics, update, canary=canary), context=keys.he, layout=plan.layout,
                                blinding=blinding)
    except AccordError as exc:
        raise RefusalError(ENCRYPTION_CLAUSE, str(exc)) from None
    contribution = sign_contribution(keys.identity, partner=info.partner, study=study, round=round, bundle=bundle)
    signed = SignedBundle(bundle, contribution)
    details = {
        "payload_sha256": EvaluationReply(info=info, statistics={}, encrypted=signed).payload_sha256(),
        "bundle_sha256": bundle.digest, "bundle_bytes": bundle.nbytes,
    }
    return attach_bundle(content, bundle, contribution), details


def encrypt_evaluation(
    spec: TaskSpec, statistics: Mapping[str, EvaluationStatistics], info: PartnerInfo, keys: NodeKeys, *, records: int
) -> tuple[RecordDict, dict[str, Any]]:
    """An evaluation reply whose statistics (DP-noised already, if the study asks) travel encrypted."""
    plan = _plan(lambda public: evaluation_plan(spec, public), keys)
    check_plan(plan, spec.encryption, records)  # type: ignore[arg-type]
    return encrypted_reply(build_reply(info, {}), plan, keys, statistics=statistics, info=info, study=spec.study,
                           round=spec.round)


def encrypt_training(
    task: TrainTask, weights: Mapping[str, np.ndarray], *, weight: int, statistics: Mapping[str, EvaluationStatistics],
    info: PartnerInfo, keys: NodeKeys, records: int, content: RecordDict,
) -> tuple[RecordDict, dict[str, Any]]:
    """A training reply carrying weight·(w - w_global) and the incoming model's statistics, encrypted.

    The coordinator cannot check an encrypted update's norm, so the node checks its own and withholds
    an update beyond the study's `max_update_norm` (clause "training").
    """
    from federated.training.aggregation import update_norm

    spec = task.spec
    plan = _plan(lambda public: training_plan(spec, {k: np.shape(v) for k, v in task.arrays.items()}, public), keys)
    check_plan(plan, spec.encryption, records)  # type: ignore[arg-type]
    norm = update_norm(dict(weights), task.arrays)
    if not norm <= spec.training.max_update_norm:
        raise RefusalError(
            "training",
            f"this node's update moves the model by {norm:.4g}, beyond the study's max_update_norm "
            f"{spec.training.max_update_norm:g}; encrypted, the coordinator could not reject it, so the node withholds it",
        )
    update = {k: weight * (np.asarray(weights[k], np.float64) - np.asarray(task.arrays[k], np.float64)) for k in task.arrays}
    return encrypted_reply(content, plan, keys, statistics=statistics, update=update, info=info, study=spec.study,
                           round=spec.round)


def _plan(derive: Callable[[Any], BundlePlan], keys: NodeKeys) -> BundlePlan:
    if keys.he is None:
        raise RefusalError(ENCRYPTION_CLAUSE, "the task is encrypted but no secret context was loaded")
    try:
        return derive(keys.he.public)
    except AccordError as exc:
        raise RefusalError(ENCRYPTION_CLAUSE, f"the task's encryption bounds do not fit: {exc}") from None


def run_decryption(task: DecryptTask, info: PartnerInfo, keys: NodeKeys) -> tuple[RecordDict, dict[str, Any]]:
    """The decryption task's run: checks, decryption, and the reply with the plaintext aggregate."""
    from federated.messages.encryption import build_decrypt_reply

    if keys.he is None:
        raise RefusalError(ENCRYPTION_CLAUSE, "a decryption task needs this node's secret context")
    arrays = decrypt_aggregate(task, partner=info.partner, identity=keys.identity, secret=keys.he)
    details = {
        "decrypted": {"aggregate_sha256": task.spec.aggregate_sha256, "plaintext_sha256": payload_sha256(info, arrays),
                      "contributors": [c.partner for c in task.spec.contributions],
                      "resummed": False, "blinded": True},  # resummed: always False since blinding (schema keeps it)
    }
    return build_decrypt_reply(info, arrays), details


def decrypt_aggregate(task: DecryptTask, *, partner: str, identity: Identity, secret: SecretContext) -> dict[str, np.ndarray]:
    """Run every check of the module docstring, then decrypt; `Refusal` (clause "encryption") otherwise."""
    spec, aggregate = task.spec, task.aggregate

    def refuse(reason: str) -> RefusalError:
        return RefusalError(ENCRYPTION_CLAUSE, f"study {spec.study} round {spec.round}: {reason}")

    if aggregate.fingerprint != secret.fingerprint or aggregate.layout.digest != spec.layout_sha256:
        raise refuse("the aggregate is not under this study's key and the task's layout")
    own_key = public_key_bytes(identity.public_key)
    partners, keys = set(), set()
    for contribution in spec.contributions:
        try:
            contribution.verify(study=spec.study, round=spec.round, fingerprint=spec.fingerprint)
        except MessageError as exc:
            raise refuse(str(exc)) from None
        partners.add(contribution.partner)
        keys.add(public_key_bytes(contribution.public_key()))
    count = len(spec.contributions)
    if len(partners) != count or len(keys) != count:
        raise refuse(f"{count} contributions come from {len(partners)} partner names and {len(keys)} keys; each must be distinct")
    required = max(spec.min_cohort, MIN_DECRYPTION_COHORT)
    if count < required:
        raise refuse(f"the aggregate holds {count} contribution(s), fewer than the minimum cohort of {required}")
    if not any(c.partner == partner and public_key_bytes(c.public_key()) == own_key for c in spec.contributions):
        raise refuse(f"this node's own contribution ({partner}) is not among the aggregate's")
    if aggregate.addends != count:
        raise refuse(f"the aggregate sums {aggregate.addends} bundles, but {count} contributions are signed")
    layout = aggregate.layout
    blindings = [slot_blinding(secret, study=spec.study, round=spec.round, partner=c.partner, layout=layout)
                 for c in spec.contributions]
    try:
        decrypted = decrypt_bundle(aggregate, secret_context=secret, blinding=np.mod(sum(blindings), layout.plain_modulus))
    except EncodingError as exc:  # honest bundles stay within their bounds (each partner checks its own)
        raise refuse(f"the aggregate does not hold exactly one bundle of each listed contributor: once their blindings "
                     f"are removed, {exc}") from None
    except AccordError as exc:
        raise refuse(f"decryption failed: {exc}") from None
    expected = sum(canary_for(secret, study=spec.study, round=spec.round, partner=c.partner) for c in spec.contributions)
    if CANARY not in decrypted or not np.array_equal(decrypted.pop(CANARY), expected):
        raise refuse("the aggregate does not hold exactly one bundle of each listed contributor (membership canary)")
    return decrypted
