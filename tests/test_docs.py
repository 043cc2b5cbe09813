"""The documentation: a short README that sends each role to its guide, links that resolve, a CLI
reference generated from the command lines, the install extras with their sizes, and the licence."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.documentation import ROOT, pages

README = (ROOT / "README.md").read_text(encoding="utf-8")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
ROLES = ("partner", "coordinator", "auditor", "researcher")


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors of a Markdown page (headings inside code fences are not headings)."""
    anchors, fence = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,6} ", line):
            heading = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return anchors


def test_the_cli_reference_is_what_the_command_lines_say_now():
    from tools.cli_reference import REFERENCE, render

    assert REFERENCE.read_text(encoding="utf-8") == render(), "docs/cli.md is stale: run `python -m tools.cli_reference`"


def test_the_cli_reference_covers_every_console_script():
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for script in PROJECT["scripts"]:
        assert f"## `{script}`" in reference


@pytest.mark.parametrize("page", sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]), ids=lambda p: p.name)
def test_every_relative_link_resolves_to_a_file_and_heading(page: Path):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to {target}: no such file"
        if anchor:
            assert anchor in _anchors(linked.read_text(encoding="utf-8")), f"{page.name}: link to {target}: no such heading"


def test_the_readme_is_short_and_sends_each_role_to_its_guide():
    assert len(README.encode()) < 12_000
    for role in ROLES:
        assert (ROOT / "docs" / f"{role}.md").is_file()
        assert f"(docs/{role}.md)" in README, f"the README does not link the {role} guide"
        assert re.search(rf"^\*\*{role.capitalize()}\*\*", README, re.MULTILINE), f"no {role} quickstart in the README"


def test_the_readme_names_the_two_commands():
    assert "make demo" in README and "make test" in README


def test_the_install_guide_lists_every_role_extra_with_its_measured_size():
    install = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    for extra in PROJECT["optional-dependencies"]:
        if extra in ("test", "research"):
            continue
        row = re.search(rf"^\| `{extra}` \|.*\| ([^|]+) \|$", install, re.MULTILINE)
        assert row, f"docs/install.md has no row for the `{extra}` extra"
        assert re.search(r"\d+(\.\d+)?\s?[MG]", row.group(1)), f"no measured size for `{extra}`: {row.group(1)!r}"


def test_the_licence_is_the_apache_2_licence_pyproject_declares():
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence


def test_no_page_says_training_is_still_to_come():
    for page, text in pages().items():
        assert "training comes" not in text and "and, next, federated training" not in text, page.name
