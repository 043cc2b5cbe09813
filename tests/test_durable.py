"""accord.durable: a write that fails half-way leaves the old file and no temporary behind."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from accord.durable import replacing, write_durably


def test_write_durably_replaces_the_file_and_creates_missing_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "report.json"
    write_durably(target, b"first")
    write_durably(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_a_crash_inside_the_block_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "pack.zip"
    target.write_bytes(b"old pack")
    with pytest.raises(RuntimeError, match="disk gone"):
        with replacing(target) as handle, zipfile.ZipFile(handle, "w") as bundle:
            bundle.writestr("trail.jsonl", "{}\n")
            raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old pack"
    assert [p.name for p in tmp_path.iterdir()] == ["pack.zip"]  # the temporary file is gone


def test_the_mode_is_set_before_the_file_appears(tmp_path: Path) -> None:
    target = tmp_path / "secret.key"
    write_durably(target, b"key material", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with replacing(tmp_path / "zipped.zip") as handle, zipfile.ZipFile(handle, "w") as bundle:
        bundle.writestr("x", "y")
    assert zipfile.ZipFile(tmp_path / "zipped.zip").read("x") == b"y"
