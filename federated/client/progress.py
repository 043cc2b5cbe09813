"""What the node says it did: its own audit trail, followed from the node's CLI process, in Accord's words.

Flower runs the ClientApp in processes of its own, so the node CLI cannot hear the tasks directly;
it reads the partner's trail (`federated.audit.trail`) as the ClientApp appends to it, as the
coordinator CLI follows the coordinator's trail. One line per task: accepted (with the ε spent and
remaining when the task spent any) or refused (with the contract clause); after a study's closing
seal, an idle line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_NO_CAP = 1e300  # the ledger stores "no cap" as the largest float


def _epsilon(value: float) -> str:
    return "no cap" if value > _NO_CAP else f"{value:.3g}"


class TaskNarrator:
    """Turns partner trail entries into console lines (`feed`); keeps what a line needs from earlier entries."""

    def __init__(self) -> None:
        self._spent: dict[tuple[str | None, Any], list[dict[str, Any]]] = {}

    def feed(self, entry: dict[str, Any]) -> list[str]:
        kind, details = entry.get("kind"), entry.get("details", {})
        study, round_number = entry.get("study") or details.get("study"), entry.get("round", details.get("round"))
        where = f"study {study}, " + (f"round {round_number}" if round_number is not None else "seal")
        if details.get("step") == "decryption":
            where = f"study {study}, round {round_number} decryption"
        if kind == "privacy_spent":
            self._spent.setdefault((study, round_number), []).append(details)
            return []
        if kind == "task_refused":
            self._spent.pop((study, round_number), None)
            return [f"{where}: [yellow]refused[/] (clause {details.get('clause')}): {details.get('reason', '')}"]
        if kind != "result_sent":
            return []
        if details.get("step") == "seal" or round_number is None:
            return [f"study {study}: sealed (cosigned the coordinator's final checkpoint); idle, waiting for the next study"]
        return [f"{where}: accepted, result sent{self._spending(study, round_number)}"]

    def _spending(self, study: str | None, round_number: Any) -> str:
        spends = self._spent.pop((study, round_number), [])
        if not spends:
            return "; no ε spent"
        last = spends[-1]
        spent = sum(float(s.get("epsilon", 0.0)) for s in spends)
        return (
            f"; spent ε {spent:.3g}, remaining ε {_epsilon(float(last.get('remaining_epsilon_study', float('inf'))))} "
            f"for this study, {_epsilon(float(last.get('remaining_epsilon_total', float('inf'))))} in total"
        )


class TrailFollower(threading.Thread):
    """Reads entries appended to `trail` after it started and passes their lines to `say`, until `stop()`."""

    def __init__(self, trail: Path, say: Callable[[str], None], *, poll_s: float = 0.3) -> None:
        super().__init__(daemon=True, name="accord-trail-follower")
        self.trail, self.say, self.poll_s = Path(trail), say, poll_s
        self.position = self.trail.stat().st_size if self.trail.is_file() else 0
        self.narrator = TaskNarrator()
        self._halt = threading.Event()

    def read_new(self) -> None:
        """Feed every complete line appended since the last read."""
        if not self.trail.is_file():
            return
        with open(self.trail, "rb") as handle:
            handle.seek(self.position)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.position += len(complete)
        for line in complete.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn record; the trail repairs it on its next open
            for said in self.narrator.feed(entry):
                self.say(said)

    def run(self) -> None:
        while not self._halt.wait(self.poll_s):
            self.read_new()
        self.read_new()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)
