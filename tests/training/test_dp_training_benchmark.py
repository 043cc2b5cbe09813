"""The DP-training benchmark runs end to end and writes the JSON its docstring promises."""

from __future__ import annotations

import json

from benchmarks import dp_training


def test_one_round_writes_ratios_and_the_auto_mode_for_the_chosen_models(tmp_path):
    output = tmp_path / "dp_training.json"
    dp_training.main(["--rounds", "1", "--models", "mlp", "--output", str(output)])
    report = json.loads(output.read_text())
    assert report["batch_size"] == 256 and report["torch_threads"] == 1
    assert set(report["models"]) == {"mlp"}
    for row in report["models"].values():
        assert row["skipped"] == {}
        assert set(row["ratio_to_non_private"]) == {"hooks", "ew", "functorch", "ghost"}
        assert row["auto_ratio"] == row["ratio_to_non_private"][row["auto_mode"]] > 0
        assert row["steps_per_epoch"] == 8
