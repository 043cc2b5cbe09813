"""The partner's side of encrypted aggregation: the study key, the bundle it sends, and decryption.

- `study_key`: before any data is touched, a task encrypted under a study key needs this node's
  secret context (`--he-secret-context`), and the task's key fingerprint must be that context's;
  otherwise the task is refused with clause "encryption". The key comes back with this node's
  durable memory of what it did under it (`federated.client.encryption_memory`).
- `encrypted_reply`: the task announces its cohort (the partner ids it went to; the coordinator's
  signature covers it). The node sends a bundle only if the cohort is at least 2 partners the key
  ceremony pinned (`crypto.he_keys.PublicContext.partner_keys`), itself among them, its own node key
  is the one pinned for it, the cohort is the one this study key was first used with, and it has
  sent no bundle for this (study, round) yet. It packs everything the round sends for aggregation
  (statistics after DP noise, a training round's weighted update) into one bundle, adds its
  `crypto.he_aggregation.cohort_blinding` (a share of zero over the announced cohort: only the exact
  cohort's sum decrypts, anything else is noise; the argument is in that module's docstring),
  encrypts, records the bundle durably, and signs its SHA-256 with the node key.
- `decrypt_aggregate`: the decryption task carries the aggregate and the signed contributions'
  digests, never another partner's bundle. The node decrypts only if it sent a bundle for this round;
  the contributions are exactly that bundle's cohort (so at least 2, and at least the study's minimum
  cohort), one each, its own the very bundle it recorded, each signed by the key the ceremony pinned
  for its partner (never a key carried in the message); the aggregate sums as many bundles; and it
  has not decrypted any aggregate of this round before (the slot is taken before decrypting). The
  membership canary (`federated.messages.he_codec`) must then decrypt to the cohort's canary sum, and
  every value must lie within the layout's bounds; otherwise it refuses with one fixed reason, since
  which check failed on noise says nothing worth knowing and a value must never leave in a refusal.

Dropout: a member of the announced cohort that refuses or stays silent leaves the round with no
decryptable sum (its pad's share is missing). The round fails, named (`federated.server.encryption`):
no recovery is attempted, because any re-run over a smaller cohort would be a second decrypted sum
that differs from the first by a partner. The study continues only as a new study with new keys.

This module must never decrypt a single partner's bundle, nor any bundle that fails the checks above.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import RecordDict

from accord.errors import AccordError
from crypto import Identity, public_key_bytes
from crypto.he_aggregation import cohort_blinding, decrypt_bundle, encrypt_bundle
from crypto.he_keys import SecretContext, load_secret_context
from federated.client.encryption_memory import EncryptionMemory
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
from federated.messages.evaluation import EvaluationReply, ModelStatistics, TaskSpec, build_reply
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
NOT_THE_COHORT_SUM = "the aggregate is not the sum of exactly one bundle of each member of the announced cohort"


@dataclass(frozen=True)
class NodeStudyKey(SecretContext):
    """A study's secret context as one node holds it: with the node's memory of what it did under it."""

    memory: EncryptionMemory = field(default=None, compare=False, kw_only=True)  # type: ignore[assignment]


def node_study_key(secret: SecretContext, memory: EncryptionMemory) -> NodeStudyKey:
    return NodeStudyKey(public=secret.public, secret_key=secret.secret_key, memory=memory)


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
    return node_study_key(secret, EncryptionMemory.beside(settings.trail))


def _memory(secret: SecretContext) -> EncryptionMemory:
    memory = getattr(secret, "memory", None)
    if not isinstance(memory, EncryptionMemory):
        raise RefusalError(ENCRYPTION_CLAUSE, "the study key was loaded without this node's memory of it")
    return memory


def check_cohort(secret: SecretContext, identity: Identity, *, partner: str, study: str, cohort: list[str]) -> None:
    """Refuse a cohort this node must not bind a bundle to (see the module docstring)."""
    pinned = secret.public.partner_keys
    if study != secret.study_id:
        raise RefusalError(ENCRYPTION_CLAUSE, f"the task is for study {study}, this study key was made for "
                           f"{secret.study_id}; every study has its own keys")
    if len(cohort) < MIN_DECRYPTION_COHORT:
        raise RefusalError(ENCRYPTION_CLAUSE, f"study {study}: the task announces a cohort of {len(cohort)} partner(s); "
                           f"an encrypted round needs at least {MIN_DECRYPTION_COHORT}")
    if partner not in cohort:
        raise RefusalError(ENCRYPTION_CLAUSE, f"study {study}: the announced cohort {cohort} does not name this node ({partner})")
    strangers = [name for name in cohort if name not in pinned]
    if strangers:
        raise RefusalError(ENCRYPTION_CLAUSE, f"study {study}: the announced cohort names {strangers}, whom the study's "
                           "key ceremony did not pin")
    if pinned[partner] != public_key_bytes(identity.public_key):
        raise RefusalError(ENCRYPTION_CLAUSE, f"study {study}: this node's signing key is not the one the key ceremony "
                           f"pinned for {partner}")


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
    statistics: Mapping[str, ModelStatistics],
    update: Mapping[str, np.ndarray] | None = None,
    info: PartnerInfo,
    study: str,
    round: int,
    cohort: list[str],
) -> tuple[RecordDict, dict[str, Any]]:
    """Encrypt and sign one partner's round; return the reply and what the trail records of it."""
    secret = keys.he
    if secret is None:
        raise RefusalError(ENCRYPTION_CLAUSE, "the task is encrypted but no secret context was loaded")
    memory = _memory(secret)
    check_cohort(secret, keys.identity, partner=info.partner, study=study, cohort=cohort)
    fingerprint = secret.fingerprint
    # before any work; `record_bundle` below is the binding check
    memory.check_bundle(fingerprint=fingerprint, study=study, round=round, cohort=cohort)
    canary = canary_for(secret, study=study, round=round, partner=info.partner)
    try:
        blinding = cohort_blinding(secret, study=study, round=round, partner=info.partner, cohort=cohort,
                                   layout=plan.layout)
        bundle = encrypt_bundle(plan.pack(statistics, update, canary=canary), context=secret, layout=plan.layout,
                                blinding=blinding)
    except AccordError as exc:
        raise RefusalError(ENCRYPTION_CLAUSE, str(exc)) from None
    memory.record_bundle(fingerprint=fingerprint, study=study, round=round, cohort=cohort, bundle_sha256=bundle.digest)
    contribution = sign_contribution(keys.identity, partner=info.partner, study=study, round=round, bundle=bundle)
    signed = SignedBundle(bundle, contribution)
    details = {
        "payload_sha256": EvaluationReply(info=info, statistics={}, encrypted=signed).payload_sha256(),
        "bundle_sha256": bundle.digest, "bundle_bytes": bundle.nbytes,
    }
    return attach_bundle(content, bundle, contribution), details


def encrypt_evaluation(
    spec: TaskSpec, statistics: Mapping[str, ModelStatistics], info: PartnerInfo, keys: NodeKeys, *, records: int
) -> tuple[RecordDict, dict[str, Any]]:
    """An evaluation reply whose statistics (DP-noised already, if the study asks) travel encrypted."""
    plan = _plan(lambda public: evaluation_plan(spec, public), keys)
    check_plan(plan, spec.encryption, records)  # type: ignore[arg-type]
    return encrypted_reply(build_reply(info, {}), plan, keys, statistics=statistics, info=info, study=spec.study,
                           round=spec.round, cohort=spec.encryption.cohort)  # type: ignore[union-attr]


def encrypt_training(
    task: TrainTask, weights: Mapping[str, np.ndarray], *, weight: int, statistics: Mapping[str, ModelStatistics],
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
                           round=spec.round, cohort=spec.encryption.cohort)  # type: ignore[union-attr]


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
    arrays = decrypt_aggregate(task, partner=info.partner, secret=keys.he, memory=_memory(keys.he))
    details = {
        "decrypted": {"aggregate_sha256": task.spec.aggregate_sha256, "plaintext_sha256": payload_sha256(info, arrays),
                      "contributors": [c.partner for c in task.spec.contributions],
                      "resummed": False, "blinded": True},  # resummed: always False since blinding (schema keeps it)
    }
    return build_decrypt_reply(info, arrays), details


def decrypt_aggregate(
    task: DecryptTask, *, partner: str, secret: SecretContext, memory: EncryptionMemory
) -> dict[str, np.ndarray]:
    """Run every check of the module docstring, then decrypt; `RefusalError` (clause "encryption") otherwise."""
    spec, aggregate = task.spec, task.aggregate

    def refuse(reason: str) -> RefusalError:
        return RefusalError(ENCRYPTION_CLAUSE, f"study {spec.study} round {spec.round}: {reason}")

    if aggregate.fingerprint != secret.fingerprint or aggregate.layout.digest != spec.layout_sha256:
        raise refuse("the aggregate is not under this study's key and the task's layout")
    sent = memory.sent_bundle(fingerprint=secret.fingerprint, study=spec.study, round=spec.round)
    if sent is None:
        raise refuse(f"this node ({partner}) sent no bundle for this round, so it decrypts no aggregate of it")
    listed = [c.partner for c in spec.contributions]
    if sorted(listed) != sent.cohort or len(set(listed)) != len(listed):
        raise refuse(f"the aggregate lists contributions of {listed}; this round's cohort is {sent.cohort}, one "
                     "contribution each")
    required = max(spec.min_cohort, MIN_DECRYPTION_COHORT)
    if len(listed) < required:
        raise refuse(f"the aggregate holds {len(listed)} contribution(s), fewer than the minimum cohort of {required}")
    pinned = secret.public.partner_keys
    for contribution in spec.contributions:
        try:
            contribution.verify(pinned=pinned, study=spec.study, round=spec.round, fingerprint=secret.fingerprint)
        except MessageError as exc:
            raise refuse(str(exc)) from None
    own = next(c for c in spec.contributions if c.partner == partner)
    if own.bundle_sha256 != sent.bundle_sha256:
        raise refuse(f"the contribution listed for this node ({partner}) is not the bundle it sent")
    if aggregate.addends != len(listed):
        raise refuse(f"the aggregate sums {aggregate.addends} bundles, but {len(listed)} contributions are signed")
    memory.claim_decryption(fingerprint=secret.fingerprint, study=spec.study, round=spec.round,
                            aggregate_sha256=spec.aggregate_sha256)
    try:
        decrypted = decrypt_bundle(aggregate, secret_context=secret)
    except AccordError:  # noise out of bounds, or a tampered ciphertext: one fixed reason, no value
        raise refuse(NOT_THE_COHORT_SUM) from None
    expected = sum(canary_for(secret, study=spec.study, round=spec.round, partner=name) for name in listed)
    if CANARY not in decrypted or not np.array_equal(decrypted.pop(CANARY), expected):
        raise refuse(NOT_THE_COHORT_SUM)
    return decrypted
