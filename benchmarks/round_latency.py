"""Wall time of a 3-partner evaluation round: Accord vs a bare Flower app, alternated.

Both apps run on the same SuperLink and the same three SuperNodes (started once), on the
demo hospitals' data and models; runs alternate Accord, bare (Flower's send_and_receive),
bare polling for replies as often as Accord does, and again. Each run has several rounds;
a round is timed inside the ServerApp from sending the tasks to having pooled the replies.
Writes JSON with medians, the ratios, and where an Accord round's time goes (per phase, read from the
coordinator's and the partners' trails). `--cpu-load N` runs N busy processes during both apps' rounds,
to show what Accord's per-round CPU work costs when cores are scarce.

    python -m benchmarks.round_latency [--runs 3] [--rounds 3] [--cpu-load N] [--out benchmarks/results/round_latency.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from datetime import datetime

from examples.hospitals.prepare import HOSPITALS, prepare
from federated.audit.trail import read_entries
from federated.client.settings import NodeSettings
from federated.local.localhost import free_port
from federated.runtime.flower import (
    start_process,
    stop_process,
    submit_run,
    wait_for_port,
    write_bundle,
    write_connection,
)
from federated.server.collect import REPLY_POLL_S
from federated.server.coordinator import Transport, follow, submit_study

HERE = Path(__file__).resolve().parent


def _start_federation(work: Path, port: int) -> list:
    home = work / "flwr"
    processes = [start_process(
        ["flower-superlink", "--insecure", "--disable-runtime-dependency-installation", "--host", "127.0.0.1", "--port", str(port)],
        home, work / "superlink.log",
    )]
    wait_for_port("127.0.0.1", port, timeout_s=60, process=processes[0])
    for name, *_ in HOSPITALS:
        settings = NodeSettings(name, work / "data" / f"{name}.csv", work / "data" / f"{name}.toml", work / "nodes" / name / "trail.jsonl")
        command = ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}", "--port", str(free_port()),
                   "--node-config", settings.to_node_config()]
        processes.append(start_process(command, work / "nodes" / name / "flwr", work / "nodes" / name / "node.log"))
    write_connection(home, f"127.0.0.1:{port}", insecure=True, root_certificates=None)
    return processes


def _busy() -> None:
    while True:
        pass


def _start_load(n: int) -> list[multiprocessing.Process]:
    """`n` processes that each keep one core busy until stopped (the stated CPU load)."""
    processes = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(n)]
    for process in processes:
        process.start()
    return processes


def _stamp(entry: dict) -> float:
    return datetime.fromisoformat(entry["time"]).timestamp()


def _phases(work: Path, study: str, rounds: int) -> list[dict[str, float]]:
    """Per round, from both sides' trails: the coordinator's audit and send work (round start → last task
    sent), the partners' own work (task received → result sent, the slowest partner), the wait that is
    neither (Flower's delivery, polling and the ClientApp's process start and imports), and pooling (last
    result received → round completed)."""
    # One output folder (one coordinator key, which the partners pin), one run folder per study; read right
    # after the run, `latest` is this study's.
    coordinator = [e for e in read_entries(work / "accord" / "latest" / "coordinator-trail.jsonl")
                   if e.get("study") == study]
    partners = [e for name, *_ in HOSPITALS for e in read_entries(work / "nodes" / name / "trail.jsonl")
                if e.get("study") == study]
    phases = []
    for number in range(1, rounds + 1):
        mine = [e for e in coordinator if e.get("round") == number]
        theirs = [e for e in partners if e.get("round") == number]
        sent = [_stamp(e) for e in mine if e["kind"] == "task_sent"]
        received = [_stamp(e) for e in mine if e["kind"] == "result_received"]
        done = [_stamp(e) for e in mine if e["kind"] == "round_completed"]
        start = min(_stamp(e) for e in mine)
        work_s = [max(_stamp(e) for e in theirs if e["kind"] == "result_sent" and e["actor"] == name)
                  - min(_stamp(e) for e in theirs if e["kind"] == "task_received" and e["actor"] == name)
                  for name in {e["actor"] for e in theirs if e["kind"] == "result_sent"}]
        if not (sent and received and done and work_s):
            continue
        total = done[0] - start
        partner_s = max(work_s)
        phases.append({
            "coordinator_send_s": round(max(sent) - start, 4),
            "partner_work_s": round(partner_s, 4),
            "delivery_and_clientapp_start_s": round(max(received) - max(sent) - partner_s, 4),
            "pooling_s": round(done[0] - max(received), 4),
            "total_s": round(total, 4),
        })
    return phases


def _median_phases(phases: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(p[key] for p in phases), 4) for key in phases[0]} if phases else {}


def _accord_run(work: Path, port: int, rounds: int, index: int) -> list[float]:
    study = work / f"study-{index}.toml"
    lines = [f'id = "latency-{index}"', 'purpose = "evaluation"', f"rounds = {rounds}", "min_cohort = 3",
             f'output_dir = "{work / "accord"}"', "[evaluation]", 'subgroup_levels = ["under_50", "50_plus"]']
    for name in ("logreg", "mlp"):
        lines[-2:-2] = ["[[models]]", f'name = "{name}"', f'path = "{work / "models" / f"{name}.onnx"}"']
    study.write_text("\n".join(lines) + "\n", encoding="utf-8")
    submission = submit_study(study, superlink=f"127.0.0.1:{port}", host="127.0.0.1", port=port,
                              transport=Transport(insecure=True), flwr_home=work / "flwr")
    results = follow(submission, lambda entry: None, timeout_s=600)
    return [entry["duration_s"] for entry in results["rounds"]]


def _bare_run(work: Path, rounds: int, index: int, poll_s: float) -> list[float]:
    out = work / f"bare-{index}-{poll_s}.json"
    bundle = work / "bare-bundle"
    write_bundle(bundle, name="bare-eval", run_config={
        "rounds": rounds, "nodes": len(HOSPITALS), "out": str(out), "poll-s": poll_s,
        "model-logreg": str(work / "models" / "logreg.onnx"), "model-mlp": str(work / "models" / "mlp.onnx"),
    })
    text = (bundle / "pyproject.toml").read_text(encoding="utf-8")
    (bundle / "pyproject.toml").write_text(
        text.replace("federated.server.app:app", "bare_eval_app:server").replace("federated.client.app:app", "bare_eval_app:client"),
        encoding="utf-8",
    )
    shutil.copy(HERE / "bare_eval_app.py", bundle / "bare_eval_app.py")
    submit_run(bundle, work / "flwr")
    deadline = time.monotonic() + 600
    while not out.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("bare run did not finish")
        time.sleep(0.2)
    return json.loads(out.read_text())["round_s"]


def _r(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per app, alternated")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per run")
    parser.add_argument("--cpu-load", type=int, default=0, help="busy processes running during both apps' rounds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/round_latency.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="accord-latency-"))
    prepare(work)
    port = free_port()
    processes = _start_federation(work, port)
    load = _start_load(args.cpu_load)
    phases: list[dict[str, float]] = []
    accord: list[float] = []
    bare: list[float] = []
    bare_fast: list[float] = []
    try:
        for index in range(args.runs):
            accord += _accord_run(work, port, args.rounds, index)
            phases += _phases(work, f"latency-{index}", args.rounds)
            bare += _bare_run(work, args.rounds, index, poll_s=0.0)
            bare_fast += _bare_run(work, args.rounds, index, poll_s=REPLY_POLL_S)
            print(f"run {index + 1}/{args.runs}: accord {accord[-args.rounds:]}, bare {_r(bare[-args.rounds:])}, "
                  f"bare polling like Accord {_r(bare_fast[-args.rounds:])}")
    finally:
        for busy in load:
            busy.terminate()
        for process in reversed(processes):
            stop_process(process)
    result = {
        "setup": "3 SuperNodes + 1 SuperLink on 127.0.0.1, one machine; 2 ONNX models; demo hospitals' data",
        "runs_per_app": args.runs,
        "rounds_per_run": args.rounds,
        "accord_round_s": accord,
        "bare_round_s": bare,
        "bare_same_polling_round_s": bare_fast,
        "accord_median_s": statistics.median(accord),
        "bare_median_s": statistics.median(bare),
        "bare_same_polling_median_s": statistics.median(bare_fast),
        "ratio_accord_over_bare": statistics.median(accord) / statistics.median(bare),
        "ratio_accord_over_bare_same_polling": statistics.median(accord) / statistics.median(bare_fast),
        "cpu_load_processes": args.cpu_load,
        "target_ratio": 1.05 if args.cpu_load == 0 else 1.3,
        "accord_phases": phases,
        "accord_phases_median": _median_phases(phases),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("round_s")}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
