"""The coverage benchmark runs end to end at a tiny size and writes its JSON and plot."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import coverage


def test_coverage_benchmark_writes_json_and_plot(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(coverage, "POPULATION", 20_000)
    result = coverage.main(["--repeats", "3", "--partners", "3", "--epsilons", "none", "3", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "coverage.json").read_text())
    assert written["cells"] == json.loads(json.dumps(result["cells"]))
    assert len(written["cells"]) == 4 and (tmp_path / "coverage.png").stat().st_size > 0
    for cell in written["cells"]:
        assert set(cell["coverage"]) == {"accuracy", "sensitivity", "specificity", "auroc", "brier", "log_loss"}
        assert all(0.0 <= value <= 1.0 for value in cell["coverage"].values())
