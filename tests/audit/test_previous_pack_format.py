"""Evidence packs written by an earlier release still verify (the trail's schema-evolution rule).

`packs/stop17-demo-evidence.zip` is the pack `make demo` wrote on a fresh clone of commit 7966b8f (before typed
results, the explicit round context, shared label counts, shift and regression sections), with the coordinator
key that run created. The auditor verifies it offline with today's code; any edit to a packed file must fail.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from federated.audit.evidence.verify import verify_evidence
from federated.audit.keys import pinned_fingerprint

PACKS = Path(__file__).parent / "packs"
OLD_PACK = PACKS / "stop17-demo-evidence.zip"
OLD_KEY = pinned_fingerprint(str(PACKS / "stop17-coordinator.key.pub"))


def test_a_pack_of_the_previous_format_verifies_with_todays_code() -> None:
    verdict = verify_evidence(OLD_PACK, coordinator_key=OLD_KEY)
    assert verdict.problem is None and verdict.ok, verdict.problem


def test_an_edited_results_file_in_a_pack_of_the_previous_format_fails(tmp_path: Path) -> None:
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(OLD_PACK) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("results.json"):
                data = data.replace(b'"completed"', b'"completed" ', 1)
            target.writestr(item, data)
    verdict = verify_evidence(edited, coordinator_key=OLD_KEY)
    assert not verdict.ok and verdict.problem is not None and "results.json" in verdict.problem
