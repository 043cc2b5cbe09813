"""benchmarks.he_round runs and reports both modes (one quick evaluation-only repeat)."""

from __future__ import annotations

import json

from benchmarks.he_round import main


def test_the_round_benchmark_reports_time_and_bytes_for_both_modes(tmp_path):
    out = tmp_path / "he_round.json"
    main(repeats=1, out=out, skip_training=True, flower=0)
    report = json.loads(out.read_text())["evaluation"]
    assert report["plaintext"]["accuracy"] == report["encrypted"]["accuracy"]
    assert set(report["encrypted"]["bytes_out"]) == {"query.evaluate", "query.decrypt"}
    assert report["bytes_ratio"] > 1 and report["round_s_ratio"] > 0
