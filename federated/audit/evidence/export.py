"""Exporting a study's evidence pack: one zip a partner or regulator can verify offline.

The pack gathers the coordinator's trail and checkpoint store as they are, the public keys,
the study file, the report files, and documents derived from them (model cards, record of
processing, privacy section, timeline), plus whatever partners hand over (their trails,
checkpoint stores, manifests, data contracts). `MANIFEST.json` lists every file's SHA-256; when the
coordinator key is at hand, `MANIFEST.sig` signs the manifest's hash as a C2SP note.
Export never repairs or filters anything: a damaged trail is packed as found, and the
verdict of `verify` on the written pack is returned with it.

This module must never include partner data or a private key in a pack.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.durable import make_directory, replacing
from crypto import (
    Checkpoint,
    CryptoError,
    Identity,
    NoteVerifier,
    fingerprint,
    save_public_key,
    sign_note,
)
from federated.audit.errors import AuditError
from federated.audit.evidence.documents import (
    describe_entry,
    model_card,
    partners_from_trail,
    privacy_report_markdown,
    record_of_processing,
    record_of_processing_markdown,
    timeline_markdown,
    utc_now,
)
from federated.audit.evidence.layout import (
    COORDINATOR_TRAIL,
    MANIFEST,
    MANIFEST_SIGNATURE,
    PACK_FORMAT,
    Evidence,
    PartnerEvidence,
    manifest_note_body,
    open_evidence,
    partner_evidence,
)
from federated.audit.evidence.verify import verify_evidence
from federated.audit.keys import COORDINATOR_KEY_NAME
from federated.audit.log import same_key, signature_names
from federated.audit.store import CheckpointStore
from federated.audit.trail import TrailError, load_verified
from federated.errors import ConfigError
from federated.reporting.privacy_report import spent_report
from federated.reporting.results import StudyResults

_SKIPPED_IN_STORES = (".lock",)


@dataclass(frozen=True)
class ExportSummary:
    pack: Path
    study: str
    files: int
    bytes: int
    partners: list[str]
    signed: bool
    problem: str | None  # the first problem `verify` finds in the written pack, if any
    gaps: tuple[str, ...] = ()  # partners the trail names whose trails were not handed over


def export_pack(
    output_dir: Path,
    out: Path,
    *,
    study: str | None = None,
    study_file: Path | None = None,
    partner_trails: Sequence[Path] = (),
    partner_manifests: Sequence[Path] = (),
    partner_contracts: Sequence[Path] = (),
    key: Path | None = None,
) -> ExportSummary:
    """Write the evidence pack of the study in `output_dir` to `out` (a .zip)."""
    evidence = open_evidence(output_dir)
    if evidence.is_pack:
        raise ConfigError(f"{output_dir} is already an evidence pack; export reads a study's output directory")
    if not evidence.results.is_file():
        raise ConfigError(f"{evidence.results}: not found; export needs the output directory of a study that ran")
    results = StudyResults.read(evidence.results).document()  # `ResultsError` names the field that does not fit
    study_id = str(results.get("study", ""))
    if study is not None and study != study_id:
        raise ConfigError(f"{output_dir} holds study {study_id!r}, not {study!r}")
    study_file = study_file or evidence.study_file
    partners = [partner_evidence(path) for path in partner_trails]
    if len({p.name for p in partners}) != len(partners):
        raise ConfigError("--partner-trail: two trails belong to the same partner")
    entries = _entries_or_empty(evidence.coordinator_trail)
    declared = partners_from_trail(entries, study_id)
    manifests = _match_declared(partner_manifests, declared, "manifest")
    contracts = _match_declared(partner_contracts, declared, "contract")
    with tempfile.TemporaryDirectory(prefix="accord-pack-") as staging_name:
        staging = Path(staging_name)
        _stage(staging, evidence, results, study_file, partners, manifests, contracts, entries)
        signed = _write_manifest(staging, study_id, evidence, key or Path(output_dir) / COORDINATOR_KEY_NAME)
        files, size = _zip(staging, Path(out))
    # Partners' hand-overs are optional here; `verify` fails a pack without them unless the auditor allows the gaps.
    verdict = verify_evidence(Path(out), allow_missing_partners=True)
    return ExportSummary(Path(out), study_id, files, size, sorted(p.name for p in partners), signed, verdict.problem,
                         tuple(verdict.gaps))


def _entries_or_empty(trail: Path) -> list[dict[str, Any]]:
    try:
        return load_verified(trail).entries
    except TrailError:
        return []  # packed as found; verify reports the damage


def _match_declared(paths: Sequence[Path], declared: dict[str, dict[str, Any]], what: str) -> dict[str, Path]:
    """Name each handed-over manifest or contract (`what`) by the partner whose results declared its hash."""
    matched: dict[str, Path] = {}
    for path in paths:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        owners = [name for name, record in declared.items() if digest in record[f"{what}_sha256"]]
        if not owners:
            raise ConfigError(f"--partner-{what} {path}: its SHA-256 {digest} is not declared by any partner in the trail")
        matched[owners[0]] = Path(path)
    return matched


def _copy_store(store: CheckpointStore, target: Path) -> None:
    if store.root.is_dir():
        shutil.copytree(store.root, target, ignore=lambda _d, names: [n for n in names if n in _SKIPPED_IN_STORES or n.endswith(".tmp")])


def _stage(
    staging: Path,
    evidence: Evidence,
    results: dict[str, Any],
    study_file: Path | None,
    partners: list[PartnerEvidence],
    manifests: dict[str, Path],
    contracts: dict[str, Path],
    entries: list[dict[str, Any]],
) -> None:
    study_id = results["study"]
    trail = staging / COORDINATOR_TRAIL
    make_directory(trail.parent)
    shutil.copyfile(evidence.coordinator_trail, trail)
    _copy_store(evidence.coordinator_store, CheckpointStore.beside(trail).root)
    keys = staging / "keys"
    (keys / "partners").mkdir(parents=True)
    coordinator = evidence.coordinator_store.own.read_key()
    if coordinator is not None:
        (keys / "coordinator.vkey").write_text(coordinator.to_vkey() + "\n", encoding="utf-8")
        save_public_key(coordinator.public_key, keys / "coordinator.pub")
    for origin in evidence.coordinator_store.peer_origins():
        pinned = evidence.coordinator_store.peer(origin).read_key()
        if pinned is not None:
            (keys / "partners" / f"{origin.rsplit('/', 1)[-1]}.vkey").write_text(pinned.to_vkey() + "\n", encoding="utf-8")
    study_doc: dict[str, Any] = {}
    (staging / "study").mkdir()
    if study_file is not None and Path(study_file).is_file():
        shutil.copyfile(study_file, staging / "study" / "study.toml")
        try:
            study_doc = tomllib.loads(Path(study_file).read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            study_doc = {}
    declared = partners_from_trail(entries, study_id)
    _write_json(staging / "study" / "data-manifests.json", declared)
    report = staging / "report"
    report.mkdir()
    for name in _report_files(entries, study_id, evidence.report_dir):
        shutil.copyfile(evidence.report_dir / name, report / name)
    models = staging / "models"
    models.mkdir()
    cards = _models(results)
    _write_json(models / "models.json", [{"name": m["name"], "sha256": m["sha256"]} for m in results.get("models", [])])
    if results.get("lineage"):
        _write_json(models / "lineage.json", results["lineage"])
    for model in cards:
        (models / f"{model['name']}.md").write_text(model_card(model, results, study_doc), encoding="utf-8")
    (staging / "privacy").mkdir()
    # What partners really spent, from their own trails; the coordinator's claim only where no trail is at hand.
    spent = spent_report(results, _partner_entries(partners), partners=sorted(declared))
    (staging / "privacy" / "privacy-report.md").write_text(privacy_report_markdown(results, spent), encoding="utf-8")
    _write_json(staging / "privacy" / "privacy-report.json", spent)
    manifest_fields = {name: tomllib.loads(path.read_text(encoding="utf-8")) for name, path in manifests.items()}
    key_fingerprint = "" if coordinator is None else fingerprint(coordinator.public_key)
    contract_fields = {name: tomllib.loads(path.read_text(encoding="utf-8")) for name, path in contracts.items()}
    record = record_of_processing(results, study_doc, manifest_fields, declared, key_fingerprint, contract_fields)
    (staging / "processing").mkdir()
    _write_json(staging / "processing" / "record-of-processing.json", record)
    (staging / "processing" / "record-of-processing.md").write_text(record_of_processing_markdown(record), encoding="utf-8")
    for partner in partners:
        directory = staging / "partners" / partner.name
        directory.mkdir(parents=True)
        shutil.copyfile(partner.trail, directory / "trail.jsonl")
        _copy_store(partner.store, CheckpointStore.beside(directory / "trail.jsonl").root)
        if partner.name in manifests:
            shutil.copyfile(manifests[partner.name], directory / "manifest.toml")
        if partner.name in contracts:
            shutil.copyfile(contracts[partner.name], directory / "contract.toml")
    (staging / "timeline.md").write_text(timeline_markdown(study_id, timeline_rows(open_evidence(staging))), encoding="utf-8")
    (staging / "README.md").write_text(_readme(results, partners), encoding="utf-8")


def _partner_entries(partners: list[PartnerEvidence]) -> dict[str, list[dict[str, Any]]]:
    """Each handed-over partner trail that verifies (a damaged one counts as missing)."""
    trails = {}
    for partner in partners:
        try:
            trails[partner.name] = load_verified(partner.trail).entries
        except TrailError:
            continue
    return trails


def _models(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The models a card is written for: the candidates, and a training study's final global model."""
    models = list(results.get("models", []))
    lineage = results.get("lineage") or []
    if lineage:
        models.append({"name": f"global-round-{lineage[-1]['round']}", "sha256": lineage[-1]["sha256"], "output": "probabilities"})
    return models


def _report_files(entries: list[dict[str, Any]], study_id: str, report_dir: Path) -> list[str]:
    """The files the trail's last `report_written` names (else the usual ones that exist)."""
    written = [e for e in entries if e["kind"] == "report_written" and e.get("study") == study_id]
    names = sorted(written[-1]["details"].get("files", {})) if written else []
    if not names:
        names = sorted(p.name for p in report_dir.iterdir() if p.name in ("results.json", "report.md") or p.suffix == ".png")
    return [name for name in names if (report_dir / name).is_file() and "/" not in name]


def timeline_rows(evidence: Evidence, *, partners: bool = True) -> list[dict[str, Any]]:
    """Trail entries and checkpoints of the coordinator (and partners' trails), in time order."""
    rows: list[dict[str, Any]] = []
    sources = [("coordinator", evidence.coordinator_trail)] + ([(p.name, p.trail) for p in evidence.partners] if partners else [])
    for source, path in sources:
        try:
            entries = load_verified(path).entries
        except TrailError:
            continue
        for entry in entries:
            rows.append({"time": entry["time"], "actor": entry["actor"], "kind": entry["kind"], "round": entry.get("round"),
                         "seq": entry["seq"], "source": source, "detail": describe_entry(entry)})
        store = CheckpointStore.beside(path)
        for note in store.own.notes():
            try:
                checkpoint = Checkpoint.parse_body(note.text[: note.text.find("\n\n") + 1])
            except CryptoError:
                continue
            if 0 < checkpoint.size <= len(entries):
                cosigners = signature_names(note.text)[1:]
                rows.append({
                    "time": entries[checkpoint.size - 1]["time"], "actor": source, "kind": "checkpoint_signed",
                    "round": entries[checkpoint.size - 1].get("round"), "seq": checkpoint.size - 0.5, "source": source,
                    "detail": f"checkpoint {note.number}: size {checkpoint.size}, root {checkpoint.root.hex()[:16]}…"
                              + (f"; cosigned by {', '.join(cosigners)}" if cosigners else "; not cosigned"),
                })
    rows.sort(key=lambda row: (row["time"], row["source"] != "coordinator", row["seq"]))
    return rows


def _readme(results: dict[str, Any], partners: list[PartnerEvidence]) -> str:
    handed = ", ".join(p.name for p in partners) or "none"
    return f"""# Evidence pack — study `{results['study']}`

Exported {utc_now()}. Purpose: {results.get('purpose')}; status: {results.get('status')}.

Check it offline, with nothing but Accord and (ideally) the coordinator's key fingerprint obtained independently:

    python -m federated.audit verify PACK.zip [--coordinator-key FINGERPRINT] [--allow-missing-partners]
    python -m federated.audit show PACK.zip
    python -m federated.audit prove PACK.zip --entry N

| path | what |
| --- | --- |
| `MANIFEST.json`, `MANIFEST.sig` | SHA-256 of every file; the coordinator's signed note over the manifest's hash |
| `coordinator/trail.jsonl` | the coordinator's hash-chained trail (RFC 8785 entries) |
| `coordinator/trail.checkpoints/log/` | its RFC 9162 checkpoints (C2SP signed notes) with partners' cosignatures |
| `coordinator/trail.checkpoints/peers/` | partners' checkpoints the coordinator countersigned, and their pinned keys |
| `keys/` | the coordinator's public key (PEM and C2SP vkey) and each partner's vkey |
| `study/` | the study file as submitted; data-manifest and data hashes each partner declared |
| `models/` | model hashes and a model card per model |
| `report/` | results.json, report.md and plots as the study wrote them (their hashes are in the trail) |
| `privacy/`, `processing/` | the privacy section; the record of processing (GDPR Art. 30 headings) |
| `timeline.md` | every entry and checkpoint in time order |
| `partners/` | trails and checkpoints handed over by partners: {handed} |

Entries after the last checkpoint partners cosigned are protected by the coordinator's signature only. The report
files must be recorded inside a checkpoint partners cosigned, and every partner the trail names must have its folder
under `partners/`; without `--allow-missing-partners` a missing one fails verification (exit 6), with it the verdict
is "VERIFIED WITH GAPS" (exit 8).
"""


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_manifest(staging: Path, study_id: str, evidence: Evidence, key: Path) -> bool:
    files = {
        path.relative_to(staging).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(staging.rglob("*")) if path.is_file()
    }
    coordinator = evidence.coordinator_store.own.read_key()
    manifest = {"format": PACK_FORMAT, "study": study_id, "created": utc_now(), "files": files,
                "coordinator_key": coordinator.to_vkey() if coordinator else None}
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (staging / MANIFEST).write_bytes(data)
    if coordinator is None or not Path(key).is_file():
        return False
    identity = Identity.load(key)
    if not same_key(coordinator, NoteVerifier(coordinator.name, identity.public_key)):
        raise AuditError(f"{key} is not the key that signed this study's checkpoints; give the coordinator's key with --key")
    note = sign_note(manifest_note_body(study_id, hashlib.sha256(data).hexdigest()), name=coordinator.name,
                     private_key=identity.private_key)
    (staging / MANIFEST_SIGNATURE).write_text(note, encoding="utf-8")
    return True


def _zip(staging: Path, out: Path) -> tuple[int, int]:
    """Write the staged files into `out` (through a temporary file renamed into place)."""
    files = sorted(path for path in staging.rglob("*") if path.is_file())
    with replacing(out.resolve()) as handle, zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path in files:
            bundle.write(path, path.relative_to(staging).as_posix())
    return len(files), out.stat().st_size
