"""Run folders (`federated.runtime.runs`): each coordinator run has its own, and `latest` finds the newest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from federated.errors import ConfigError
from federated.runtime.runs import LATEST, mark_latest, new_run_dir, output_dir_of, run_directories, run_directory

NOW = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)


def test_a_run_folder_is_named_by_its_utc_start(tmp_path):
    assert new_run_dir(tmp_path, now=NOW) == tmp_path / "runs" / "20261130-010203Z"


def test_a_second_run_in_the_same_second_gets_a_new_folder_never_the_first(tmp_path):
    first = new_run_dir(tmp_path, now=NOW)
    (first / "results.json").write_text("{}")
    second = new_run_dir(tmp_path, now=NOW)
    assert second != first and second.name == "20261130-010203Z-2"
    assert (first / "results.json").read_text() == "{}"


def test_latest_points_at_the_newest_run_and_moves_with_it(tmp_path):
    first, second = new_run_dir(tmp_path, now=NOW), new_run_dir(tmp_path, now=NOW)
    mark_latest(tmp_path, first)
    mark_latest(tmp_path, second)
    assert (tmp_path / LATEST).is_symlink()
    assert (tmp_path / LATEST).resolve() == second.resolve()


def test_latest_refuses_to_replace_a_file_that_is_not_its_link(tmp_path):
    (tmp_path / LATEST).write_text("mine")
    with pytest.raises(ConfigError, match="is not the `latest` run link"):
        mark_latest(tmp_path, new_run_dir(tmp_path, now=NOW))


def test_an_output_directory_resolves_to_its_latest_run(tmp_path):
    run = new_run_dir(tmp_path, now=NOW)
    (run / "results.json").write_text("{}")
    mark_latest(tmp_path, run)
    assert run_directory(tmp_path) == run.resolve()


def test_without_a_latest_link_the_newest_run_folder_is_taken(tmp_path):
    older, newer = new_run_dir(tmp_path, now=NOW), new_run_dir(tmp_path, now=NOW.replace(hour=2))
    assert run_directories(tmp_path) == [older, newer]
    assert run_directory(tmp_path) == newer


def test_a_run_folder_or_an_older_flat_output_directory_is_itself(tmp_path):
    (tmp_path / "coordinator-trail.jsonl").write_text("")
    assert run_directory(tmp_path) == tmp_path


def test_a_run_folder_belongs_to_the_output_directory_two_levels_up(tmp_path):
    assert output_dir_of(new_run_dir(tmp_path, now=NOW)) == tmp_path
    assert output_dir_of(tmp_path) == tmp_path
