"""Each role's command line imports only what its install extra (pyproject.toml) brings.

An auditor installs `accord[audit]`, an evaluating partner `accord[node]`: if importing their CLI
loaded a package that only another extra declares (torch, Ray, TenSEAL, Flower...), their install
would fail at start. Measured in a fresh interpreter, from `sys.modules`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(requirements: list[str]) -> set[str]:
    """Distribution names a requirement list names directly (extras of accord itself expanded)."""
    names: set[str] = set()
    for requirement in requirements:
        name = _normalise(re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0])
        if name == "accord":
            for extra in re.search(r"\[(.*)\]", requirement).group(1).split(","):
                names |= _declared(PROJECT["optional-dependencies"][extra.strip()])
        else:
            names.add(name)
    return names


BASE = _declared(PROJECT["dependencies"])
EVERY_EXTRA = set().union(*(_declared(v) for k, v in PROJECT["optional-dependencies"].items() if k != "test"))

_IMPORTED_DISTRIBUTIONS = """
import importlib, json, sys
from importlib.metadata import packages_distributions
importlib.import_module(sys.argv[1])
owners = packages_distributions()
print(json.dumps(sorted({d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])})))
"""


def _imported(module: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", _IMPORTED_DISTRIBUTIONS, module], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return {_normalise(name) for name in json.loads(done.stdout.splitlines()[-1])}


@pytest.mark.parametrize(("module", "extra"), [
    ("federated.audit.__main__", "audit"),
    ("federated.client.__main__", "node"),
    ("federated.client.app", "node"),
    ("privacy.ledger.__main__", None),
])
def test_a_role_cli_imports_nothing_its_extra_does_not_install(module: str, extra: str | None) -> None:
    allowed = BASE | (_declared(PROJECT["optional-dependencies"][extra]) if extra else set())
    foreign = (_imported(module) & EVERY_EXTRA) - allowed
    assert not foreign, f"importing {module} loads {sorted(foreign)}, which accord[{extra or ''}] does not install"


def test_importing_the_audit_cli_loads_neither_torch_tenseal_ray_nor_flower() -> None:
    code = ("import sys, federated.audit.__main__; "
            "print(','.join(m for m in ('torch', 'tenseal', 'ray', 'flwr') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "", f"loaded {done.stdout.strip()} {done.stderr[-2000:]}"


def test_no_extra_declares_pandas_which_nothing_imports() -> None:
    assert "pandas" not in BASE | EVERY_EXTRA
