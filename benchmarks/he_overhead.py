"""What homomorphically encrypted aggregation costs against the plaintext path, on this machine.

    python -m benchmarks.he_overhead [--quick] [--out benchmarks/results/he_overhead.json] [--repeats 3]

Sweeps update sizes (10k/100k/1M parameters) x partners (3/10) x encodings, alternating an HE round and
a plaintext round for each setting in one process (single thread), and writes JSON plus a PNG plot
next to it. A round is: every partner prepares and serializes its upload (plaintext: float32 bytes of
n_i * w_i; HE: `encrypt_bundle(...).to_bytes()`), the coordinator parses and sums them (`add_bundles`
for HE), and, for HE, one partner decrypts. Each partner also sends integer evaluation statistics in
the same bundle; they must come back exact. Times are medians over repeats (`round_ratio_best`
uses the best of each path instead, for a machine shared with other work).

Encodings:
- `count-weighted` (default protocol): weights x example count, bound = partners x max examples x clip,
  16 fraction bits, seeded ciphertexts.
- `count-weighted-unseeded`: the same with full ciphertexts (twice the bytes; no seed to expand on load).
- `fraction-weighted`: weights x n_i / N where the total N is public, bound = clip, 19 fraction bits:
  two values per slot.
Run it from the repository root as a module (opacus installs an unrelated top-level `benchmarks`).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tenseal
import typer

from crypto.he_aggregation import (
    EncryptedBundle,
    add_bundles,
    decrypt_bundle,
    encrypt_bundle,
    cohort_blinding,
)
from crypto.he_keys import SecretContext, generate_context
from crypto.he_layout import BundleLayout, plan_layout

CLIP = 1.0
MAX_EXAMPLES = 1000
TARGETS = {"bytes_per_param": 16.0, "relative_error": 1e-4, "params_per_s": 1e6, "round_ratio": 3.0}


@dataclass(frozen=True)
class Encoding:
    name: str
    seeded: bool
    fraction: bool  # weights x n_i / N (N public) instead of x n_i
    scale_bits: int


ENCODINGS = (
    Encoding("count-weighted", seeded=True, fraction=False, scale_bits=16),
    Encoding("count-weighted-unseeded", seeded=False, fraction=False, scale_bits=16),
    Encoding("fraction-weighted", seeded=True, fraction=True, scale_bits=19),
)


def _partners(size: int, count: int, seed: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (
            int(rng.integers(100, MAX_EXAMPLES + 1)),
            np.clip(rng.normal(0.0, 0.05, size), -CLIP, CLIP).astype(np.float32),
            rng.integers(0, 100, size=(2, 64)),
        )
        for _ in range(count)
    ]


def _uploads(partners: list[tuple[int, np.ndarray, np.ndarray]], enc: Encoding) -> list[dict[str, np.ndarray]]:
    total = sum(n for n, _, _ in partners)
    factor = [n / total if enc.fraction else n for n, _, _ in partners]
    return [
        {"update": f * w.astype(np.float64), "histogram": h, "examples": np.array(n)}
        for f, (n, w, h) in zip(factor, partners, strict=True)
    ]


def _layout(upload: dict[str, np.ndarray], count: int, enc: Encoding, secret: SecretContext) -> BundleLayout:
    weight_bound = CLIP if enc.fraction else count * MAX_EXAMPLES * CLIP
    bounds = {"update": weight_bound, "histogram": count * 100, "examples": count * MAX_EXAMPLES}
    return plan_layout(upload, context=secret.public, bounds=bounds, scale_bits=enc.scale_bits)


def he_round(uploads: list[dict[str, np.ndarray]], enc: Encoding, secret: SecretContext, layout: BundleLayout) -> dict:
    cpu0 = time.process_time()
    started = time.perf_counter()
    wire, per_partner = [], []
    cohort = [f"p{index}" for index in range(len(uploads))]
    for index, upload in enumerate(uploads):  # each partner adds its share of zero over the cohort, as in a study
        t0 = time.perf_counter()
        blinding = cohort_blinding(secret, study="bench", round=1, partner=cohort[index], cohort=cohort, layout=layout)
        wire.append(encrypt_bundle(upload, context=secret, layout=layout, blinding=blinding, seeded=enc.seeded).to_bytes())
        per_partner.append(time.perf_counter() - t0)
    t1, cpu1 = time.perf_counter(), time.process_time()
    received = [EncryptedBundle.from_bytes(data, source=f"partner {i}") for i, data in enumerate(wire)]
    aggregate = add_bundles(received, public_context=secret.public).to_bytes()
    t2, cpu2 = time.perf_counter(), time.process_time()
    result = decrypt_bundle(EncryptedBundle.from_bytes(aggregate), secret_context=secret)  # the pads cancel
    mean = result["update"] if enc.fraction else result["update"] / result["examples"]
    t3, cpu3 = time.perf_counter(), time.process_time()
    return {
        "cpu_encrypt_s": cpu1 - cpu0, "cpu_aggregate_s": cpu2 - cpu1, "cpu_decrypt_s": cpu3 - cpu2,
        "cpu_round_s": cpu3 - cpu0,
        "encrypt_s": t1 - started, "encrypt_max_partner_s": max(per_partner), "aggregate_s": t2 - t1,
        "decrypt_s": t3 - t2, "round_s": t3 - started, "critical_path_s": max(per_partner) + (t3 - t1),
        "upload_bytes": len(wire[0]), "aggregate_bytes": len(aggregate), "mean": mean, "result": result,
    }


def plain_round(uploads: list[dict[str, np.ndarray]], enc: Encoding) -> dict:
    cpu0 = time.process_time()
    started = time.perf_counter()
    wire, per_partner = [], []
    for upload in uploads:
        t0 = time.perf_counter()
        wire.append((upload["update"].astype(np.float32).tobytes(), int(upload["examples"])))
        per_partner.append(time.perf_counter() - t0)
    t1 = time.perf_counter()
    total = np.zeros(uploads[0]["update"].size, dtype=np.float64)
    for data, _ in wire:
        total += np.frombuffer(data, dtype=np.float32)
    mean = total if enc.fraction else total / sum(n for _, n in wire)
    t2 = time.perf_counter()
    return {
        "cpu_round_s": time.process_time() - cpu0, "round_s": t2 - started, "aggregate_s": t2 - t1,
        "critical_path_s": max(per_partner) + (t2 - t1), "upload_bytes": len(wire[0][0]), "mean": mean,
    }


def measure(size: int, count: int, enc: Encoding, secret: SecretContext, repeats: int) -> dict[str, Any]:
    partners = _partners(size, count, seed=size + count)
    uploads = _uploads(partners, enc)
    layout = _layout(uploads[0], count, enc, secret)
    he_runs, plain_runs = [], []
    for _ in range(repeats):  # alternate, so both paths see the same machine load
        he_runs.append(he_round(uploads, enc, secret, layout))
        plain_runs.append(plain_round(uploads, enc))
    exact = sum(u["update"] for u in uploads)
    exact = exact if enc.fraction else exact / sum(n for n, _, _ in partners)
    peak = float(np.max(np.abs(exact)))
    he, plain = he_runs[-1], plain_runs[-1]
    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    row = {
        "params": size, "partners": count, "encoding": enc.name, "seeded": enc.seeded,
        "scale_bits": enc.scale_bits, "lanes_per_slot": layout.arrays[0].lanes,
        "ciphertexts": layout.ciphertext_count,
        "bytes_per_param_upload": he["upload_bytes"] / size,
        "bytes_per_param_aggregate": he["aggregate_bytes"] / size,
        "bytes_per_param_plaintext": plain["upload_bytes"] / size,
        "relative_error_he": float(np.max(np.abs(he["mean"] - exact))) / peak,
        "relative_error_plaintext_float32": float(np.max(np.abs(plain["mean"] - exact))) / peak,
        "counts_exact": bool(
            np.array_equal(he["result"]["histogram"], sum(h for _, _, h in partners))
            and int(he["result"]["examples"]) == sum(n for n, _, _ in partners)
        ),
        **{f"he_{k}": med(he_runs, k) for k in ("encrypt_s", "aggregate_s", "decrypt_s", "round_s", "critical_path_s")},
        **{f"he_{k}": med(he_runs, k) for k in ("cpu_encrypt_s", "cpu_aggregate_s", "cpu_decrypt_s", "cpu_round_s")},
        **{f"plain_{k}": med(plain_runs, k) for k in ("aggregate_s", "round_s", "critical_path_s", "cpu_round_s")},
    }
    row["meets_error_target"] = row["relative_error_he"] <= TARGETS["relative_error"]
    row["encrypt_params_per_s"] = size * count / row["he_encrypt_s"]
    row["decrypt_params_per_s"] = size / row["he_decrypt_s"]
    row["encrypt_params_per_cpu_s"] = size * count / row["he_cpu_encrypt_s"]
    row["decrypt_params_per_cpu_s"] = size / row["he_cpu_decrypt_s"]
    row["round_ratio"] = row["he_round_s"] / row["plain_round_s"]
    row["round_ratio_cpu"] = row["he_cpu_round_s"] / row["plain_cpu_round_s"]
    # the machine may be shared: the best of the alternated repeats bounds each path's own cost
    row["round_ratio_best"] = min(r["round_s"] for r in he_runs) / min(r["round_s"] for r in plain_runs)
    row["critical_path_ratio"] = row["he_critical_path_s"] / row["plain_critical_path_s"]
    return row


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, judged on the largest count-weighted setting measured.

    Per-core figures use this process's CPU time (it is single-threaded), which a shared machine's load
    does not inflate; wall-clock figures are reported beside them.
    """
    largest = max((r for r in rows if r["encoding"] == "count-weighted"), key=lambda r: (r["params"], r["partners"]))

    def judge(key: str, target: float, *, at_most: bool, **extra: Any) -> dict[str, Any]:
        value = largest[key]
        return {"value": value, "target": target, "met": value <= target if at_most else value >= target, **extra}

    counts_exact = all(r["counts_exact"] for r in rows)
    return {
        "setting": {k: largest[k] for k in ("params", "partners", "encoding")},
        "bytes_per_param": judge("bytes_per_param_upload", TARGETS["bytes_per_param"], at_most=True),
        "relative_error": judge("relative_error_he", TARGETS["relative_error"], at_most=True),
        "counts_exact": {"value": counts_exact, "met": counts_exact},
        "encrypt_params_per_s": judge("encrypt_params_per_cpu_s", TARGETS["params_per_s"], at_most=False,
                                      wall_clock=largest["encrypt_params_per_s"]),
        "decrypt_params_per_s": judge("decrypt_params_per_cpu_s", TARGETS["params_per_s"], at_most=False,
                                      wall_clock=largest["decrypt_params_per_s"]),
        "round_ratio": judge("round_ratio_cpu", TARGETS["round_ratio"], at_most=True,
                             wall_clock=largest["round_ratio"], wall_clock_best=largest["round_ratio_best"]),
        "critical_path_ratio": judge("critical_path_ratio", TARGETS["round_ratio"], at_most=True,
                                     note="wall clock; partners encrypt in parallel, coordinator and decryptor serial"),
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    top = max(r["partners"] for r in rows)
    for enc in ENCODINGS:
        sel = sorted((r for r in rows if r["encoding"] == enc.name and r["partners"] == top), key=lambda r: r["params"])
        if not sel:
            continue
        sizes = [r["params"] for r in sel]
        axes[0].plot(sizes, [r["he_cpu_round_s"] for r in sel], "o-", label=f"HE {enc.name}")
        axes[1].plot(sizes, [r["round_ratio_cpu"] for r in sel], "o-", label=enc.name)
        axes[2].plot(sizes, [r["bytes_per_param_upload"] for r in sel], "o-", label=f"{enc.name} upload")
    plain = sorted(
        (r for r in rows if r["encoding"] == ENCODINGS[0].name and r["partners"] == top), key=lambda r: r["params"]
    )
    axes[0].plot([r["params"] for r in plain], [r["plain_cpu_round_s"] for r in plain], "k--", label="plaintext")
    axes[1].axhline(TARGETS["round_ratio"], color="k", ls="--", label="target 3x")
    axes[2].axhline(TARGETS["bytes_per_param"], color="k", ls="--", label="target 16 B")
    axes[2].axhline(4, color="gray", ls=":", label="plaintext float32")
    titles = (f"round CPU time, {top} partners (s)", "HE / plaintext round CPU time", "bytes on the wire per parameter")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(
    quick: Annotated[bool, typer.Option("--quick", help="10k and 100k parameters, one repeat (< 1 min).")] = False,
    out: Annotated[Path, typer.Option("--out", help="JSON output; the PNG goes beside it.")] = Path(
        "benchmarks/results/he_overhead.json"
    ),
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Alternated HE/plaintext rounds per setting.")] = 3,
) -> None:
    """Measure HE aggregation against the plaintext round and write JSON + PNG."""
    sizes, repeats = ((10_000, 100_000), 1) if quick else ((10_000, 100_000, 1_000_000), repeats)
    t0 = time.perf_counter()
    secret = generate_context("he-overhead-benchmark")
    keygen_s = time.perf_counter() - t0
    rows = []
    for size in sizes:
        for count in (3, 10):
            for enc in ENCODINGS:
                rows.append(row := measure(size, count, enc, secret, repeats))
                typer.echo(
                    f"{size:>9} params x {count:>2} partners {enc.name:<24} "
                    f"{row['bytes_per_param_upload']:5.2f} B/param  "
                    f"enc {row['encrypt_params_per_cpu_s'] / 1e6:5.2f} M/s  "
                    f"dec {row['decrypt_params_per_cpu_s'] / 1e6:5.2f} M/s  round CPU {row['he_cpu_round_s']:.3f}s vs "
                    f"{row['plain_cpu_round_s']:.4f}s ({row['round_ratio_cpu']:.0f}x, wall {row['round_ratio']:.0f}x)  "
                    f"err {row['relative_error_he']:.1e}"
                )
    report = {
        "benchmark": "he_overhead",
        "command": "python -m benchmarks.he_overhead" + (" --quick" if quick else f" --repeats {repeats}"),
        "machine": {
            "platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version(),
            "tenseal": tenseal.__version__, "numpy": np.__version__, "threads": 1,
        },
        "parameters": secret.public.parameters.describe(),
        "security_bits": secret.public.parameters.security_bits,
        "keygen_s": keygen_s,
        "clip": CLIP, "max_examples_per_partner": MAX_EXAMPLES,
        "results": rows,
        "targets": verdict(rows),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, out.with_suffix(".png"))
    typer.echo(f"wrote {out} and {out.with_suffix('.png')}")
    typer.echo(json.dumps(report["targets"], indent=2))


if __name__ == "__main__":
    typer.run(main)
