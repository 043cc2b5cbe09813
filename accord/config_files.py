"""Loading TOML files into pydantic models, with errors that name the file and the field.

Shared by study files, data manifests and (later) data contracts so that every
config error in Accord reads the same way: `FILE: field.path: what is wrong`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from accord.errors import AccordError

ModelT = TypeVar("ModelT", bound=BaseModel)


def describe_validation_error(source: str, error: ValidationError) -> str:
    """Render every pydantic error as `source: field.path: message (got value)`."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field (not allowed here)"
        got = item.get("input")
        shown = "" if isinstance(got, dict) or item["type"] == "missing" else f" (got {got!r})"
        lines.append(f"{source}: {field}: {message}{shown}")
    return "\n".join(lines)


def load_toml_model(path: Path, model: type[ModelT], *, error: type[AccordError]) -> ModelT:
    """Read `path` as TOML and validate it as `model`; raise `error` naming file and field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML: {exc}") from None
    try:
        return model.model_validate(document, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise error(describe_validation_error(str(path), exc)) from None
