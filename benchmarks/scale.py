"""Round time under Flower's simulation engine (Ray) for 10, 100, 500 training partners.

Each size runs the digits training study (CNN, DP-SGD, one local epoch) for one round plus
the final evaluation round, through `examples.digits.run_simulation` — the same ServerApp
and ClientApp as a deployment. Records wall time per run, the training round's duration
and its breakdown (ONNX export, message exchange incl. partners' work, update checks and
aggregation, saving), the evaluation round's duration; writes JSON and a PNG plot.

    python -m benchmarks.scale [--partners 10 100 500] [--out benchmarks/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from examples.digits.run_simulation import run


def measure(partners: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"accord-scale-{partners}-"))
    started = time.monotonic()
    code = run(partners, work, rounds=1, overrides={"local_epochs": "1", "min_cohort": "2", "round_timeout_s": "1800"})
    wall = time.monotonic() - started
    results_path = work / "output" / "latest" / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    entry = {"partners": partners, "exit_code": code, "wall_s": round(wall, 2), "status": results.get("status")}
    if results.get("rounds"):
        training = results["rounds"][0]
        entry.update(
            train_round_s=training.get("duration_s"),
            train_contributors=len(training["contributors"]),
            train_timings_s=training.get("timings_s"),
            accuracy_before=training.get("pooled", {}).get("global", {}).get("accuracy"),
        )
    if results.get("final_evaluation"):
        final = results["final_evaluation"]
        entry.update(eval_round_s=final["duration_s"], accuracy_after=final["pooled"].get("global", {}).get("accuracy"))
    shutil.rmtree(work, ignore_errors=True)
    return entry


def plot(entries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [e for e in entries if e.get("train_round_s") is not None]
    fig, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot([e["partners"] for e in done], [e["train_round_s"] for e in done], marker="o", label="training round")
    axis.plot([e["partners"] for e in done], [e.get("eval_round_s") for e in done], marker="s", label="evaluation round")
    axis.plot([e["partners"] for e in done], [e["wall_s"] for e in done], marker="^", label="whole run (wall)")
    axis.set(xscale="log", yscale="log", xlabel="partners (simulated)", ylabel="seconds", title="Accord under Flower simulation (2 cores)")
    axis.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale.json"))
    args = parser.parse_args()
    entries = []
    for partners in args.partners:
        entries.append(measure(partners))
        print(json.dumps(entries[-1]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": "2 cores, 24 GiB, CPU only", "runs": entries}, indent=2) + "\n", encoding="utf-8")
    plot(entries, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
