"""`python -m federated.audit`: export a study's evidence pack, verify it offline, show it, prove an entry.

Exit codes: 0 all checks hold · 2 bad usage · 3 invalid input (no such study, pack or
option value) · 6 verification failed (the message names the first problem) · 8 verified with
gaps (`verify --allow-missing-partners`: partners named in the trail handed over no trail; the
gaps are listed) · 1 unexpected error.
"""

from __future__ import annotations

import contextlib
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from accord.cli import App, print_json, print_table
from accord.errors import ExitCode
from crypto import CryptoError, leaf_hash, open_note, verify_inclusion
from federated.audit.errors import AuditError
from federated.audit.evidence.export import export_pack, timeline_rows
from federated.audit.evidence.layout import (
    Evidence,
    extract_pack,
    open_evidence,
    partner_evidence,
)
from federated.audit.evidence.verify import verify_evidence
from federated.audit.keys import COORDINATOR_KEY_NAME, pinned_fingerprint
from federated.audit.log import tree_of
from federated.audit.trail import load_verified
from federated.audit.witness import open_checkpoint
from federated.errors import ConfigError
from federated.runtime.runs import output_dir_of, run_directory

console = Console(stderr=True, soft_wrap=True)
cli = App(help=__doc__, no_args_is_help=True)


def _print_json(value: Any) -> None:
    print_json(value, sort_keys=True)


def _study_location(study: str | None, output_dir: Path | None) -> tuple[str | None, Path, Path | None]:
    """(study id, output directory, study file) from `--study ID|FILE` and `--output-dir`."""
    if study is not None and study.endswith(".toml") and Path(study).is_file():
        path = Path(study).resolve()
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not a study file ({exc})") from None
        if output_dir is None:
            if "output_dir" not in document:
                raise ConfigError(f"{path}: output_dir: missing")
            output_dir = (path.parent / str(document["output_dir"])).resolve()
        return document.get("id"), output_dir, path
    if output_dir is None:
        raise ConfigError("--output-dir: give the study's output directory (or give --study the study file)")
    return study, output_dir, None


@cli.command()
def export(
    out: Annotated[Path, typer.Option(help="Where to write the evidence pack (.zip).")],
    study: Annotated[str | None, typer.Option(help="The study: its ID (checked against the output directory) or its study file (.toml).")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="The study's output directory (default: the study file's output_dir).")] = None,
    partner_trail: Annotated[list[Path] | None, typer.Option(help="A partner's node work directory or trail file it handed over; repeatable.")] = None,
    partner_manifest: Annotated[list[Path] | None, typer.Option(help="A partner's data manifest it handed over (matched by hash); repeatable.")] = None,
    partner_contract: Annotated[list[Path] | None, typer.Option(help="A partner's data contract it handed over (matched by hash; its retention, licence and legal bases fill the record of processing); repeatable.")] = None,
    key: Annotated[Path | None, typer.Option(help="Coordinator key to sign MANIFEST.json (default: OUTPUT_DIR/coordinator.key if present, beside the runs/ folder).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the export summary and verdict as JSON.")] = False,
) -> None:
    """Write the evidence pack of a study that ran: trail, checkpoints, keys, report, model cards, records.

    Of an output directory with several runs (OUTPUT_DIR/runs/RUN_ID/), the pack holds the latest run
    (OUTPUT_DIR/latest); give --output-dir OUTPUT_DIR/runs/RUN_ID for another."""
    study_id, directory, study_file = _study_location(study, output_dir)
    directory = run_directory(directory)  # one run only: never a mix of two
    if key is None and (output_dir_of(directory) / COORDINATOR_KEY_NAME).is_file():
        key = output_dir_of(directory) / COORDINATOR_KEY_NAME
    with console.status("exporting the evidence pack"):
        summary = export_pack(directory, out, study=study_id, study_file=study_file,
                              partner_trails=partner_trail or [], partner_manifests=partner_manifest or [],
                              partner_contracts=partner_contract or [], key=key)
    if json_output:
        _print_json({"pack": str(summary.pack), "study": summary.study, "files": summary.files, "bytes": summary.bytes,
                     "partners": summary.partners, "manifest_signed": summary.signed, "problem": summary.problem,
                     "gaps": list(summary.gaps)})
    console.print(
        f"evidence pack [bold]{summary.pack}[/]: study {summary.study}, {summary.files} files, {summary.bytes} bytes; "
        f"partner trails: {', '.join(summary.partners) or 'none'}; manifest {'signed' if summary.signed else 'not signed'}"
    )
    if summary.problem is not None:
        console.print(f"[red]the exported evidence does not verify:[/] {summary.problem}")
        raise typer.Exit(int(ExitCode.VERIFICATION_FAILED))
    for gap in summary.gaps:  # export succeeds; `verify` fails such a pack unless told --allow-missing-partners
        console.print(f"[yellow]gap:[/] {gap}")


@cli.command()
def verify(
    source: Annotated[Path, typer.Argument(help="An evidence pack (.zip), an extracted pack, or a study output directory.")],
    coordinator_key: Annotated[str | None, typer.Option(help="The coordinator key you expect: a PEM public key file or its SHA-256 fingerprint.")] = None,
    partner_trail: Annotated[list[Path] | None, typer.Option(help="Also cross-check this partner's node work directory or trail; repeatable.")] = None,
    allow_missing_partners: Annotated[bool, typer.Option(help="Accept partners the trail names whose trails are not in the evidence: the verdict is VERIFIED WITH GAPS (exit 8), listing them.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Check everything offline; exit 0 only if all holds, 8 if it holds with the gaps you allowed, else 6
    with the first problem found (3 if SOURCE is no evidence at all)."""
    pinned = pinned_fingerprint(coordinator_key) if coordinator_key else None
    partners = [partner_evidence(path) for path in partner_trail or []]
    source = run_directory(source) if source.is_dir() else source  # an output directory: its latest run
    verdict = verify_evidence(source, coordinator_key=pinned, partner_trails=partners,
                              allow_missing_partners=allow_missing_partners)
    if json_output:
        _print_json(verdict.as_dict())
    for check in verdict.checks:
        console.print(f"[green]✓[/] {check}")
    for note in verdict.notes:
        console.print(f"[yellow]·[/] {note}")
    if verdict.problem is not None:
        console.print(f"[bold red]NOT VERIFIED[/]: {verdict.problem}")
        raise typer.Exit(int(ExitCode.VERIFICATION_FAILED))
    if verdict.gaps:
        for gap in verdict.gaps:
            console.print(f"[yellow]gap:[/] {gap}")
        console.print(f"[bold yellow]VERIFIED WITH GAPS[/] ({len(verdict.gaps)}): {source}")
        raise typer.Exit(int(ExitCode.VERIFIED_WITH_GAPS))
    console.print(f"[bold green]VERIFIED[/]: {source}")


@contextlib.contextmanager
def _opened(source: Path) -> Iterator[Evidence]:
    if source.is_file() and zipfile.is_zipfile(source):
        with tempfile.TemporaryDirectory(prefix="accord-show-") as directory:
            yield open_evidence(extract_pack(source, Path(directory)))
    elif source.is_dir():
        yield open_evidence(source)
    else:
        raise ConfigError(f"{source}: not an evidence pack (.zip), a pack directory or a study output directory")


@cli.command()
def show(
    source: Annotated[Path, typer.Argument(help="An evidence pack (.zip), an extracted pack, or a study output directory.")],
    actor: Annotated[str | None, typer.Option(help="Only this actor's entries (coordinator or a partner's name).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON.")] = False,
) -> None:
    """Print the timeline: every trail entry and checkpoint, coordinator and partners, in time order."""
    with _opened(source) as evidence:
        rows = timeline_rows(evidence)
    if actor is not None:
        actors = sorted({row["actor"] for row in rows})
        rows = [row for row in rows if row["actor"] == actor]
        if not rows:  # a misspelt name must not look like an actor who did nothing
            raise ConfigError(f"--actor {actor!r}: no entry of {source} is by that actor (actors: {', '.join(actors) or 'none'})")
    if json_output:
        _print_json(rows)
        return
    table = Table(title=f"Timeline — {source}")
    for column in ("time (UTC)", "who", "what", "round", "detail"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = "red" if row["kind"] in ("task_refused", "study_failed", "partner_missing", "trail_repaired") else (
            "cyan" if row["kind"] == "checkpoint_signed" else None)
        table.add_row(row["time"][:23].replace("T", " "), row["actor"], row["kind"], "" if row["round"] is None else str(row["round"]),
                      row["detail"], style=style)
    print_table(table)


@cli.command()
def prove(
    source: Annotated[Path, typer.Argument(help="An evidence pack (.zip), an extracted pack, or a study output directory.")],
    entry: Annotated[int, typer.Option(help="Sequence number of the trail entry to prove.", min=0)],
    size: Annotated[int | None, typer.Option(help="Prove against the checkpoint of this size (default: the latest).")] = None,
    partner: Annotated[str | None, typer.Option(help="Prove an entry of this partner's trail (in the pack) instead.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the proof as JSON.")] = False,
) -> None:
    """Print an RFC 9162 inclusion proof of one entry in a signed checkpoint (and check it)."""
    with _opened(source) as evidence:
        proof = _inclusion_proof(evidence, entry, size, partner)
    if json_output:
        _print_json(proof)
        return
    out = Console(soft_wrap=True, highlight=False)  # hashes on their own lines, never folded
    out.print(f"entry {entry} of {proof['log']}, leaf hash:\n  {proof['leaf_hash']}")
    out.print(f"is included in the checkpoint of size {proof['tree_size']} (signature verified), root:\n  {proof['root']}")
    out.print(f"audit path ({len(proof['proof'])} hashes):")
    for hash_ in proof["proof"]:
        out.print(f"  {hash_}")
    out.print("[green]the proof verifies[/] (RFC 9162 §2.1.3.2)")


def _inclusion_proof(evidence: Evidence, index: int, size: int | None, partner: str | None) -> dict[str, Any]:
    if partner is None:
        trail_path, store = evidence.coordinator_trail, evidence.coordinator_store
    else:
        match = next((p for p in evidence.partners if p.name == partner), None)
        if match is None:
            raise ConfigError(f"--partner: the evidence holds no trail of {partner!r}")
        trail_path, store = match.trail, match.store
    trail = load_verified(trail_path)
    key = store.own.read_key()
    if key is None:
        raise AuditError(f"{trail_path}: no signed checkpoints to prove against")
    checkpoints = [(note, open_checkpoint(note.text, key, what=f"checkpoint {note.number}")) for note in store.own.notes()]
    if index >= len(trail):
        raise ConfigError(f"--entry {index}: the trail holds entries 0–{len(trail) - 1}")
    candidates = [(n, c) for n, c in checkpoints if c.size > index and (size is None or c.size == size)]
    if not candidates:
        which = f"of size {size} " if size is not None else ""
        raise AuditError(f"no signed checkpoint {which}covers entry {index} "
                         f"(checkpoint sizes: {', '.join(str(c.size) for _, c in checkpoints) or 'none'})")
    note, checkpoint = candidates[-1]
    tree = tree_of(trail)
    if checkpoint.size > tree.size or tree.root(checkpoint.size) != checkpoint.root:
        raise AuditError(f"checkpoint {note.number} (size {checkpoint.size}) does not match the trail; run verify")
    hashes = tree.inclusion_proof(index, checkpoint.size)
    leaf = leaf_hash(trail.lines[index])
    try:
        open_note(note.text, verifiers=[key])
        verify_inclusion(leaf_hash=leaf, index=index, tree_size=checkpoint.size, proof=hashes, root=checkpoint.root)
    except CryptoError as exc:
        raise AuditError(str(exc)) from None
    return {
        "log": checkpoint.origin, "entry": index, "entry_json": trail.lines[index].decode(), "leaf_hash": leaf.hex(),
        "tree_size": checkpoint.size, "root": checkpoint.root.hex(), "proof": [h.hex() for h in hashes],
        "checkpoint": note.text, "key": key.to_vkey(),
    }


if __name__ == "__main__":
    cli(prog_name="python -m federated.audit")
