"""Every Accord command line follows one convention (`accord.cli`): -h, --version, completion, entry points,
`--json` errors, invalid values as one line with the documented exit code."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.cli import App, accord_version
from accord.errors import ExitCode
from tests.documentation import section

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

# module run with `python -m`, its app, and the console script pyproject.toml declares for it
CLIS = [
    ("federated.server", "federated.server.__main__:cli", "accord-server"),
    ("federated.client", "federated.client.__main__:cli", "accord-node"),
    ("federated.audit", "federated.audit.__main__:cli", "accord-audit"),
    ("privacy.ledger", "privacy.ledger.__main__:app", "accord-ledger"),
    ("crypto.keys", "crypto.keys:app", "accord-keys"),
    ("federated.dashboard", "federated.dashboard.__main__:cli", "accord-dashboard"),
]


def _load(target: str) -> App:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("module", "target", "script"), CLIS)
def test_every_cli_is_an_accord_app_with_a_console_script(module, target, script):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts[script] == target
    assert isinstance(_load(target), App)


@pytest.mark.parametrize(("module", "target", "script"), CLIS)
def test_every_cli_takes_dash_h_and_offers_completion(module, target, script):
    done = runner.invoke(_load(target), ["-h"])
    assert done.exit_code == 0, done.output
    assert "Usage:" in done.stdout and "--install-completion" in done.stdout and "--version" in done.stdout


@pytest.mark.parametrize(("module", "target", "script"), CLIS)
def test_every_python_dash_m_form_prints_the_version(module, target, script):
    done = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"python -m {module} (accord) {accord_version()}"


def test_check_is_a_subcommand_listed_in_the_node_help():
    from federated.client.__main__ import cli

    shown = runner.invoke(cli, ["--help"], env={"COLUMNS": "200"}).stdout
    assert "check" in shown and "--data" in shown and "--insecure" in shown
    assert runner.invoke(cli, ["check", "-h"]).exit_code == 0


def test_the_node_without_its_data_is_a_usage_error_naming_the_option():
    from federated.client.__main__ import cli

    done = runner.invoke(cli, ["--manifest", "m.toml", "--coordinator", "127.0.0.1:9093"])
    assert done.exit_code == ExitCode.USAGE
    [line] = done.stderr.splitlines()
    assert line.startswith("error: Missing option '--data'.")


@pytest.mark.parametrize(("target", "args"), [
    ("federated.server.__main__:cli", ["--study", "s.toml", "--port", "99999"]),
    ("federated.client.__main__:cli", ["--data", "d.csv", "--manifest", "m.toml", "--coordinator", "h:1", "--port", "99999"]),
])
def test_a_port_out_of_range_is_one_line_of_invalid_input(target, args):
    done = runner.invoke(_load(target), args)
    assert done.exit_code == ExitCode.INVALID_INPUT
    [line] = done.stderr.splitlines()
    assert "'--port': 99999 is not in the range 1<=x<=65535" in line
    assert done.exception is None or isinstance(done.exception, SystemExit)  # no traceback


@pytest.mark.parametrize(("target", "args"), [
    ("federated.server.__main__:cli", ["--study", "missing-study.toml", "--insecure", "--json"]),
    ("federated.audit.__main__:cli", ["verify", "missing.zip", "--json"]),
    ("privacy.ledger.__main__:app", ["show", "missing.sqlite", "--json"]),
    ("crypto.keys:app", ["show", "missing.json", "--json"]),
])
def test_with_json_an_error_is_a_json_object_on_stdout(target, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = runner.invoke(_load(target), args)
    assert done.exit_code == ExitCode.INVALID_INPUT
    error = json.loads(done.stdout)
    assert error["exit_code"] == 3 and "missing" in error["error"]
    assert done.stderr == f"error: {error['error']}\n"


def test_the_docs_have_one_exit_code_table_and_it_lists_every_exit_code():
    exit_codes = section("Exit codes")  # README.md or docs/: exactly one such section
    documented = [int(code) for code in re.findall(r"^\| (\d+) \|", exit_codes, re.MULTILINE)]
    assert documented == sorted(int(code) for code in ExitCode)


def test_starting_the_node_does_not_import_what_check_needs():
    code = "import sys, federated.client.__main__; sys.exit('federated.client.check' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
