"""What the audit trail costs: fsynced appends, verification throughput, proof sizes, pack export.

Measures, on this machine:
- appends per second through `AuditTrail.append` (file lock, RFC 8785, fsync on every entry);
- verification of a 10^5-entry trail: the hash chain and canonical form (`verify_trail`), then
  everything `verify` does to a trail (chain, canonical form, RFC 9162 tree, signed checkpoint);
  the old check (re-canonicalising every entry with `rfc8785`) is timed on the same trail;
- RFC 9162 inclusion and consistency proof sizes at 10^3..10^6 leaves, and the bytes the audit
  adds to a task and a reply in steady state;
- the coordinator's and a partner's audit work per round (sign, attach, check, cosign, seal, take);
- exporting and verifying the evidence pack of a study whose trail holds 10^5 entries.
Writes JSON (default `benchmarks/results/audit.json`). Run from the repository root:

    python -m benchmarks.audit [--entries 100000] [--appends 2000] [--out benchmarks/results/audit.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import rfc8785

from crypto import Identity, MerkleTree, leaf_hash
from federated.audit import AuditTrail, verify_trail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.evidence.export import export_pack
from federated.audit.evidence.layout import SUBMITTED_STUDY
from federated.audit.evidence.verify import verify_evidence
from federated.audit.log import TrailLog, tree_of
from federated.audit.partner_audit import PartnerAudit
from federated.audit.trail import GENESIS, load_verified
from federated.audit.witness import cosign_and_keep
from federated.messages.audit_exchange import partner_origin, read_reply_audit, read_task_audit
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import build_reply

HERE = Path(__file__).resolve().parent
STUDY = 'id = "bench"\npurpose = "evaluation"\noutput_dir = "."\n'


def bench_appends(directory: Path, count: int) -> dict[str, float]:
    trail = AuditTrail(directory / "appends.jsonl", actor="coordinator")
    started = time.perf_counter()
    for index in range(count):
        trail.append("task_sent", study="bench", round=1 + index // 100, node=str(10**18 + index), task_sha256="ab" * 32)
    elapsed = time.perf_counter() - started
    return {"appends": count, "seconds": round(elapsed, 3), "appends_per_s": round(count / elapsed, 1),
            "filesystem_dir": str(directory)}


def _entry(seq: int, prev: str) -> dict:
    """Realistic coordinator entries: tasks, results (hashes, counts), rounds (with a float)."""
    round_number = 1 + seq // 10
    kind, details = [
        ("task_sent", {"node": str(10**18 + seq), "task_sha256": hashlib.sha256(b"%d" % round_number).hexdigest(), "checkpoint_size": seq}),
        ("aggregate_computed", {"contributors": ["hospital-a", "hospital-b", "hospital-c"], "aggregate_sha256": "cd" * 32}),
        ("result_received", {"node": str(10**18 + seq), "partner": "hospital-a", "count": 200, "payload_sha256": "ef" * 32,
                             "data_sha256": "12" * 32, "manifest_sha256": "34" * 32}),
        ("round_completed", {"contributors": ["hospital-a", "hospital-b", "hospital-c"], "refused": 0, "missing": 0,
                             "duration_s": 6.421 + seq % 7 / 1000}),
    ][seq % 4 if seq % 10 else 3]
    return {"v": 1, "seq": seq, "time": "2026-11-27T05:58:30.082+00:00", "actor": "coordinator", "kind": kind,
            "study": "bench", "round": round_number, "details": details, "prev": prev}


def write_synthetic_trail(path: Path, count: int, *, tail: list[tuple[str, dict]] = ()) -> None:
    """A valid chained trail of `count` entries (written in one go: no fsync per entry)."""
    prev, lines = GENESIS, []
    kinds = [("trail_opened", {}), ("study_started", {"study_sha256": hashlib.sha256(STUDY.encode()).hexdigest(),
                                                      "models": {"m": "56" * 32}, "rounds": count // 10, "min_cohort": 2})]
    for seq in range(count):
        if seq < len(kinds) or seq >= count - len(tail):
            kind, details = (kinds + list(tail))[seq if seq < len(kinds) else len(kinds) + seq - (count - len(tail))]
            entry = {"v": 1, "seq": seq, "time": "2026-11-27T05:58:30.000+00:00", "actor": "coordinator", "kind": kind,
                     "study": "bench", "round": None, "details": details, "prev": prev}
        else:
            entry = _entry(seq, prev)
        line = rfc8785.dumps(entry)
        lines.append(line)
        prev = hashlib.sha256(line).hexdigest()
    path.write_bytes(b"\n".join(lines) + b"\n")


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def bench_verify(directory: Path, count: int, repeats: int) -> dict[str, float]:
    path = directory / "verify.jsonl"
    write_synthetic_trail(path, count)
    log = TrailLog(path, Identity.generate(), origin="accord.coordinator/bench")
    log.sign()
    chain, full, full_cpu, old = [], [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        verify_trail(path)
        chain.append(time.perf_counter() - started)
        started, cpu = time.perf_counter(), time.process_time()
        trail = load_verified(path)
        tree = tree_of(trail)
        (checkpoint,) = [c.checkpoint for c in log.checkpoints()]
        assert checkpoint.size == len(trail) and tree.root(checkpoint.size) == checkpoint.root
        full.append(time.perf_counter() - started)
        full_cpu.append(time.process_time() - cpu)
    lines = path.read_bytes().splitlines()
    started = time.perf_counter()
    for line in lines:  # what verify_trail did before: parse, re-canonicalise with rfc8785, compare
        assert rfc8785.dumps(json.loads(line)) == line
    old.append(time.perf_counter() - started)
    # Best of `repeats` (timeit's convention: the machine is shared, slower runs measure the
    # neighbours); the median is kept beside it.
    return {
        "entries": count,
        "repeats": repeats,
        "chain_and_canonical_entries_per_s": _rate(count, min(chain)),
        "full_verify_entries_per_s": _rate(count, min(full)),
        "full_verify_entries_per_s_median": _rate(count, statistics.median(full)),
        "full_verify_entries_per_cpu_s": _rate(count, min(full_cpu)),
        "full_verify_seconds": round(min(full), 3),
        "rfc8785_recanonicalise_only_entries_per_s": _rate(count, old[0]),
        "trail_bytes": path.stat().st_size,
    }


def bench_proofs() -> dict[str, dict[str, int]]:
    sizes = {}
    for exponent in (3, 4, 5, 6):
        n = 10**exponent
        tree = MerkleTree(leaf_hash(b"%d" % i) for i in range(n))
        inclusion = max(len(tree.inclusion_proof(i, n)) for i in (0, n // 3, n - 1))
        consistency = len(tree.consistency_proof(n - n // 10 - 1, n))
        sizes[f"1e{exponent}"] = {"leaves": n, "inclusion_hashes": inclusion, "inclusion_bytes": 32 * inclusion,
                                  "consistency_hashes": consistency, "consistency_bytes": 32 * consistency}
    return sizes


def bench_round_overhead(directory: Path, rounds: int) -> dict[str, float]:
    """The audit's own work in a round with three partners (no Flower, no evaluation)."""
    out = directory / "round"
    trail = AuditTrail(out / "coordinator-trail.jsonl", actor="coordinator")
    coordinator = CoordinatorAudit(trail, Identity.generate(), study_id="bench")
    partners = [(f"hospital-{x}", directory / f"node-{x}" / "trail.jsonl", Identity.generate()) for x in "abc"]
    coordinator_s, partner_s, task_bytes, reply_bytes = [], [], [], []
    from flwr.app import RecordDict

    for round_number in range(1, rounds + 1):
        task_sha256 = hashlib.sha256(b"task %d" % round_number).hexdigest()
        where = {"study": "bench", "round": round_number}
        started = time.perf_counter()
        coordinator.checkpoint()
        contents = []
        for node, _ in enumerate(partners, start=1):
            content = RecordDict({})
            coordinator.trail.append("task_sent", node=str(node), task_sha256=task_sha256,
                                     **coordinator.attach_task(content, node, task_sha256), **where)
            contents.append(content)
        coordinator_s.append(time.perf_counter() - started)
        replies = []
        for (name, path, identity), content in zip(partners, contents):
            started = time.perf_counter()
            partner_trail = AuditTrail(path, actor=name)
            audit = PartnerAudit(path, identity, partner_id=name)
            partner_trail.append("task_received", task_sha256=task_sha256, **audit.check_task(content, task_sha256), **where)
            partner_trail.append("result_sent", payload_sha256="ab" * 32, **where)
            reply = audit.attach_reply_audit(build_reply(PartnerInfo(partner=name, status="ok"), {}))
            partner_s.append(time.perf_counter() - started)
            task_bytes.append(len(read_task_audit(content).model_dump_json()))
            reply_bytes.append(len(read_reply_audit(reply).model_dump_json()))
            replies.append(reply)
        started = time.perf_counter()
        for node, ((name, _, _), reply) in enumerate(zip(partners, replies), start=1):
            assert coordinator.receive(node, reply, partner=name, accepted=True, where=where) is None
        coordinator_s[-1] += time.perf_counter() - started
    steady = slice(1, None)  # round 1 has no proofs or countersignatures yet
    return {
        "rounds": rounds, "partners": len(partners),
        "coordinator_ms_per_round": round(1000 * statistics.median(coordinator_s[steady]), 2),
        "partner_ms_per_task": round(1000 * statistics.median(partner_s[len(partners):]), 2),
        "task_audit_record_bytes": int(statistics.median(task_bytes[len(partners):])),
        "reply_audit_record_bytes": int(statistics.median(reply_bytes[len(partners):])),
    }


def bench_export(directory: Path, count: int) -> dict[str, float]:
    out = directory / "study"
    out.mkdir()
    (out / SUBMITTED_STUDY).write_text(STUDY)
    results = {"study": "bench", "purpose": "evaluation", "status": "completed", "message": "",
               "study_sha256": hashlib.sha256(STUDY.encode()).hexdigest(),
               "models": [{"name": "m", "sha256": "56" * 32, "path": "m.onnx"}], "rounds": []}
    (out / "results.json").write_text(json.dumps(results))
    (out / "report.md").write_text("# report\n")
    files = {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("results.json", "report.md")}
    write_synthetic_trail(out / "coordinator-trail.jsonl", count,
                          tail=[("report_written", {"files": files}), ("study_completed", {"rounds": count // 10})])
    identity = Identity.generate()
    identity.save(out / "coordinator.key")
    log = TrailLog(out / "coordinator-trail.jsonl", identity, origin="accord.coordinator/bench")
    sealed = log.sign()
    # A partner seals the study: verify demands a report inside a partner-cosigned checkpoint. The
    # synthetic partners hand over no trails, so the pack verifies with gaps (--allow-missing-partners).
    partner = Identity.generate()
    partner_log = TrailLog(directory / "partner" / "trail.jsonl", partner, origin=partner_origin("hospital-a"))
    log.store.peer(partner_log.origin).write_key(partner_log.verifier)
    log.add_cosignature(sealed.checkpoint.size, cosign_and_keep(
        partner_log.store.peer(log.origin), sealed.note.text, partner, name=partner_log.origin), partner_log.verifier)
    started = time.perf_counter()
    summary = export_pack(out, directory / "pack.zip", study="bench")
    export_s = time.perf_counter() - started  # includes the verification export runs on the written pack
    assert summary.problem is None, summary.problem
    started = time.perf_counter()
    verdict = verify_evidence(directory / "pack.zip", allow_missing_partners=True)
    assert verdict.problem is None and len(verdict.gaps) == 1, verdict.problem or verdict.gaps
    verify_s = time.perf_counter() - started
    return {"entries": count, "export_seconds_including_verify": round(export_s, 2), "verify_pack_seconds": round(verify_s, 2),
            "pack_bytes": summary.bytes, "files": summary.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "audit.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="accord-bench-audit-", dir=HERE) as name:
        directory = Path(name)  # on the project's disk, where trails live, not tmpfs
        report = {
            "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
            "appends": bench_appends(directory, args.appends),
            "verify": bench_verify(directory, args.entries, args.repeats),
            "proofs": bench_proofs(),
            "round_overhead": bench_round_overhead(directory, args.rounds),
            "export": bench_export(directory, args.entries),
        }
    report["targets"] = {
        "appends_per_s >= 1000": report["appends"]["appends_per_s"] >= 1000,
        "verified_entries_per_s >= 100000": report["verify"]["full_verify_entries_per_s"] >= 100_000,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
