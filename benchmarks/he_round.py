"""What encrypted aggregation costs per round of a real study: time and bytes on the wire, HE vs plaintext.

    python -m benchmarks.he_round [--repeats 3] [--out benchmarks/results/he_round.json]

Two studies, each run with and without `[encryption]`, alternated in one process (`repeats` times):
- the demo evaluation (three hospitals, two candidate models, subgroups, 1000 score bins);
- a small training study (digits, three partners, the MLP, one local epoch, one round plus the final
  evaluation of the new model).
Rounds run through the coordinator's real round logic (`federated.server.rounds`,
`federated.server.training`) and the partners' real pipeline (`federated.client.app`), in this
process (`federated.local.inprocess.InProcessGrid`), so the times are compute, serialization, signing,
trails and checks, without Flower's polling (a real round adds a few seconds of it either way; see
`benchmarks.round_latency`). Bytes are Flower's protobuf serialization of every message as it would
travel, per message type, summed over partners; the decryption task and its reply are the HE
protocol's extra message pair. Times are medians (and minima: the machine may be shared) over repeats.

`--flower N` also runs the demo evaluation N times each way over real Flower (a SuperLink and three
SuperNodes on 127.0.0.1, `federated.local.localhost`) and reports the round's `duration_s` from results:
that includes Flower's polling, which the extra decryption message pays once more.
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from flwr.supercore.task_identity import TaskIdentity
from safetensors.numpy import load_file

from accord.hashing import sha256_file
from crypto import public_key_bytes
from crypto.he_keys import KeyFiles, generate_context, write_key_files
from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.keys import load_or_create_identity
from federated.local.inprocess import InProcessGrid, node_config
from federated.messages.evaluation import ModelRef, TaskSpec
from federated.server.context import RoundContext
from federated.server.encryption import EncryptedAggregation
from federated.study import Study

STUDY = "he-round-bench"


def _grid(partners: list[tuple[str, Path, Path]], workdir: Path, secret: Path | None) -> InProcessGrid:
    nodes = {i + 1: node_config(name, data, manifest, workdir / "nodes", secret) for i, (name, data, manifest) in enumerate(partners)}
    if secret is not None:
        _install_node_keys(secret.parent, workdir / "nodes", [name for name, *_ in partners])
    return InProcessGrid(nodes, count_bytes=True)


def _ceremony(directory: Path, names: list[str]) -> KeyFiles:
    """The partners' node keys (`directory/node-keys`), then the study's HE keys pinning them
    (what `python -m crypto.keys init --partner NAME=NAME.key.pub` does)."""
    keys = directory / "node-keys"
    pinned = {name: public_key_bytes(load_or_create_identity(keys / f"{name}.key")[0].public_key) for name in names}
    return write_key_files(generate_context(STUDY, partners=pinned), directory)


def _install_node_keys(key_dir: Path, nodes: Path, names: list[str]) -> None:
    """Each node signs with the key the ceremony pinned for it (its workdir's node.key)."""
    for name in names:
        (nodes / name).mkdir(parents=True, exist_ok=True)
        for suffix in ("key", "key.pub"):
            shutil.copy(key_dir / "node-keys" / f"{name}.{suffix}", nodes / name / f"node.{suffix}")


def _context(grid: InProcessGrid, workdir: Path, study: Study, encryption: EncryptedAggregation | None) -> RoundContext:
    """The coordinator's round context: its trail, signed with its key, over `grid`."""
    trail = AuditTrail(workdir / "coordinator-trail.jsonl", actor="coordinator")
    audit = CoordinatorAudit.for_study(trail, workdir / "coordinator.key", study_id=STUDY)
    return RoundContext(grid, trail, audit, study=study, study_sha256="0" * 64, encryption=encryption)


def _evaluation_round(root: Path, keys: KeyFiles, workdir: Path, encrypted: bool) -> dict[str, Any]:
    from examples.hospitals.prepare import HOSPITALS
    from federated.server.rounds import run_round

    models = ("logreg", "mlp")
    study = Study.model_validate({
        "id": STUDY, "purpose": "evaluation", "output_dir": str(workdir / "out"), "round_timeout_s": 60,
        "models": [{"name": m, "path": str(root / "models" / f"{m}.onnx")} for m in models],
        "evaluation": {"subgroup_levels": ["under_50", "50_plus"]},
        "encryption": {"enabled": True, "public_context": str(keys.public)} if encrypted else {},
    })
    partners = [(name, root / "data" / f"{name}.csv", root / "data" / f"{name}.toml") for name, *_ in HOSPITALS]
    grid = _grid(partners, workdir, keys.secret if encrypted else None)
    spec = TaskSpec(
        study=STUDY, round=1, study_sha256="0" * 64, evaluation=study.evaluation,
        models=[ModelRef(name=m, sha256=sha256_file(root / "models" / f"{m}.onnx"), output="probabilities") for m in models],
    )
    encryption = EncryptedAggregation.for_study(study, workdir / "study.toml")
    started = time.perf_counter()
    outcome = run_round(_context(grid, workdir, study, encryption), spec,
                        {m: (root / "models" / f"{m}.onnx").read_bytes() for m in models})
    seconds = time.perf_counter() - started
    if len(outcome.contributors) != len(partners):
        raise RuntimeError(f"evaluation round: {outcome.refused} {outcome.missing}")
    return {"round_s": seconds, "bytes_out": dict(grid.bytes_out), "bytes_in": dict(grid.bytes_in),
            "accuracy": outcome.pooled["logreg"]["accuracy"]}


def _training_round(root: Path, keys: KeyFiles, workdir: Path, encrypted: bool) -> dict[str, Any]:
    from examples.digits.prepare import partner_name
    from federated.server.runner import StudyRunner
    from federated.server.training import run_training

    study = Study.model_validate({
        "id": STUDY, "purpose": "training", "rounds": 1, "output_dir": str(workdir / "out"),
        "training": {"architecture": "mlp", "num_features": 64, "initial_weights": str(root / "initial-mlp.safetensors"),
                     "local_epochs": 1, "batch_size": 32, "learning_rate": 0.3, "max_update_norm": 30.0},
        "evaluation": {"num_classes": 10, "score_bins": 100},
        "encryption": {"enabled": True, "public_context": str(keys.public), "max_records_per_partner": 2000}
        if encrypted else {},
    })
    partners = [(partner_name(i), root / f"{partner_name(i)}.csv", root / f"{partner_name(i)}.toml") for i in range(3)]
    grid = _grid(partners, workdir, keys.secret if encrypted else None)
    runner = StudyRunner(_context(grid, workdir, study, EncryptedAggregation.for_study(study, workdir / "s.toml")), [],
                         run_id=1)
    started = time.perf_counter()
    run_training(runner)
    seconds = time.perf_counter() - started
    (round_one,) = runner.rounds
    if len(round_one.contributors) != len(partners):
        raise RuntimeError(f"training round: {round_one.refused} {round_one.rejected}")
    assert runner.final_evaluation is not None
    parameters = sum(int(array.size) for array in load_file(str(root / "initial-mlp.safetensors")).values())
    return {"round_s": round_one.duration_s, "study_s": seconds, "final_evaluation_s": runner.final_evaluation.duration_s,
            "timings_s": round_one.timings_s, "bytes_out": dict(grid.bytes_out), "bytes_in": dict(grid.bytes_in),
            "parameters": parameters, "update_error_bound": (round_one.encryption or {}).get("update_error_bound")}


def _flower_evaluation_round(root: Path, keys: KeyFiles, workdir: Path, encrypted: bool) -> dict[str, Any]:
    from examples.hospitals.prepare import HOSPITALS
    from federated.local.localhost import LocalFederation, Partner

    workdir.mkdir(parents=True)
    lines = [f'id = "{STUDY}"', 'purpose = "evaluation"', "min_cohort = 3", "round_timeout_s = 120",
             "cohort_timeout_s = 120", f'output_dir = "{workdir / "out"}"']
    for model in ("logreg", "mlp"):
        lines += ["[[models]]", f'name = "{model}"', f'path = "{root / "models" / f"{model}.onnx"}"']
    lines += ["[evaluation]", 'subgroup_levels = ["under_50", "50_plus"]']
    if encrypted:
        lines += ["[encryption]", "enabled = true", f'public_context = "{keys.public}"']
    study = workdir / "study.toml"
    study.write_text("\n".join(lines) + "\n", encoding="utf-8")
    federation = LocalFederation(workdir=workdir / "nodes")
    try:
        federation.start_coordinator(study, log=workdir / "coordinator.log")
        extra = ["--he-secret-context", str(keys.secret)] if encrypted else []
        if encrypted:
            _install_node_keys(keys.secret.parent, workdir / "nodes", [name for name, *_ in HOSPITALS])
        for name, *_ in HOSPITALS:
            federation.start_partner(Partner(name, root / "data" / f"{name}.csv", root / "data" / f"{name}.toml"), *extra)
        if federation.coordinator.wait(timeout=600) != 0:
            raise RuntimeError((workdir / "coordinator.log").read_text()[-2000:])
    finally:
        federation.stop()
    (round_one,) = json.loads((workdir / "out" / "latest" / "results.json").read_text())["rounds"]
    return {"round_s": round_one["duration_s"]}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _summarise(runs: dict[str, list[dict[str, Any]]], keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, measured in runs.items():
        first = measured[0]
        out[mode] = {key: round(_median(measured, key), 4) for key in keys}
        out[mode] |= {f"{key}_best": round(min(run[key] for run in measured), 4) for key in keys}
        if "bytes_out" in first:
            out[mode] |= {"bytes_out": first["bytes_out"], "bytes_in": first["bytes_in"],
                          "bytes_total": sum(first["bytes_out"].values()) + sum(first["bytes_in"].values())}
        out[mode] |= {k: v for k, v in first.items() if k in ("parameters", "update_error_bound", "accuracy")}
    for key in keys:
        out[f"{key}_ratio"] = round(out["encrypted"][key] / out["plaintext"][key], 3)
        out[f"{key}_ratio_best"] = round(out["encrypted"][f"{key}_best"] / out["plaintext"][f"{key}_best"], 3)
    if "bytes_total" in out["plaintext"]:
        out["bytes_ratio"] = round(out["encrypted"]["bytes_total"] / out["plaintext"]["bytes_total"], 3)
    return out


def main(
    repeats: Annotated[int, typer.Option(help="Runs of each study per mode (alternated).")] = 3,
    out: Annotated[Path, typer.Option(help="Where the JSON goes.")] = Path("benchmarks/results/he_round.json"),
    skip_training: Annotated[bool, typer.Option(help="Only the evaluation study.")] = False,
    flower: Annotated[int, typer.Option(help="Also run the demo evaluation this many times each way over real Flower.")] = 0,
) -> None:
    """Run both studies with and without encryption, alternated, and write the medians as JSON."""
    for name in ("_run_id", "_node_id", "_task_id"):
        setattr(TaskIdentity, name, 1)  # Flower's Message needs the identity a ServerApp process has
    work = Path(tempfile.mkdtemp(prefix="accord-he-round-"))
    try:
        from examples.digits.prepare import prepare_digits, write_initial_weights
        from examples.hospitals.prepare import prepare

        from examples.digits.prepare import partner_name
        from examples.hospitals.prepare import HOSPITALS

        prepare(work / "hospitals")
        keys = _ceremony(work / "keys", [name for name, *_ in HOSPITALS])
        training_keys = _ceremony(work / "training-keys", [partner_name(i) for i in range(3)])
        evaluation: dict[str, list[dict[str, Any]]] = {"plaintext": [], "encrypted": []}
        training: dict[str, list[dict[str, Any]]] = {"plaintext": [], "encrypted": []}
        if not skip_training:
            prepare_digits(work / "digits", partners=3)
            write_initial_weights(work / "digits", architecture="mlp")
        for run in range(repeats):
            for mode in ("plaintext", "encrypted"):
                where = work / f"eval-{mode}-{run}"
                evaluation[mode].append(_evaluation_round(work / "hospitals", keys, where, mode == "encrypted"))
                if not skip_training:
                    where = work / f"train-{mode}-{run}"
                    training[mode].append(_training_round(work / "digits", training_keys, where, mode == "encrypted"))
        report: dict[str, Any] = {
            "benchmark": "he_round", "repeats": repeats, "machine": {"python": platform.python_version(),
                                                                    "processor": platform.machine()},
            "note": "in-process rounds: real coordinator and partner code, no Flower transport or polling",
            "evaluation": _summarise(evaluation, ("round_s",)),
        }
        if not skip_training:
            report["training"] = _summarise(training, ("round_s", "study_s", "final_evaluation_s"))
        if flower:
            real: dict[str, list[dict[str, Any]]] = {"plaintext": [], "encrypted": []}
            for run in range(flower):
                for mode in ("plaintext", "encrypted"):
                    where = work / f"flower-{mode}-{run}"
                    real[mode].append(_flower_evaluation_round(work / "hospitals", keys, where, mode == "encrypted"))
            report["evaluation_over_flower"] = _summarise(real, ("round_s",))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        typer.echo(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    typer.run(main)
