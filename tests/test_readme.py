"""The README's examples are the project's own files and commands, so they cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_shows_the_demo_study_verbatim():
    study = (ROOT / "configs" / "demo-evaluation.toml").read_text(encoding="utf-8")
    assert f"```toml\n{study}```" in README


def test_ci_runs_the_readme_test_command():
    assert "make test" in README
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.MULTILINE)


def test_readme_documents_every_cli_option():
    import typer.main

    from federated.client.__main__ import cli as client_cli
    from federated.server.__main__ import cli as server_cli

    for cli in (server_cli, client_cli):
        command = typer.main.get_command(cli)
        for parameter in command.params:
            for option in parameter.opts:
                assert f"`{option}" in README, f"{option} is not documented in the README"
