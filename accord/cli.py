"""Every Accord command line runs through here: one help style, one way to fail.

`App` is a `typer.Typer` with Accord's conventions: `-h`/`--help`, `--version`, shell completion, Rich
help (Markdown). Its commands map failures to the exit codes of `accord.errors.ExitCode` (one table: docs/exit-codes.md):

- an `AccordError` → `error: MESSAGE` on one line of stderr and the error's `exit_code`;
- a command-line value click rejects (`--port 99999`, a missing file) → `INVALID_INPUT`; a missing or
  unknown option → `USAGE`;
- an `OSError` (a file that cannot be read or written) → `INVALID_INPUT`;
- anything else is a bug → `internal error: …` on one line and `FAILURE` (`ACCORD_DEBUG=1` adds the
  traceback).

With `--json` on the command line the same error is also printed on stdout as one JSON object,
`{"error": MESSAGE, "exit_code": N, "type": NAME}`, so machines never parse stderr. Messages are
printed as plain text, never through Rich, so a path, hash or fingerprint in them is never folded.

It maps only what carries no exit code (click's errors, `OSError`, bugs): an `AccordError`'s own code is
never overridden, and a command's deliberate `typer.Exit(code)` (a verdict) passes through unchanged.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, TypeVar

import click
import typer
import typer.main
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from accord.errors import AccordError, ExitCode

__all__ = ["AccordCommand", "AccordGroup", "App", "accord_version", "print_json", "print_table"]

HELP_OPTIONS = ["-h", "--help"]
DEBUG_VARIABLE = "ACCORD_DEBUG"
F = TypeVar("F", bound=Callable[..., Any])


def accord_version() -> str:
    """The installed distribution's version (pyproject.toml), or `unknown` outside an install."""
    try:
        return version("accord")
    except PackageNotFoundError:
        return "unknown"


def print_json(value: Any, *, sort_keys: bool = False) -> None:
    """One JSON document on stdout, for machines (`--json`)."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n")
    sys.stdout.flush()


def print_table(table: Table, *, console: Console | None = None) -> None:
    """A Rich table at its natural width: hashes, ids and times in it are never folded or cut short."""
    console = console or Console()
    console.print(table, width=max(console.width, console.measure(table).maximum))


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"{ctx.info_name} (accord) {accord_version()}")
        ctx.exit()


def _version_option() -> click.Option:
    return click.Option(["--version"], is_flag=True, expose_value=False, is_eager=True,
                        callback=_show_version, help="Show Accord's version and exit.")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _report(message: str, code: int, kind: str, *, as_json: bool, label: str = "error") -> int:
    line = _one_line(message)
    click.echo(f"{click.style(label + ':', fg='red', bold=True)} {line}", err=True)  # unstyled off a TTY
    if as_json:
        print_json({"error": line, "exit_code": code, "type": kind})
    return code


def _wants_json(argv: Sequence[str]) -> bool:
    options = argv[: list(argv).index("--")] if "--" in argv else argv
    return "--json" in options


def _run(parent_main: Callable[..., Any], args: Sequence[str] | None, standalone_mode: bool, extra: dict[str, Any]) -> Any:
    """click's main with Accord's failure mapping around it."""
    argv = list(sys.argv[1:] if args is None else args)
    as_json = _wants_json(argv)
    code: int | None
    try:
        code = parent_main(args=argv, standalone_mode=False, **extra)
    except click.exceptions.NoArgsIsHelpError:  # the help is printed already: nothing to add
        code = ExitCode.USAGE
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
        bad_value = isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter)
        code = _report(exc.format_message() + hint, ExitCode.INVALID_INPUT if bad_value else ExitCode.USAGE,
                       type(exc).__name__, as_json=as_json)
    except click.ClickException as exc:
        code = _report(exc.format_message(), exc.exit_code, type(exc).__name__, as_json=as_json)
    except click.Abort:
        code = _report("aborted", ExitCode.FAILURE, "Abort", as_json=as_json)
    except AccordError as exc:
        code = _report(str(exc), int(exc.exit_code), type(exc).__name__, as_json=as_json)
    except OSError as exc:  # a file named on the command line that cannot be read or written
        code = _report(str(exc), ExitCode.INVALID_INPUT, type(exc).__name__, as_json=as_json)
    except Exception as exc:  # a bug: say so on one line, keep the traceback for whoever debugs it
        if os.environ.get(DEBUG_VARIABLE):
            traceback.print_exc()
        message = f"{type(exc).__name__}: {exc} (a bug in Accord; {DEBUG_VARIABLE}=1 prints the traceback)"
        code = _report(message, ExitCode.FAILURE, "InternalError", as_json=as_json, label="internal error")
    code = int(code) if isinstance(code, int) else 0
    if not standalone_mode:
        return code
    sys.exit(code)


class _Conventions:
    """The root command's extras: `--version`, and the failure mapping of `_run`."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params: list[click.Parameter] = list(super().get_params(ctx))  # type: ignore[misc]
        if ctx.parent is None:  # before the help option, which click puts last
            help_last = 1 if params and params[-1].name == "help" else 0
            params.insert(len(params) - help_last, _version_option())
        return params

    def invoke(self, ctx: click.Context) -> None:
        super().invoke(ctx)  # type: ignore[misc]  # a command's return value is never an exit code

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        extra.update(prog_name=prog_name, complete_var=complete_var, windows_expand_args=windows_expand_args)
        return _run(super().main, args, standalone_mode, extra)  # type: ignore[misc]


class AccordCommand(_Conventions, TyperCommand):
    """A command of an Accord CLI (the root one of a single-command CLI)."""


class AccordGroup(_Conventions, TyperGroup):
    """The root of an Accord CLI with subcommands.

    A subclass may list `lazy_commands` (name → "module:function" of a typer command function): such a
    command is imported only when it runs or the help lists it, so that a heavy subcommand does not slow
    the group's own work (the node's start does not import what `check` needs).
    """

    lazy_commands: ClassVar[dict[str, str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(name for name in self.lazy_commands if name not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            module, _, function = self.lazy_commands[cmd_name].partition(":")
            single = App()
            single.command(cmd_name)(getattr(importlib.import_module(module), function))
            self.commands[cmd_name] = typer.main.get_command(single)
        return super().get_command(ctx, cmd_name)


class App(typer.Typer):
    """A Typer app with Accord's conventions; run it as `app(prog_name="python -m ...")`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", AccordGroup)
        kwargs.setdefault("context_settings", {"help_option_names": HELP_OPTIONS})
        kwargs.setdefault("rich_markup_mode", "markdown")
        kwargs.setdefault("add_completion", True)
        kwargs.setdefault("pretty_exceptions_enable", False)  # failures are mapped above, never dumped
        super().__init__(**kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", AccordCommand)
        kwargs.setdefault("context_settings", {"help_option_names": HELP_OPTIONS})
        return super().command(name, **kwargs)
