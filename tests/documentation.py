"""The project's documentation as tests read it: README.md and docs/*.md (hand-written pages, not the
generated CLI reference), and their `## ` sections wherever they live."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = {"cli.md"}


def pages() -> dict[Path, str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {path: path.read_text(encoding="utf-8") for path in files if path.name not in GENERATED}


def all_text() -> str:
    return "\n".join(pages().values())


def section(heading: str) -> str:
    """The one `## heading` section of the documentation, up to the next `## ` heading or its page's end."""
    found = []
    for text in pages().values():
        start = text.find(f"\n## {heading}")
        while start != -1:
            end = text.find("\n## ", start + 1)
            found.append(text[start:] if end == -1 else text[start:end])
            start = text.find(f"\n## {heading}", start + 1)
    assert len(found) == 1, f"{len(found)} sections '## {heading}' in README.md and docs/"
    return found[0]
