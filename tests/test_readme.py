"""The documentation's examples are the project's own files and commands, so they cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from tests.documentation import all_text

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = all_text()  # README.md and docs/*.md, without the generated CLI reference


def test_the_docs_show_the_demo_study_verbatim():
    study = (ROOT / "configs" / "demo-evaluation.toml").read_text(encoding="utf-8")
    assert f"```toml\n{study}```" in DOCS


def test_ci_runs_the_readme_test_command():
    assert "make test" in README
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.MULTILINE)


def test_the_docs_document_every_cli_option():
    import typer.main

    from federated.client.__main__ import cli as client_cli
    from federated.server.__main__ import cli as server_cli

    for cli in (server_cli, client_cli):
        command = typer.main.get_command(cli)
        for parameter in command.params:
            for option in parameter.opts:
                assert f"`{option}" in DOCS, f"{option} is not documented in README.md or docs/"
