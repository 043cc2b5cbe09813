"""Where the evidence of a study is: an evidence pack (zip or extracted) or a study's output directory.

An evidence pack's layout:

    MANIFEST.json                     every other file's SHA-256 (and MANIFEST.sig, its signed note)
    README.md                         what the pack holds and how to check it
    coordinator/trail.jsonl           the coordinator's trail
    coordinator/trail.checkpoints/    its signed checkpoints with partners' cosignatures, and the
                                      partners' checkpoints the coordinator countersigned
    keys/                             coordinator.pub, coordinator.vkey, partners/<id>.vkey
    study/                            the study file, and the data-manifest hashes the trail records
    models/                           models.json (names, SHA-256) and a model card per model
    report/                           results.json, report.md and plots, as the study wrote them
    privacy/privacy-report.md         the privacy section
    processing/                       the record of processing (GDPR Art. 30 shape), JSON and Markdown
    timeline.md                       the chronological narrative
    partners/<id>/                    trails, checkpoints, manifests and data contracts partners handed over

A study's output directory holds the same evidence under the names the coordinator writes
(`coordinator-trail.jsonl`, `coordinator-trail.checkpoints/`, `results.json`, ...).
This module must never trust what it reads: it only says where things are.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from accord.durable import write_durably
from federated.audit.errors import AuditError
from federated.audit.store import CheckpointStore
from federated.audit.trail import read_entries
from federated.errors import ConfigError

MANIFEST = "MANIFEST.json"
MANIFEST_SIGNATURE = "MANIFEST.sig"
PACK_FORMAT = "accord-evidence-pack/1"
COORDINATOR_TRAIL = "coordinator/trail.jsonl"
OUTPUT_TRAIL = "coordinator-trail.jsonl"
SUBMITTED_STUDY = "submitted-study.toml"
PARTNER_TRAIL = "trail.jsonl"
MAX_PACK_BYTES = 2 * 1024**3



def manifest_note_body(study: str, manifest_sha256: str) -> str:
    """The text the coordinator signs over a pack's MANIFEST.json (a signed note's body)."""
    return f"accord evidence pack\n{study}\nMANIFEST.json sha256 {manifest_sha256}\n"


@dataclass
class PartnerEvidence:
    name: str
    trail: Path
    manifest: Path | None = None
    contract: Path | None = None  # the data contract it handed over (partners/NAME/contract.toml in a pack)

    @property
    def store(self) -> CheckpointStore:
        return CheckpointStore.beside(self.trail)


@dataclass
class Evidence:
    root: Path
    is_pack: bool
    coordinator_trail: Path
    report_dir: Path
    study_file: Path | None
    partners: list[PartnerEvidence] = field(default_factory=list)

    @property
    def coordinator_store(self) -> CheckpointStore:
        return CheckpointStore.beside(self.coordinator_trail)

    @property
    def results(self) -> Path:
        return self.report_dir / "results.json"


def open_evidence(root: Path) -> Evidence:
    """Locate the evidence in an extracted pack or a study output directory."""
    root = Path(root)
    if (root / MANIFEST).is_file() or (root / COORDINATOR_TRAIL).is_file():
        partners = []
        if (root / "partners").is_dir():
            for directory in sorted(p for p in (root / "partners").iterdir() if p.is_dir()):
                manifest, contract = directory / "manifest.toml", directory / "contract.toml"
                partners.append(PartnerEvidence(directory.name, directory / PARTNER_TRAIL, manifest if manifest.is_file() else None,
                                                contract if contract.is_file() else None))
        study = root / "study" / "study.toml"
        return Evidence(root, True, root / COORDINATOR_TRAIL, root / "report", study if study.is_file() else None, partners)
    if (root / OUTPUT_TRAIL).is_file():
        study = root / SUBMITTED_STUDY
        return Evidence(root, False, root / OUTPUT_TRAIL, root, study if study.is_file() else None)
    raise ConfigError(f"{root}: neither an evidence pack (no {MANIFEST}) nor a study output directory (no {OUTPUT_TRAIL})")


def report_files(evidence: Evidence) -> list[Path]:
    """The report and result files the evidence holds: in a pack, everything under `report/`; in an
    output directory, what the coordinator writes there (results.json, report.md, plots)."""
    directory = evidence.report_dir
    if not directory.is_dir():
        return []
    if evidence.is_pack:
        return sorted(p for p in directory.rglob("*") if p.is_file())
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and (p.name in ("results.json", "report.md") or p.suffix == ".png"))


def partner_evidence(path: Path, manifest: Path | None = None) -> PartnerEvidence:
    """A partner's hand-over: its node work directory or its trail file (name from the trail's actor)."""
    path = Path(path)
    trail = path / PARTNER_TRAIL if path.is_dir() else path
    if not trail.is_file():
        raise ConfigError(f"--partner-trail {path}: no partner trail there (expected a node work directory or a trail file)")
    entries = read_entries(trail)
    if not entries:
        raise ConfigError(f"--partner-trail {path}: the trail is empty")
    return PartnerEvidence(str(entries[0]["actor"]), trail, manifest)


def keep_submitted_study(study_file: Path, output_dir: Path) -> None:
    """Copy the submitted study file into its output directory, for the evidence pack."""
    target = Path(output_dir) / SUBMITTED_STUDY
    if target.resolve() != Path(study_file).resolve():
        write_durably(target, Path(study_file).read_bytes())


def extract_pack(archive: Path, into: Path) -> Path:
    """Unpack a pack zip into `into`, refusing absolute paths, '..', links, oversized and damaged members.

    A member whose headers lie (about its size, CRC or name) is an `AuditError` naming it.
    """
    try:
        bundle = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{archive}: not a readable zip archive ({exc})") from None
    with bundle:
        total = 0
        for info in bundle.infolist():
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                raise AuditError(f"{archive}: member {info.filename!r} would be written outside the pack")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise AuditError(f"{archive}: member {info.filename!r} is a symbolic link")
            total += info.file_size
            if total > MAX_PACK_BYTES:
                raise AuditError(f"{archive}: more than {MAX_PACK_BYTES} bytes once unpacked")
        for info in bundle.infolist():
            try:
                bundle.extract(info, into)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
                raise AuditError(f"{archive}: member {info.filename!r} is damaged ({exc})") from None
    return Path(into)
