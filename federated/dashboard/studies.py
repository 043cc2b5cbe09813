"""What the coordinator's dashboard reads: the studies under an output folder, and the files it may serve.

A study is a directory holding `results.json` or `coordinator-trail.jsonl` (the coordinator writes both); the
folder given is one study or holds studies one level down. Served files are only a study's results.json,
report.md, the PNG plots the report drew and evidence packs (.zip) — never data, keys or anything else.
ε spent per partner comes from the partners' own trails (`privacy_spent`), handed over with `--partner-trail`
or inside an evidence pack, summed by the evidence pack's own `spent_report`.

This module must never open a path built from a request: requests name studies and files that are looked
up in listings made here from the directory itself.
"""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from federated.audit.errors import AuditError
from federated.audit.evidence.layout import (
    OUTPUT_TRAIL,
    PartnerEvidence,
    extract_pack,
    open_evidence,
    partner_evidence,
)
from federated.audit.evidence.verify import Verdict, verify_evidence
from federated.audit.trail import TrailError, read_entries
from federated.errors import ConfigError, ResultsError
from federated.reporting.monitoring_section import PLOT_PREFIX
from federated.reporting.privacy_report import spent_report
from federated.reporting.results import StudyResults

RESULT_FILES = ("results.json", "report.md")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
MEDIA_TYPES = {".png": "image/png", ".json": "application/json", ".md": "text/plain; charset=utf-8",
               ".zip": "application/zip"}
OUTPUT_TARGET = "output"  # the verification target that is the study's output directory itself


@dataclass(frozen=True)
class Sources:
    """What the command line named: the output folder, extra packs, partner hand-overs, the pinned key."""

    output: Path
    packs: tuple[Path, ...] = ()
    partner_trails: tuple[Path, ...] = ()
    coordinator_key: str | None = None


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def is_study_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and (_regular(path / "results.json") or _regular(path / OUTPUT_TRAIL))


def discover(root: Path) -> dict[str, Path]:
    """Study directories by name: `root` itself when it is one, else its subdirectories that are."""
    root = Path(root)
    if is_study_dir(root):
        return {root.resolve().name: root}
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if _SAFE_NAME.match(p.name) and is_study_dir(p)}


def served_files(study_dir: Path) -> dict[str, Path]:
    """The files of a study a browser may fetch, by name."""
    files = {}
    for path in sorted(study_dir.iterdir()):
        if not _SAFE_NAME.match(path.name) or not _regular(path):
            continue
        if path.name in RESULT_FILES or path.suffix in (".png", ".zip"):
            files[path.name] = path
    return files


def _pack_study(pack: Path) -> str | None:
    """The study id in a pack's report/results.json (read from the archive, nothing extracted)."""
    try:
        with zipfile.ZipFile(pack) as archive:
            return str(json.loads(archive.read("report/results.json")).get("study"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


@dataclass
class StudyView:
    """One study as the dashboard shows it: its results, its trail (or why it cannot be read), its packs."""

    name: str
    path: Path
    results: dict[str, Any] | None = None
    results_problem: str | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    trail_problem: str | None = None
    packs: dict[str, Path] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def study_id(self) -> str:
        if self.results and self.results.get("study"):
            return str(self.results["study"])
        started = [e for e in self.entries if e.get("kind") in ("study_submitted", "study_started")]
        return str(started[0].get("study")) if started else self.name

    @property
    def status(self) -> str:
        if self.results and self.results.get("status"):
            return str(self.results["status"])
        for entry in reversed(self.entries):
            if entry.get("kind") == "study_completed":
                return "completed"
            if entry.get("kind") == "study_failed":
                return "failed"
        return "running" if self.entries else "unknown"

    @property
    def final(self) -> dict[str, Any]:
        """The round whose metrics are the study's: the final evaluation, else the last round."""
        if not self.results:
            return {}
        final: dict[str, Any] = self.results.get("final_evaluation") or (self.results.get("rounds") or [{}])[-1]
        return final

    @property
    def plots(self) -> list[str]:
        """PNG plots the report drew: the files its `report_written` entry lists, when the trail reads. The
        monitoring timelines are left out: the monitoring section draws them from results.json as it is now."""
        listed = {name for e in self.entries if e.get("kind") == "report_written" for name in e["details"].get("files", {})}
        return [name for name in self.files if name.endswith(".png") and not name.startswith(PLOT_PREFIX)
                and (not self.entries or name in listed)]

    @property
    def trail_refusals(self) -> list[dict[str, Any]]:
        return [{"round": e.get("round"), "partner": e["details"].get("partner") or f"node {e['details'].get('node')}",
                 "clause": e["details"].get("clause"), "reason": e["details"].get("reason")}
                for e in self.entries if e.get("kind") == "task_refused"]


def load_study(name: str, path: Path, sources: Sources) -> StudyView:
    view = StudyView(name, path, files=served_files(path))
    try:
        view.results = StudyResults.read(path / "results.json").document() if (path / "results.json").exists() else None
        if view.results is None:
            view.results_problem = "no results.json yet"
    except ResultsError as exc:
        view.results_problem = f"results.json cannot be read: {str(exc).replace(f'{path}/', '')}"
    if _regular(path / OUTPUT_TRAIL):
        try:
            view.entries = read_entries(path / OUTPUT_TRAIL)
        except TrailError as exc:
            view.trail_problem = str(exc).replace(f"{path}/", "")
    view.packs = {name: file for name, file in view.files.items() if name.endswith(".zip")}
    for pack in sources.packs:
        if _regular(pack) and _SAFE_NAME.match(pack.name) and _pack_study(pack) == view.study_id:
            view.packs.setdefault(pack.name, pack)
    return view


def _read_partner_trails(evidence: Sequence[PartnerEvidence]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    trails, problems = {}, {}
    for partner in evidence:
        try:
            trails[partner.name] = read_entries(partner.trail)
        except TrailError as exc:
            problems[partner.name] = str(exc)
    return trails, problems


@lru_cache(maxsize=16)
def _pack_partner_trails(pack: str, _mtime_ns: int, _size: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="accord-dashboard-") as directory:
        try:
            root = extract_pack(Path(pack), Path(directory))
            return _read_partner_trails(open_evidence(root).partners)
        except (AuditError, ConfigError) as exc:
            return {}, {Path(pack).name: str(exc).replace(f"{directory}/", "")}


def privacy_spent(view: StudyView, sources: Sources) -> dict[str, Any] | None:
    """ε per partner as its own trail records it (`spent_report`), and trails that could not be read; None when
    no partner trail is at hand (only the coordinator's claim in results.json exists then)."""
    trails: dict[str, list[dict[str, Any]]] = {}
    problems: dict[str, str] = {}
    for path in sources.partner_trails:
        try:
            found, bad = _read_partner_trails([partner_evidence(path)])
        except (ConfigError, TrailError) as exc:
            found, bad = {}, {str(path): str(exc)}
        trails.update(found)
        problems.update(bad)
    for pack in view.packs.values():
        stat = pack.stat()
        found, bad = _pack_partner_trails(str(pack), stat.st_mtime_ns, stat.st_size)
        for partner, entries in found.items():
            trails.setdefault(partner, entries)
        problems.update(bad)
    if not trails and not problems:
        return None
    partners = sorted({p for r in (view.results or {}).get("rounds", []) for p in r.get("contributors", [])})
    report = spent_report(view.results or {"study": view.study_id}, trails, partners=partners)
    report["unreadable"] = problems
    return report


def verify(view: StudyView, target: str, sources: Sources) -> Verdict:
    """The verification verdict of the study's output directory (`target == "output"`) or one of its packs.

    The output directory is checked with the partner trails named on the command line; without any, their
    absence is listed as gaps ("verified with gaps"), never passed over.
    """
    try:
        if target == OUTPUT_TARGET:
            partners = [partner_evidence(p) for p in sources.partner_trails]
            return verify_evidence(view.path, coordinator_key=sources.coordinator_key, partner_trails=partners,
                                   allow_missing_partners=not partners)
        return verify_evidence(view.packs[target], coordinator_key=sources.coordinator_key)
    except (ConfigError, TrailError, AuditError) as exc:
        return Verdict(target, problem=str(exc))
