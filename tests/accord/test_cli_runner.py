"""`accord.cli`: one way every Accord command line fails — one line, the documented exit code, JSON on request."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from accord.cli import App, accord_version
from accord.errors import AccordError, ExitCode

runner = CliRunner()
LONG = "/a/very/long/path/" + "x" * 150 + "/study.toml"


class _Invalid(AccordError):
    exit_code = ExitCode.INVALID_INPUT


class _Unverified(AccordError):
    exit_code = ExitCode.VERIFICATION_FAILED


def _app() -> App:
    app = App(help="A toy CLI.")

    @app.command()
    def fail(
        kind: Annotated[str, typer.Argument()],
        port: Annotated[int, typer.Option(min=1, max=65535)] = 9093,
        json_output: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Fail the way KIND says."""
        if kind == "invalid":
            raise _Invalid(f"{LONG}: min_cohort: must be at least 1")
        if kind == "unverified":
            raise _Unverified("trail.jsonl: entry 3 does not chain")
        if kind == "multiline":
            raise _Invalid("first line\nsecond line")
        if kind == "missing-file":
            open("/nonexistent/accord-file")  # noqa: SIM115 - the OSError is the point
        if kind == "bug":
            raise KeyError("oops")
        if kind == "verdict":
            raise typer.Exit(int(ExitCode.REFUSED))

    @app.command()
    def ok() -> None:
        """Succeed."""

    return app


def _run(*args: str):
    return runner.invoke(_app(), list(args))


def test_an_accord_error_exits_with_its_code_and_one_line_on_stderr():
    done = _run("fail", "invalid")
    assert done.exit_code == ExitCode.INVALID_INPUT
    assert done.stderr == f"error: {LONG}: min_cohort: must be at least 1\n"  # one line, never folded
    assert done.stdout == ""


def test_each_error_keeps_the_exit_code_it_carries():
    assert _run("fail", "unverified").exit_code == ExitCode.VERIFICATION_FAILED


def test_a_message_over_several_lines_is_printed_on_one():
    assert _run("fail", "multiline").stderr == "error: first line second line\n"


def test_with_json_the_error_is_also_a_json_object_on_stdout():
    done = _run("fail", "invalid", "--json")
    assert done.exit_code == ExitCode.INVALID_INPUT
    assert json.loads(done.stdout) == {
        "error": f"{LONG}: min_cohort: must be at least 1", "exit_code": 3, "type": "_Invalid",
    }


def test_a_file_that_cannot_be_read_is_invalid_input():
    done = _run("fail", "missing-file")
    assert done.exit_code == ExitCode.INVALID_INPUT
    assert "/nonexistent/accord-file" in done.stderr


def test_an_unexpected_exception_is_one_internal_error_line_and_exit_1(monkeypatch):
    monkeypatch.delenv("ACCORD_DEBUG", raising=False)
    done = _run("fail", "bug", "--json")
    assert done.exit_code == ExitCode.FAILURE
    [line] = done.stderr.splitlines()
    assert line.startswith("internal error: KeyError: 'oops'") and "ACCORD_DEBUG=1" in line
    assert json.loads(done.stdout)["exit_code"] == 1


def test_accord_debug_adds_the_traceback_of_an_unexpected_exception(monkeypatch):
    monkeypatch.setenv("ACCORD_DEBUG", "1")
    done = _run("fail", "bug")
    assert done.exit_code == ExitCode.FAILURE
    assert "Traceback (most recent call last)" in done.stderr


def test_a_verdict_exit_passes_through_unchanged():
    done = _run("fail", "verdict")
    assert done.exit_code == ExitCode.REFUSED and done.stderr == ""


def test_an_out_of_range_value_is_invalid_input_on_one_line():
    done = _run("fail", "x", "--port", "99999")
    assert done.exit_code == ExitCode.INVALID_INPUT
    [line] = done.stderr.splitlines()
    assert "'--port': 99999 is not in the range 1<=x<=65535" in line


@pytest.mark.parametrize("args", [("fail",), ("fail", "x", "--no-such-option"), ("no-such-command",)])
def test_a_missing_or_unknown_option_argument_or_command_is_a_usage_error(args):
    done = _run(*args)
    assert done.exit_code == ExitCode.USAGE
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: ")


def test_a_usage_error_with_json_is_a_json_object_too():
    done = _run("fail", "--json")
    assert done.exit_code == ExitCode.USAGE
    assert json.loads(done.stdout)["exit_code"] == 2


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_dash_h_and_help_both_print_the_help(flag):
    for args in ((flag,), ("fail", flag)):
        done = _run(*args)
        assert done.exit_code == 0 and "Usage:" in done.stdout


def test_version_prints_the_installed_version():
    done = _run("--version")
    assert done.exit_code == 0
    assert done.stdout.strip().endswith(f"(accord) {accord_version()}")


def test_shell_completion_is_on():
    assert "--install-completion" in _run("--help").stdout


def test_a_successful_command_exits_0():
    assert _run("ok").exit_code == 0
