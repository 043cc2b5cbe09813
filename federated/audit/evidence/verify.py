"""Offline verification of an evidence pack or a study's output directory: all holds, or the first problem.

Checks, in order; the first that fails ends verification with its message:
1. the manifest: `MANIFEST.json` lists exactly the pack's files and every SHA-256 matches;
2. the coordinator's trail: RFC 8785 entries, sequence numbers, hash chain;
3. the coordinator key: the key that signs the checkpoints, `keys/coordinator.pub`, the key the
   auditor pinned (`--coordinator-key`) and `MANIFEST.sig` agree;
4. checkpoints: each signed by that key for one origin, sizes never decreasing, none covering
   more entries than the trail holds, each root equal to the RFC 9162 root of the trail's prefix;
5. cosignatures: each verifies under the partner key the coordinator pinned; each one the trail
   records is on its checkpoint; no result was accepted without one;
6. partners' checkpoints the coordinator countersigned: both signatures verify, sizes never
   decrease, each one the trail records is held;
7. partner trails handed over: their chain and checkpoints (signed by the key the coordinator
   pinned); the countersigned copies match them; every coordinator checkpoint a partner
   cosigned matches the coordinator's trail (else it was rolled back or forked); tasks and
   results agree on both sides;
8. the study file, model hashes and partner manifests match what the trail recorded; every
   report file (results.json, report.md, plots) is listed, with its SHA-256, by the trail's
   `report_written` entry, and that entry lies inside a checkpoint a partner cosigned (the closing
   seal makes partners cosign it), so a trail cut back to an earlier checkpoint and re-extended
   cannot carry an edited report;
9. every partner the trail names (in an entry or by a pinned key) handed over its trail: without
   it, the checkpoints it cosigned cannot expose a cut or rolled-back coordinator trail. Only the
   auditor's explicit `allow_missing_partners` turns this failure into listed gaps.

This module must never repair, skip or soften a failed check: one failure, exit code 6; listed
gaps (only when the auditor allowed them), exit code 8.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from crypto import (
    Checkpoint,
    CryptoError,
    MerkleTree,
    NoteVerifier,
    UnknownSignerError,
    fingerprint,
    load_public_key,
    open_note,
)
from federated.audit.errors import AuditError
from federated.audit.evidence.layout import (
    MANIFEST,
    MANIFEST_SIGNATURE,
    PACK_FORMAT,
    Evidence,
    PartnerEvidence,
    extract_pack,
    manifest_note_body,
    open_evidence,
    report_files,
)
from federated.audit.log import cosigner, same_key, signature_names, tree_of
from federated.audit.store import NoteSeries, StoredNote
from federated.audit.trail import TrailError, VerifiedTrail, load_verified
from federated.errors import ConfigError, ResultsError
from federated.messages.audit_exchange import partner_origin
from federated.reporting.results import StudyResults


@dataclass
class Verdict:
    """What `verify` established: `ok` only if every check held and nothing is missing.

    `gaps` lists what the auditor allowed to be missing (`allow_missing_partners`); a verdict
    with gaps and no problem is "verified with gaps", never plain "verified".
    """

    source: str
    problem: str | None = None
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    coordinator_key: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.gaps

    @property
    def status(self) -> str:
        if self.problem is not None:
            return "not verified"
        return "verified with gaps" if self.gaps else "verified"

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "ok": self.ok, "verdict": self.status, "problem": self.problem,
                "checks": self.checks, "notes": self.notes, "gaps": self.gaps, "coordinator_key": self.coordinator_key}


class _Failed(Exception):
    pass


def verify_evidence(
    path: Path, *, coordinator_key: str | None = None, partner_trails: Sequence[PartnerEvidence] = (),
    allow_missing_partners: bool = False,
) -> Verdict:
    """Verify a pack (.zip or extracted directory) or a study output directory, offline.

    Raises `ConfigError` for a path that is no evidence at all; a damaged pack is a verdict.
    """
    path = Path(path)
    if path.is_dir():
        return _verify_directory(path, str(path), coordinator_key, partner_trails, allow_missing_partners)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path}: not an evidence pack (.zip), a pack directory or a study output directory")
    with tempfile.TemporaryDirectory(prefix="accord-verify-") as directory:
        try:
            root = extract_pack(path, Path(directory))
        except AuditError as exc:  # a member outside the pack, a link, a damaged or oversized member
            return Verdict(str(path), problem=str(exc))
        return _verify_directory(root, str(path), coordinator_key, partner_trails, allow_missing_partners)


def _verify_directory(root: Path, source: str, coordinator_key: str | None, partner_trails: Sequence[PartnerEvidence],
                      allow_missing_partners: bool) -> Verdict:
    evidence = open_evidence(root)
    evidence.partners.extend(partner_trails)
    checker = _Checker(evidence, Verdict(source), coordinator_key, allow_missing_partners)
    try:
        checker.run()
    except _Failed as failed:
        checker.verdict.problem = str(failed).replace(f"{root}/", "")
    except (AuditError, CryptoError, TrailError) as exc:
        checker.verdict.problem = str(exc).replace(f"{root}/", "")
    return checker.verdict


class _Checker:
    def __init__(self, evidence: Evidence, verdict: Verdict, pinned: str | None, allow_missing_partners: bool) -> None:
        self.evidence = evidence
        self.verdict = verdict
        self.pinned = pinned.strip().lower() if pinned else None
        self.allow_missing_partners = allow_missing_partners
        self.root = evidence.root
        self.study: str | None = None
        self.manifest_bytes: bytes | None = None

    def fail(self, message: str) -> NoReturn:
        raise _Failed(message)

    def rel(self, path: Path) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def run(self) -> None:
        self.check_manifest()
        self.trail = self._trail(self.evidence.coordinator_trail, "the coordinator's trail")
        self.entries = self.trail.entries
        self.verdict.checks.append(f"coordinator trail: {len(self.trail)} entries, RFC 8785 form, sequence and hash chain intact")
        self.check_coordinator_key()
        self.check_checkpoints()
        self.check_cosignatures()
        self.check_countersigned()
        for partner in self.evidence.partners:
            self.check_partner(partner)
        self.check_study_and_report()
        self.check_partners_present()

    # 1 -----------------------------------------------------------------------------------------
    def check_manifest(self) -> None:
        path = self.root / MANIFEST
        if not path.is_file():
            if self.evidence.is_pack:
                self.fail("the pack has no MANIFEST.json")
            self.verdict.notes.append("a study output directory, not a pack: no manifest; files are checked against the trail")
            return
        self.manifest_bytes = path.read_bytes()
        try:
            manifest = json.loads(self.manifest_bytes)
        except ValueError:
            manifest = None
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or manifest.get("format") != PACK_FORMAT:
            self.fail(f"MANIFEST.json is not an {PACK_FORMAT} manifest")
        self.study = manifest.get("study")
        present = {
            p.relative_to(self.root).as_posix(): p for p in sorted(self.root.rglob("*"))
            if p.is_file() and p.relative_to(self.root).as_posix() not in (MANIFEST, MANIFEST_SIGNATURE)
        }
        for name in sorted(files):
            if name not in present:
                self.fail(f"MANIFEST.json lists {name}, which is missing from the pack")
        for name in present:
            if name not in files:
                self.fail(f"{name} is in the pack but not listed in MANIFEST.json")
        for name, path in present.items():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != files[name]:
                self.fail(f"{name}: SHA-256 {digest} does not match MANIFEST.json ({files[name]}): the file changed after export")
        self.verdict.checks.append(f"MANIFEST.json: {len(files)} files, every SHA-256 matches")

    # 2 -----------------------------------------------------------------------------------------
    def _trail(self, path: Path, what: str) -> VerifiedTrail:
        if not path.is_file():
            self.fail(f"{what} ({self.rel(path)}) is missing")
        return load_verified(path)

    # 3 -----------------------------------------------------------------------------------------
    def check_coordinator_key(self) -> None:
        store = self.evidence.coordinator_store
        key = store.own.read_key()
        if key is None:
            self.fail(f"no signed checkpoints ({self.rel(store.own.directory)}/key.vkey is missing): "
                      "truncation and rollback of the trail cannot be detected")
        self.coordinator = key
        fp = fingerprint(key.public_key)
        self.verdict.coordinator_key = fp
        pem = self.root / "keys" / "coordinator.pub"
        if pem.is_file() and fingerprint(load_public_key(pem)) != fp:
            self.fail(f"keys/coordinator.pub ({fingerprint(load_public_key(pem))}) is not the key that signs the checkpoints ({fp})")
        if self.pinned is not None:
            if fp != self.pinned:
                self.fail(f"the checkpoints are signed by coordinator key {fp}, not by the key you pinned ({self.pinned})")
            self.verdict.checks.append(f"coordinator key {fp} is the one pinned with --coordinator-key")
        else:
            self.verdict.notes.append(f"coordinator key {fp} was taken from the evidence itself; pin one obtained "
                                      "independently with --coordinator-key")
        signature = self.root / MANIFEST_SIGNATURE
        if signature.is_file() and self.manifest_bytes is not None:
            try:
                opened = open_note(signature.read_text(encoding="utf-8"), verifiers=[key])
            except CryptoError as exc:
                self.fail(f"MANIFEST.sig: {exc}")
            expected = manifest_note_body(str(self.study), hashlib.sha256(self.manifest_bytes).hexdigest())
            if opened.body != expected:
                self.fail("MANIFEST.sig signs another manifest than MANIFEST.json: the manifest changed after it was signed")
            self.verdict.checks.append("MANIFEST.sig: the coordinator signed this manifest")
        elif self.evidence.is_pack:
            self.verdict.notes.append("MANIFEST.json is not signed (exported without the coordinator key)")

    # 4 -----------------------------------------------------------------------------------------
    def _open_series(self, series: NoteSeries, verifiers: list[NoteVerifier], *, log: str, required: int,
                     trail: VerifiedTrail | None, tree: MerkleTree | None) -> list[tuple[StoredNote, Checkpoint]]:
        """Open every note of a series; check signatures, origin, non-decreasing sizes, and (given a
        trail) that each covers no more than the trail and matches the root of its prefix."""
        try:
            notes = series.notes()
        except CryptoError as exc:
            self.fail(str(exc))
        opened_notes = []
        previous: tuple[int, int] | None = None
        for note in notes:
            where = f"{log} checkpoint {note.number} ({self.rel(note.path)})"
            try:
                opened = open_note(note.text, verifiers=verifiers)
                checkpoint = Checkpoint.parse_body(opened.body)
            except UnknownSignerError as exc:
                self.fail(f"{where} is not signed by the expected key {fingerprint(verifiers[0].public_key)}: {exc}")
            except CryptoError as exc:
                self.fail(f"{where}: {exc}")
            if len(opened.signers) < required or opened.signers[0] != verifiers[0].name:
                self.fail(f"{where} lacks a required signature (verified: {', '.join(opened.signers)})")
            if checkpoint.origin != verifiers[0].name:
                self.fail(f"{where} names origin {checkpoint.origin!r}, not {verifiers[0].name!r}")
            if previous is not None and checkpoint.size < previous[1]:
                self.fail(f"{where} has size {checkpoint.size}, smaller than checkpoint {previous[0]}'s size "
                          f"{previous[1]}: the log went backwards")
            if trail is not None and tree is not None:
                if checkpoint.size > len(trail):
                    self.fail(f"{where} covers {checkpoint.size} entries, but {self.rel(trail.path)} holds only "
                              f"{len(trail)}: entries were removed from its end (truncation or rollback)")
                if tree.root(checkpoint.size) != checkpoint.root:
                    since = f" (the first {previous[1]} matched checkpoint {previous[0]})" if previous else ""
                    self.fail(f"{where} does not match {self.rel(trail.path)}: the Merkle root of its first "
                              f"{checkpoint.size} entries differs from the signed root: an entry was changed, "
                              f"inserted, removed or reordered{since}")
            previous = (note.number, checkpoint.size)
            opened_notes.append((note, checkpoint))
        return opened_notes

    def check_checkpoints(self) -> None:
        self.tree = tree_of(self.trail)
        self.checkpoints = self._open_series(self.evidence.coordinator_store.own, [self.coordinator], log="coordinator",
                                             required=1, trail=self.trail, tree=self.tree)
        if not self.checkpoints:
            self.fail("the coordinator signed no checkpoint: truncation and rollback of the trail cannot be detected")
        last = self.checkpoints[-1][1].size
        self.verdict.checks.append(
            f"{len(self.checkpoints)} checkpoints signed by the coordinator ({self.coordinator.name}); sizes never "
            f"decrease; each root matches the trail (the last covers {last} of {len(self.trail)} entries)")
        if last < len(self.trail):
            self.verdict.notes.append(f"entries {last}–{len(self.trail) - 1} come after the last signed checkpoint")

    # 5 -----------------------------------------------------------------------------------------
    def check_cosignatures(self) -> None:
        store = self.evidence.coordinator_store
        self.partner_keys: dict[str, NoteVerifier] = {}
        for origin in store.peer_origins():
            key = store.peer(origin).read_key()
            if key is None:
                self.fail(f"no key pinned for partner log {origin} ({self.rel(store.peer(origin).directory)}/key.vkey)")
            self.partner_keys[origin] = key
        cosigned: dict[str, set[int]] = {}
        count = 0
        last_cosigned = 0
        for note, checkpoint in self.checkpoints:
            names = signature_names(note.text)[1:]
            where = f"coordinator checkpoint {note.number} (size {checkpoint.size})"
            for name in names:
                if name not in self.partner_keys:
                    self.fail(f"{where} carries a cosignature by {name}, whose key the coordinator never pinned")
            try:
                opened = open_note(note.text, verifiers=[self.coordinator, *(cosigner(self.partner_keys[n]) for n in set(names))])
            except CryptoError as exc:
                self.fail(f"{where}: {exc}: the cosignature was forged or altered")
            if len(opened.signers) != 1 + len(names):
                self.fail(f"{where}: a signature line is by a key other than the one pinned for its name")
            for name in opened.cosignature_times:
                cosigned.setdefault(name, set()).add(checkpoint.size)
                count += 1
                last_cosigned = max(last_cosigned, checkpoint.size)
        audited_from = self.checkpoints[0][1].size
        seen: set[tuple[str, Any, Any]] = set()
        for entry in self.entries:
            details = entry["details"]
            if entry["kind"] == "cosignature_received":
                if details["size"] not in cosigned.get(details["origin"], set()):
                    self.fail(f"cosignature missing: trail entry {entry['seq']} records that {details['partner']} cosigned "
                              f"checkpoint size {details['size']}, but that checkpoint carries no cosignature by {details['origin']}")
                seen.add((details["partner"], entry.get("study"), entry.get("round")))
            if entry["kind"] == "result_received" and entry["seq"] >= audited_from:
                if (details["partner"], entry.get("study"), entry.get("round")) not in seen:
                    self.fail(f"trail entry {entry['seq']}: the result of {details['partner']} in round {entry.get('round')} "
                              "was accepted without a cosignature of the coordinator's checkpoint")
        self.last_cosigned = last_cosigned
        self.verdict.checks.append(f"{count} cosignatures by {len(cosigned)} partners verify under the keys the "
                                   "coordinator pinned; every result received was cosigned")
        if last_cosigned < len(self.trail):
            self.verdict.notes.append(f"entries {last_cosigned}–{len(self.trail) - 1} come after the last checkpoint partners "
                                      "cosigned: only the coordinator's signature protects them")

    # 6 -----------------------------------------------------------------------------------------
    def check_countersigned(self) -> None:
        store = self.evidence.coordinator_store
        self.countersigned: dict[str, list[tuple[StoredNote, Checkpoint]]] = {}
        for origin, key in self.partner_keys.items():
            self.countersigned[origin] = self._open_series(
                store.peer(origin), [key, cosigner(self.coordinator)], log=f"partner {origin}", required=2, trail=None, tree=None)
        held = {(o, c.size, c.root.hex()) for o, notes in self.countersigned.items() for _, c in notes}
        for entry in self.entries:
            if entry["kind"] == "partner_checkpoint_countersigned":
                d = entry["details"]
                if (d["origin"], d["size"], d["root"]) not in held:
                    self.fail(f"trail entry {entry['seq']} records countersigning {d['partner']}'s checkpoint of size "
                              f"{d['size']}, which the evidence does not hold")
        total = sum(len(notes) for notes in self.countersigned.values())
        self.verdict.checks.append(f"{total} partner checkpoints countersigned by the coordinator verify")

    # 7 -----------------------------------------------------------------------------------------
    def check_partner(self, partner: PartnerEvidence) -> None:
        name, origin = partner.name, partner_origin(partner.name)
        trail = self._trail(partner.trail, f"the trail of {name}")
        tree = tree_of(trail)
        key = partner.store.own.read_key()
        pinned = self.partner_keys.get(origin)
        if key is None:
            self.verdict.notes.append(f"{name} handed over its trail without its checkpoints")
        else:
            if pinned is not None and not same_key(key, pinned):
                self.fail(f"{name}'s checkpoints are signed with key {fingerprint(key.public_key)}, but the coordinator "
                          f"pinned {fingerprint(pinned.public_key)} for {origin}")
            self._open_series(partner.store.own, [key], log=name, required=1, trail=trail, tree=tree)
        for note, checkpoint in self.countersigned.get(origin, []):
            where = f"the coordinator holds {name}'s checkpoint of size {checkpoint.size}, countersigned ({self.rel(note.path)})"
            if checkpoint.size > len(trail):
                self.fail(f"{where}, but {name}'s trail holds only {len(trail)} entries: the partner's trail was truncated or rolled back")
            if tree.root(checkpoint.size) != checkpoint.root:
                self.fail(f"{where}, but {name}'s trail no longer matches it: the partner's trail was altered")
        study = self._study_id()
        for entry in trail.entries:  # a coordinator that swapped in another log of its own for this study
            log = entry["details"].get("cosigned", {}).get("origin") if entry["kind"] == "task_received" else None
            if entry.get("study") == study and log is not None and log != self.coordinator.name:
                self.fail(f"{name}'s trail entry {entry['seq']} cosigned a checkpoint of the coordinator log {log} for study "
                          f"{study}, but the evidence holds log {self.coordinator.name}: the coordinator's log was replaced")
        cosigned = [(f"checkpoint kept by {name} ({self.rel(note.path)})", c) for note, c in self._partner_cosigned(partner, key)]
        cosigned += [(f"{name}'s trail entry {e['seq']}", Checkpoint(self.coordinator.name, e["details"]["cosigned"]["size"],
                      bytes.fromhex(e["details"]["cosigned"]["root"])))
                     for e in trail.entries if e["kind"] == "task_received" and
                     e["details"].get("cosigned", {}).get("origin") == self.coordinator.name]
        cosigned = list({(c.size, c.root): (where, c) for where, c in cosigned}.values())
        for where, checkpoint in cosigned:
            if checkpoint.size > len(self.trail):
                self.fail(f"{name} cosigned the coordinator's checkpoint of size {checkpoint.size} ({where}), but the "
                          f"coordinator's trail holds only {len(self.trail)} entries: the coordinator's log was rolled back or truncated")
            if self.tree.root(checkpoint.size) != checkpoint.root:
                self.fail(f"{name} cosigned the coordinator's checkpoint of size {checkpoint.size} ({where}), but the "
                          "coordinator's trail has another root at that size: the coordinator's log forked or was rewritten")
        self._cross_check(name, trail)
        self.verdict.checks.append(f"{name}: trail of {len(trail)} entries and its checkpoints verify; the coordinator's "
                                   f"countersigned copies and the {len(cosigned)} coordinator checkpoints it cosigned "
                                   "match both trails; tasks and results agree")

    def _partner_cosigned(self, partner: PartnerEvidence, key: NoteVerifier | None) -> list[tuple[StoredNote, Checkpoint]]:
        series = partner.store.peer(self.coordinator.name)
        verifiers = [self.coordinator] + ([cosigner(key)] if key is not None else [])
        return self._open_series(series, verifiers, log=f"coordinator (as kept by {partner.name})",
                                 required=len(verifiers), trail=None, tree=None)

    def _cross_check(self, name: str, trail: VerifiedTrail) -> None:
        study = self._study_id()
        sent = {(e.get("round"), e["details"].get("task_sha256")) for e in self.entries
                if e["kind"] == "task_sent" and e.get("study") == study}
        results_sent: dict[Any, list[dict[str, Any]]] = {}
        for entry in trail.entries:
            if entry.get("study") != study:
                continue
            if entry["kind"] in ("task_received", "task_refused") and "task_sha256" in entry["details"]:
                if (entry.get("round"), entry["details"]["task_sha256"]) not in sent:
                    self.fail(f"{name}'s trail entry {entry['seq']} records task {entry['details']['task_sha256']} in "
                              f"round {entry.get('round')}, which the coordinator's trail never sent")
            if entry["kind"] == "result_sent":
                results_sent.setdefault(entry.get("round"), []).append(entry["details"])
        for entry in self.entries:
            details = entry["details"]
            if entry["kind"] != "result_received" or details.get("partner") != name or entry.get("study") != study:
                continue
            sent_here = results_sent.get(entry.get("round"), [])
            if not sent_here:
                self.fail(f"trail entry {entry['seq']}: the coordinator recorded a result from {name} in round "
                          f"{entry.get('round')}, which {name}'s trail never sent")
            payloads = {d["payload_sha256"] for d in sent_here if "payload_sha256" in d}
            if payloads and details.get("payload_sha256") not in payloads:
                self.fail(f"trail entry {entry['seq']}: the coordinator recorded {name}'s round {entry.get('round')} result "
                          f"as payload {details.get('payload_sha256')}, but {name} sent {', '.join(sorted(payloads))}")

    # 8 -----------------------------------------------------------------------------------------
    def _results(self) -> StudyResults | None:
        """The report's results.json as a results document (None if absent); a file that is not one fails."""
        if not self.evidence.results.is_file():
            return None
        try:
            return StudyResults.read(self.evidence.results)
        except ResultsError as exc:
            self.fail(str(exc).replace(str(self.evidence.results), self.rel(self.evidence.results)))

    def _study_id(self) -> str | None:
        if self.study is None and (results := self._results()) is not None:
            self.study = results.study
        if self.study is None:
            started = [e for e in self.entries if e["kind"] == "study_started"]
            self.study = started[-1].get("study") if started else None
        return self.study

    def check_study_and_report(self) -> None:
        study = self._study_id()
        started = [e for e in self.entries if e["kind"] == "study_started" and e.get("study") == study]
        if not started:
            self.fail(f"the coordinator's trail records no start of study {study!r}")
        declared = started[-1]["details"]
        study_file = self.evidence.study_file
        if study_file is not None:
            digest = hashlib.sha256(study_file.read_bytes()).hexdigest()
            if digest != declared["study_sha256"]:
                self.fail(f"{self.rel(study_file)} hashes to {digest}, but the trail says study {study} ran with "
                          f"{declared['study_sha256']}")
        elif self.evidence.is_pack:
            self.verdict.notes.append("the pack holds no study file")
        results = self._results()
        if results is not None and results.study_sha256 != declared["study_sha256"]:
            self.fail(f"{self.rel(self.evidence.results)} belongs to another run of the study (study SHA-256 "
                      f"{results.study_sha256 or None}, the trail's last start says {declared['study_sha256']})")
        files = self._covered_report(study)
        for name, digest in sorted(files.items()):
            path = self.evidence.report_dir / name
            if not path.is_file():
                self.fail(f"{self.rel(path)} is missing; the trail recorded it when the report was written")
            if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                self.fail(f"{self.rel(path)} does not match the SHA-256 the trail recorded when the report was "
                          f"written (entry {self.report_entry}): the file was changed")
        models_file = self.root / "models" / "models.json"
        if models_file.is_file():
            for model in json.loads(models_file.read_text(encoding="utf-8")):
                if declared.get("models", {}).get(model["name"]) != model["sha256"]:
                    self.fail(f"models/models.json: model {model['name']} has SHA-256 {model['sha256']}, but the study "
                              f"started with {declared.get('models', {}).get(model['name'])}")
        lineage_file = self.root / "models" / "lineage.json"
        if lineage_file.is_file():
            released = {(e.get("round"), e["details"].get("sha256"), e["details"].get("file_sha256")) for e in self.entries
                        if e["kind"] == "model_aggregated" and e.get("study") == study}
            for model in json.loads(lineage_file.read_text(encoding="utf-8")):
                if (model.get("round"), model.get("sha256"), model.get("file_sha256")) not in released:
                    self.fail(f"models/lineage.json: the round {model.get('round')} model {model.get('sha256')} is not "
                              "one the trail records as aggregated and released")
        for partner in self.evidence.partners:
            for hash_field, handed in (("manifest_sha256", partner.manifest), ("contract_sha256", partner.contract)):
                if handed is None:
                    continue
                digest = hashlib.sha256(handed.read_bytes()).hexdigest()
                declared_hashes = {e["details"].get(hash_field) for e in self.entries
                                   if e["kind"] == "result_received" and e["details"].get("partner") == partner.name}
                if digest not in declared_hashes:
                    self.fail(f"{self.rel(handed)} hashes to {digest}, which {partner.name} never declared in its results")
        self.verdict.checks.append(f"study {study}: study file, {len(files)} report files and model hashes match the trail"
                                   + (f"; the report (entry {self.report_entry}) is inside a checkpoint partners cosigned"
                                      if files else ""))

    def _covered_report(self, study: str | None) -> dict[str, str]:
        """The files of the last `report_written` of the study, after checking that it lies inside a
        partner-cosigned checkpoint and names every report file the evidence holds."""
        present = report_files(self.evidence)
        written = [e for e in self.entries if e["kind"] == "report_written" and e.get("study") == study]
        self.report_entry: int | None = None
        if not written:
            if present:
                self.fail(f"{', '.join(self.rel(p) for p in present)}: no surviving trail entry covers them: the "
                          f"coordinator's trail holds no report_written for study {study!r} (it was cut before the "
                          "report was written, or the report was never recorded)")
            return {}
        entry = written[-1]
        self.report_entry = entry["seq"]
        if entry["seq"] >= self.last_cosigned:
            covered = (f"the last checkpoint a partner cosigned covers entries 0–{self.last_cosigned - 1}"
                       if self.last_cosigned else "no partner cosigned any checkpoint")
            self.fail(f"the report (trail entry {entry['seq']}, report_written) is not inside a checkpoint a partner "
                      f"cosigned ({covered}): only the coordinator vouches for results.json and report.md, so a trail "
                      "cut back and re-extended cannot be told apart (no partner sealed the study)")
        files: dict[str, str] = entry["details"].get("files", {})
        for path in present:
            if path.relative_to(self.evidence.report_dir).as_posix() not in files:
                self.fail(f"{self.rel(path)} is not among the report files the trail recorded (entry {entry['seq']}): "
                          "it was added after the report was written")
        return files

    # 9 -----------------------------------------------------------------------------------------
    def check_partners_present(self) -> None:
        """Every partner the trail names handed over its trail, or the auditor allowed the gap."""
        names = {partner_origin(str(e["details"]["partner"])): str(e["details"]["partner"]) for e in self.entries
                 if isinstance(e["details"].get("partner"), str)}
        for origin in self.partner_keys:
            names.setdefault(origin, origin)
        present = {partner_origin(p.name) for p in self.evidence.partners}
        missing = sorted(name for origin, name in names.items() if origin not in present)
        if not missing:
            if names:
                self.verdict.checks.append(f"all {len(names)} partners the trail names handed over their trails")
            return
        where = "have no folder in the pack" if self.evidence.is_pack else "handed over no trail (--partner-trail)"
        if not self.allow_missing_partners:
            self.fail(f"partners the trail names {where}: {', '.join(missing)}: without their cosigned checkpoints a "
                      "cut or rolled-back coordinator trail cannot be detected (pass --allow-missing-partners to "
                      "accept this gap)")
        for name in missing:
            self.verdict.gaps.append(f"{name}: named in the coordinator's trail, but its trail and cosigned checkpoints "
                                     "are not in the evidence: a cut or rollback it would expose was not checked")
