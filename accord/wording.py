"""Words for counts in messages: `1 partner`, `2 partners`."""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """`count` and `noun`, in the plural unless `count` is 1."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"
