"""The coordinator's side of encrypted aggregation: it adds ciphertexts and asks a partner to decrypt.

With `[encryption] enabled = true` every task names the study key (its fingerprint), the bundle
layout and the announced cohort: every partner the key ceremony pinned (`PublicContext.partner_keys`).
Each partner answers with one signed bundle bound to that cohort instead of plaintext values; only the
sum of exactly the cohort's bundles decrypts (`crypto.he_aggregation.cohort_blinding`). The
coordinator (`EncryptedAggregation`):
1. checks each contribution's signature against the key pinned for its partner and sums the bundles
   with `add_bundles`, which needs only the public context (a bundle SEAL cannot read, under another
   key or not signed by the pinned key is refused with clause "encryption");
   if any member of the cohort did not send a usable bundle (it refused, stayed silent, or its bundle
   was refused), the round fails, named (`CohortIncompleteError`): without every member's share of
   zero nothing decrypts, and no smaller cohort is tried, since two decrypted sums that differ by one
   partner are that partner's values;
2. sends ONE decryption task (`query.decrypt`) to a decrypting partner: the aggregate and every
   contribution's signed digest, never a partner's own bundle;
3. if that partner refuses or does not answer, asks the next decryptor (the study's `decryptors`
   in order, else every contributor in the order their results arrived);
4. records the decrypted aggregate's hash and who decrypted it ("aggregate_decrypted").

This module must never load a context that holds a secret key, and never request the decryption of
fewer contributions than the study's minimum cohort.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from accord.errors import AccordError, ExitCode
from crypto.he_aggregation import EncryptedBundle, add_bundles
from crypto.he_keys import PublicContext, load_public_context
from federated.errors import CohortTooSmallError, ConfigError, FederatedError
from federated.messages.encryption import (
    DecryptSpec,
    SignedBundle,
    build_decrypt_task,
    parse_decrypt_reply,
)
from federated.messages.encryption_spec import DECRYPT_MESSAGE_TYPE, ENCRYPTION_CLAUSE, EncryptionSpec
from federated.messages.he_codec import BundlePlan
from federated.server.collect import Channel, Collected, Reply, collect_replies
from federated.study import EncryptionSettings, Study

_PLACEHOLDER = "0" * 64
SpecT = TypeVar("SpecT")


class DecryptionFailedError(FederatedError):
    """No decrypting partner decrypted a round's aggregate (each refused or stayed silent)."""

    exit_code = ExitCode.REFUSED
    status = "decryption_failed"


class CohortIncompleteError(CohortTooSmallError):
    """A member of an encrypted round's announced cohort sent no usable bundle: the round fails."""

    status = "cohort_incomplete"


class _Encrypted(Reply, Protocol):
    @property
    def encrypted(self) -> Any: ...


EncryptedT = TypeVar("EncryptedT", bound=_Encrypted)


def load_study_context(study: Study, source: Path) -> PublicContext | None:
    """The study's public context (None without encryption); `ConfigError` for a secret key or another study's keys."""
    settings = study.encryption
    if not settings.enabled or settings.public_context is None:
        return None
    try:
        public = load_public_context(settings.public_context)
    except AccordError as exc:
        raise ConfigError(f"{source}: encryption.public_context: {exc}") from None
    if public.study_id != study.id:
        raise ConfigError(
            f"{source}: encryption.public_context: {settings.public_context} holds the keys of study "
            f"{public.study_id!r}, not {study.id!r}; every study gets fresh keys "
            f"(python -m crypto.keys init --study {study.id})"
        )
    if len(public.partner_keys) < 2:
        raise ConfigError(
            f"{source}: encryption.public_context: {settings.public_context} pins {len(public.partner_keys)} partner "
            f"key(s); an encrypted study's cohort is its pinned partners, at least 2 "
            f"(python -m crypto.keys init --study {study.id} --partner NAME=NAME.key.pub ...)"
        )
    return public


def describe_context(public: PublicContext, path: Path | None) -> dict[str, Any]:
    """What results and the trail record of the study key: never key material (it holds none)."""
    params = public.parameters
    return {
        "fingerprint": public.fingerprint, "key_study": public.study_id, "public_context": str(path),
        "scheme": params.scheme, "poly_modulus_degree": params.poly_modulus_degree,
        "coeff_modulus_bits": params.coeff_modulus_bits, "plain_modulus_bits": params.plain_modulus.bit_length(),
        "security_bits": params.security_bits,
    }


@dataclass
class EncryptedRound:
    """What one encrypted round produced: the decrypted sums and how they were obtained."""

    statistics: dict[str, Any] = field(default_factory=dict)  # model -> pooled EvaluationStatistics
    update: dict[str, np.ndarray] = field(default_factory=dict)  # summed weight·(w - w_global)
    contributors: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EncryptedAggregation:
    """A study's encryption as the coordinator runs it: the public context and who may decrypt."""

    public: PublicContext
    settings: EncryptionSettings
    min_cohort: int
    timeout_s: float

    @classmethod
    def for_study(cls, study: Study, source: Path) -> EncryptedAggregation | None:
        public = load_study_context(study, source)
        if public is None:
            return None
        privacy, cohort = study.evaluation.privacy, len(public.partner_keys)
        if privacy.noise == "distributed" and privacy.honest_required_of(cohort) > cohort:
            raise ConfigError(
                f"{source}: evaluation.privacy.honest_required: the distributed guarantee needs "
                f"{privacy.honest_required_of(cohort)} honest contributors, and the cohort (the partners the key "
                f"ceremony pinned) has {cohort}: its sum would carry less than one central release's noise"
            )
        return cls(public, study.encryption, study.min_cohort, study.round_timeout_s)

    def describe(self) -> dict[str, Any]:
        return describe_context(self.public, self.settings.public_context) | {"cohort": self.cohort}

    @property
    def cohort(self) -> list[str]:
        """The announced cohort of every encrypted round: the partners the key ceremony pinned."""
        return sorted(self.public.partner_keys)

    def encrypt_spec(self, spec: SpecT, *, partners: int, plan_for: Any) -> tuple[SpecT, BundlePlan]:
        """`spec` with its encryption block, and the plan both sides derive from it (`plan_for(spec, public)`).

        The bounds are laid out for the announced cohort, whatever number of nodes (`partners`) is connected."""
        draft = EncryptionSpec(
            fingerprint=self.public.fingerprint, key_study=self.public.study_id, partners=len(self.cohort),
            max_records_per_partner=self.settings.max_records_per_partner, layout_sha256=_PLACEHOLDER,
            cohort=self.cohort,
        )
        try:
            plan = plan_for(spec.model_copy(update={"encryption": draft}), self.public)  # type: ignore[attr-defined]
        except AccordError as exc:
            raise ConfigError(f"encryption: {exc}") from None
        final = draft.model_copy(update={"layout_sha256": plan.sha256})
        return spec.model_copy(update={"encryption": final}), plan  # type: ignore[attr-defined]

    def aggregate(
        self, channel: Channel, collected: Collected[EncryptedT], plan: BundlePlan, *, study: str, round: int,
    ) -> EncryptedRound | None:
        """Sum the cohort's bundles and have the sum decrypted over `channel` (the round's context);
        `CohortIncompleteError` if a member's is missing."""
        where: dict[str, Any] = {"study": study, "round": round}
        trail = channel.trail
        accepted = collected.accepted
        signed: list[tuple[str, SignedBundle]] = []
        unsigned: list[tuple[str, str]] = []
        for reply in accepted:
            try:
                reply.encrypted.contribution.verify(pinned=self.public.partner_keys, study=study, round=round,
                                                    fingerprint=self.public.fingerprint)
                signed.append((reply.info.partner, reply.encrypted))
            except AccordError as exc:
                unsigned.append((reply.info.partner, str(exc)))
        total, kept, dropped = sum_bundles(signed, self.public)
        for partner, reason in unsigned + dropped:
            collected.refuse(trail, where, node=collected.nodes.get(partner, 0), partner=partner,
                             clause=ENCRYPTION_CLAUSE, reason=reason, by="coordinator")
        collected.accepted = [r for r in accepted if r.info.partner in kept]
        absent = [partner for partner in self.cohort if partner not in kept]
        if absent or total is None:
            raise CohortIncompleteError(_incomplete(study, round, self.cohort, absent, collected))
        if len(kept) < self.min_cohort:
            return None
        bundles: dict[str, SignedBundle] = {r.info.partner: r.encrypted for r in collected.accepted}
        trail.append(
            "aggregate_computed", contributors=list(kept), encrypted=True, aggregate_sha256=total.digest,
            bundles={partner: s.bundle.digest for partner, s in bundles.items()}, **where,
        )
        spec = DecryptSpec(
            study=study, round=round, fingerprint=self.public.fingerprint, layout_sha256=plan.sha256,
            min_cohort=self.min_cohort, aggregate_sha256=total.digest,
            contributions=[bundles[partner].contribution for partner in kept],
        )
        arrays, decryptor, attempts = self._decrypt(channel, spec, total, plan, collected.nodes, where)
        statistics, update = plan.unpack(arrays)
        summary = {
            "fingerprint": self.public.fingerprint, "aggregate_sha256": total.digest, "decrypted_by": decryptor,
            "decryption_attempts": attempts, "bundle_sha256": {p: s.bundle.digest for p, s in bundles.items()},
            "bundle_bytes": {p: s.bundle.nbytes for p, s in bundles.items()},
            "aggregate_bytes": total.nbytes, "forwarded": False,  # no partner's bundle reaches a decryptor
        }
        return EncryptedRound(statistics, update, list(kept), summary)

    def decryptors(self, contributors: list[str]) -> list[str]:
        """Who is asked, in order: the study's decryptors that contributed, else every contributor."""
        if self.settings.decryptors is None:
            return list(contributors)
        return [partner for partner in self.settings.decryptors if partner in contributors]

    def _decrypt(
        self, channel: Channel, spec: DecryptSpec, total: EncryptedBundle, plan: BundlePlan, nodes: dict[str, int],
        where: dict[str, Any],
    ) -> tuple[dict[str, np.ndarray], str, list[dict[str, str]]]:
        trail = channel.trail
        attempts: list[dict[str, str]] = []
        candidates = self.decryptors([c.partner for c in spec.contributions])
        step = where | {"step": "decryption"}
        for partner in candidates:
            collected = collect_replies(
                channel, [nodes[partner]], content=lambda: build_decrypt_task(spec, total),
                message_type=DECRYPT_MESSAGE_TYPE, parse=parse_decrypt_reply, where=step, task_sha256=spec.sha256(),
                timeout_s=self.timeout_s,
            )
            attempts += [{"partner": partner, **failure} for failure in collected.refused + collected.missing]
            if not collected.accepted:
                continue
            reply = collected.accepted[0]
            try:
                if reply.info.partner != partner:
                    raise FederatedError(f"node {nodes[partner]} answered as {reply.info.partner!r}, not {partner!r}")
                plan.check_decrypted(reply.arrays)
            except AccordError as exc:
                attempts.append({"partner": partner, "clause": ENCRYPTION_CLAUSE, "reason": str(exc)})
                collected.refuse(trail, step, node=nodes[partner], partner=partner, clause=ENCRYPTION_CLAUSE,
                                 reason=str(exc), by="coordinator")
                continue
            trail.append("aggregate_decrypted", partner=partner, aggregate_sha256=spec.aggregate_sha256,
                         plaintext_sha256=reply.payload_sha256(), contributors=[c.partner for c in spec.contributions],
                         **where)
            return reply.arrays, partner, attempts
        tried = ", ".join(candidates) or "none (no decryptor contributed)"
        raise DecryptionFailedError(
            f"study {spec.study} round {spec.round}: no partner decrypted the aggregate (asked: {tried}); "
            + "; ".join(f"{a['partner']}: {a.get('reason', '')}" for a in attempts)
        )


def _incomplete(study: str, round: int, cohort: list[str], absent: list[str], collected: Collected[EncryptedT]) -> str:
    said = {entry["partner"]: entry.get("reason", "") for entry in collected.refused + collected.missing}
    why = "; ".join(f"{partner}: {said.get(partner) or 'no bundle'}" for partner in absent)
    unnamed = [f"{who}: {reason}" for who, reason in said.items() if who not in cohort]  # e.g. an unreadable reply
    why += "".join(f"; {line}" for line in unnamed)
    return (
        f"study {study} round {round}: encrypted round failed, the announced cohort {cohort} is incomplete ({why}). "
        "Only the whole cohort's sum decrypts and no smaller cohort is tried (two sums that differ by one partner "
        "are that partner's values); run a new study, with new keys, over the partners that remain"
    )


def sum_bundles(
    signed: list[tuple[str, SignedBundle]], public: PublicContext
) -> tuple[EncryptedBundle | None, list[str], list[tuple[str, str]]]:
    """The sum of every bundle SEAL can read; the others, with the reason, are left out."""
    try:
        return add_bundles([s.bundle for _, s in signed], public_context=public), [p for p, _ in signed], []
    except AccordError:
        pass  # find the culprits one by one (only on failure: each check loads a bundle once more)
    kept, dropped = [], []
    for partner, bundle in signed:
        try:
            add_bundles([bundle.bundle], public_context=public)
        except AccordError as exc:
            dropped.append((partner, f"its bundle cannot be added: {exc}"))
        else:
            kept.append((partner, bundle))
    if not kept:
        return None, [], dropped
    return add_bundles([s.bundle for _, s in kept], public_context=public), [p for p, _ in kept], dropped
