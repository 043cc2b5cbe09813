"""How a partner's evaluation scales with its data: time and peak memory from 10k to 10M records.

    python -m benchmarks.partner_scale [--max 1000000] [--features 30] [--out benchmarks/results/partner_scale.json]

For each size (10k, 100k, 1M, 10M up to `--max`) it writes a CSV of that many records (float64
features in full precision, as an export would: 1M x 30 is about 590 MB), a manifest with its
SHA-256, and a logistic-regression ONNX model (skl2onnx, no ZipMap). Each phase then runs in a
fresh child process, so its peak resident memory (`ru_maxrss`) is its own:

- `hash`: SHA-256 of the file alone (what the streaming pass hashes on the way);
- `pass`: what a node's evaluation task does with its file: the record count's pre-pass
  (`open_partner_file`, step `count`), then one streaming pass (`PartnerFile.batches`: read, check
  and hash, step `read`; `OnnxModel.predict`; `compute_statistics`, summed per batch), timed per step;
- `load`: the whole file into arrays (`load_partner_data`, what DP-SGD training uses).

Time is wall-clock seconds and the child's CPU seconds (steadier on a machine shared with other
work). Memory is the child's peak RSS (VmHWM) and that peak above the child's RSS once its imports
are done (the interpreter, numpy, pyarrow and onnxruntime take ~70 MB whatever the size).
Writes JSON and a PNG plot; the generated data is deleted after each size.
Run it from the repository root as a module (opacus installs an unrelated top-level `benchmarks`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
PHASES = ("hash", "pass", "load")
GENERATE_CHUNK = 100_000
SEED = 13
TARGETS = {"seconds_1m": 5.0, "peak_over_file_1m": 1.5}


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report its parent's peak.
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _truth(x: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(x.shape[0]) < 1 / (1 + np.exp(-x @ weights))).astype(np.int64)


def generate(work: Path, records: int, features: int) -> tuple[Path, Path, Path]:
    """A CSV of `records` rows, its manifest and a model trained on a 10k sample of the same law."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from accord.hashing import sha256_file

    rng = np.random.default_rng(SEED)
    weights = rng.normal(0, 0.3, features)
    names = [f"x{j}" for j in range(features)]
    data = work / "partner.csv"
    schema = pa.schema([*(pa.field(n, pa.float64()) for n in names), pa.field("y", pa.int64()), pa.field("g", pa.string())])
    with pcsv.CSVWriter(data, schema) as writer:
        for start in range(0, records, GENERATE_CHUNK):
            n = min(GENERATE_CHUNK, records - start)
            x = rng.normal(size=(n, features))
            columns = [*x.T, _truth(x, weights, rng), rng.choice(["a", "b", "c"], n)]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    manifest = work / "partner.toml"
    manifest.write_text(
        f'dataset_id = "bench"\nfeatures = {json.dumps(names)}\nlabel = "y"\nsubgroup = "g"\nsha256 = "{sha256_file(data)}"\n',
        encoding="utf-8",
    )
    x = rng.normal(size=(10_000, features))
    model = LogisticRegression(max_iter=500).fit(x, _truth(x, weights, rng))
    onnx_path = work / "model.onnx"
    onnx_path.write_bytes(
        to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False}, target_opset=17).SerializeToString()
    )
    return data, manifest, onnx_path


def run_phase(phase: str, data: Path, manifest_path: Path, model_path: Path) -> dict:
    """One phase, in this process (the parent runs each in a fresh child)."""
    from accord.hashing import sha256_file
    from federated.client.data import (
        load_manifest,
        load_partner_data,
        open_partner_file,
    )
    from federated.evaluation.onnx_model import OnnxModel
    from federated.evaluation.statistics import StatisticsLayout, compute_statistics

    started = time.perf_counter()
    # What a node imports once per process, timed apart from the data.
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401

    imports_s = time.perf_counter() - started
    manifest = load_manifest(manifest_path)
    layout = StatisticsLayout(num_classes=2, score_bins=100, subgroup_levels=("a", "b", "c"))
    model = OnnxModel("bench", model_path.read_bytes(), "probabilities", len(manifest.features))
    baseline = _current_rss_mb()
    steps = {"count": 0.0, "read": 0.0, "predict": 0.0, "statistics": 0.0}
    started, cpu = time.perf_counter(), _cpu_s()
    records = 0
    if phase == "hash":
        sha256_file(data)
    elif phase == "load":
        records = load_partner_data(data, manifest).size
    else:
        t0 = time.perf_counter()
        opened = open_partner_file(data, manifest)
        steps["count"] = time.perf_counter() - t0
        batches, total = opened.batches(), None
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            t1 = time.perf_counter()
            steps["read"] += t1 - t0
            if batch is None:
                break
            probabilities = model.predict(batch.features)
            t2 = time.perf_counter()
            part = compute_statistics(probabilities, batch.labels, batch.subgroups, layout)
            total = part if total is None else total + part
            steps["statistics"] += time.perf_counter() - t2
            steps["predict"] += t2 - t1
            records += batch.size
        assert total is not None and total.count == records == opened.size
    seconds = time.perf_counter() - started
    result = {"phase": phase, "seconds": round(seconds, 3), "imports_s": round(imports_s, 3), "cpu_s": round(_cpu_s() - cpu, 3), "records": records,
              "peak_rss_mb": round(_peak_rss_mb(), 1), "baseline_rss_mb": round(baseline, 1)}
    if phase == "pass":
        result["steps_s"] = {k: round(v, 3) for k, v in steps.items()}
    return result


def measure(records: int, features: int, work_root: Path | None) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix=f"accord-partner-{records}-", dir=work_root))
    try:
        t0 = time.perf_counter()
        data, manifest, model = generate(work, records, features)
        generate_s = time.perf_counter() - t0
        file_mb = data.stat().st_size / 2**20
        rows = []
        for phase in PHASES:
            command = [sys.executable, "-m", "benchmarks.partner_scale", "--child", phase, str(data), str(manifest), str(model)]
            done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
            if done.returncode != 0:
                raise RuntimeError(f"{phase} at {records} records failed:\n{done.stderr[-2000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row.update(size=records, file_mb=round(file_mb, 1), generate_s=round(generate_s, 1),
                       above_baseline_mb=round(row["peak_rss_mb"] - row["baseline_rss_mb"], 1),
                       peak_over_file=round(row["peak_rss_mb"] / file_mb, 3))
            rows.append(row)
            print(json.dumps(row), flush=True)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verdict(rows: list[dict]) -> dict:
    one_million = next((r for r in rows if r["size"] == 1_000_000 and r["phase"] == "pass"), None)
    if one_million is None:
        return {"note": "1M records not measured (--max below 1000000)"}
    return {
        "pass_seconds_1m": one_million["seconds"], "pass_cpu_seconds_1m": one_million["cpu_s"],
        "target_seconds": TARGETS["seconds_1m"],
        "met_seconds": one_million["seconds"] <= TARGETS["seconds_1m"],
        # On a machine shared with other work, wall time mostly measures the queue for the cores; the
        # pass's CPU time (all its threads) bounds its wall time on an idle machine, file in page cache.
        "met_seconds_cpu": one_million["cpu_s"] <= TARGETS["seconds_1m"],
        "pass_peak_over_file_1m": one_million["peak_over_file"], "target_peak_over_file": TARGETS["peak_over_file_1m"],
        "met_memory": one_million["peak_over_file"] <= TARGETS["peak_over_file_1m"],
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for phase, marker in zip(PHASES, "os^", strict=True):
        sel = sorted((r for r in rows if r["phase"] == phase), key=lambda r: r["size"])
        sizes = [r["size"] for r in sel]
        axes[0].plot(sizes, [r["seconds"] for r in sel], marker=marker, label=phase)
        axes[1].plot(sizes, [r["peak_rss_mb"] for r in sel], marker=marker, label=f"{phase} peak RSS")
    passes = sorted((r for r in rows if r["phase"] == "pass"), key=lambda r: r["size"])
    for step, style in (("count", (0, (1, 4))), ("read", ":"), ("predict", "--"), ("statistics", "-.")):
        axes[0].plot([r["size"] for r in passes], [r["steps_s"][step] for r in passes], linestyle=style, label=f"pass: {step}")
    axes[0].plot([r["size"] for r in passes], [r["cpu_s"] for r in passes], "k-", lw=2, label="pass: CPU seconds")
    axes[1].plot([r["size"] for r in passes], [r["file_mb"] for r in passes], "k--", label="file size")
    axes[0].set(xscale="log", yscale="log", xlabel="records (30 features)", ylabel="seconds",
                title="wall time per phase (shared machine) and CPU time")
    axes[1].set(xscale="log", yscale="log", xlabel="records (30 features)", ylabel="MB", title="peak memory per phase")
    for axis in axes:
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=1_000_000, help="largest size to run (sizes: 10k, 100k, 1M, 10M)")
    parser.add_argument("--sizes", type=int, nargs="+", help="explicit sizes instead of the ladder up to --max")
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--workdir", type=Path, help="where the generated data goes (default: the system temp dir)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/partner_scale.json"))
    parser.add_argument("--child", nargs=4, metavar=("PHASE", "DATA", "MANIFEST", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        phase, *paths = args.child
        print(json.dumps(run_phase(phase, *map(Path, paths))))
        return {}
    sizes = args.sizes or [size for size in SIZES if size <= args.max]
    load_before = os.getloadavg()  # how busy the machine was: the times are wall-clock
    rows = [row for size in sizes for row in measure(size, args.features, args.workdir)]
    report = {
        "benchmark": "partner_scale",
        "command": "python -m benchmarks.partner_scale " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "note": "shared with other work while measured; times are one run each",
                    "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "features": args.features,
        "results": rows,
        "targets": verdict(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return report


if __name__ == "__main__":
    main()
