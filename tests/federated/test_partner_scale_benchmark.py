"""The partner-scale benchmark runs end to end on a tiny size (a few seconds).

The full run is `python -m benchmarks.partner_scale [--max 10000000]`.
"""

from __future__ import annotations

import json

from benchmarks import partner_scale


def test_benchmark_measures_every_phase_and_writes_json_and_plot(tmp_path):
    out = tmp_path / "partner_scale.json"
    report = partner_scale.main(["--sizes", "2000", "--features", "5", "--workdir", str(tmp_path), "--out", str(out)])
    phases = {row["phase"]: row for row in report["results"]}
    assert set(phases) == set(partner_scale.PHASES)
    assert phases["pass"]["records"] == phases["load"]["records"] == 2000
    assert set(phases["pass"]["steps_s"]) == {"count", "read", "predict", "statistics"}
    assert all(row["peak_rss_mb"] > 0 and row["file_mb"] > 0 for row in report["results"])
    assert json.loads(out.read_text())["results"] == report["results"]
    assert out.with_suffix(".png").stat().st_size > 0
    assert not list(tmp_path.glob("accord-partner-*"))  # the generated data is deleted
