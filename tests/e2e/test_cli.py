"""The two command lines: documented exit codes and messages that name what is wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import write_study


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("module", ["federated.server", "federated.client"])
def test_help_lists_every_option(module):
    done = _run(module, "--help")
    assert done.returncode == 0
    for option in ("--insecure", "--help"):
        assert option in done.stdout


def test_server_rejects_an_invalid_study_naming_the_field(tmp_path, hospitals):
    study = write_study(tmp_path, hospitals, min_cohort=0)
    done = _run("federated.server", "--study", str(study), "--insecure")
    assert done.returncode == 3
    assert "study.toml: min_cohort: Input should be greater than or equal to 1" in done.stderr


def test_server_refuses_plain_http_off_loopback(tmp_path, hospitals):
    done = _run("federated.server", "--study", str(write_study(tmp_path, hospitals)), "--insecure", "--host", "10.1.2.3")
    assert done.returncode == 3
    assert "--insecure is only allowed for 127.0.0.1/localhost" in done.stderr


def test_client_refuses_to_start_on_data_that_does_not_match_its_manifest(tmp_path, partners):
    data = tmp_path / "tampered.csv"
    data.write_bytes(partners[0].data.read_bytes() + b"\n")
    done = _run("federated.client", "--data", str(data), "--manifest", str(partners[0].manifest),
                "--coordinator", "127.0.0.1:9", "--insecure")
    assert done.returncode == 3
    assert "does not match the manifest's sha256" in done.stderr


def test_study_without_enough_partners_exits_with_cohort_code(tmp_path, hospitals, partners, federation):
    study = write_study(tmp_path, hospitals, min_cohort=2, cohort_timeout_s=6)
    federation.start_coordinator(study, log=tmp_path / "coordinator.log")
    federation.start_partner(partners[0])
    assert federation.coordinator.wait(timeout=120) == 4
    log = (tmp_path / "coordinator.log").read_text()
    assert "only 1 of the minimum cohort of 2 partners connected" in log
