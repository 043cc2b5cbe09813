"""The crypto package's boundary: what it exports, and that it never reaches into `federated`."""

from __future__ import annotations

import ast
import runpy
import subprocess
import sys
from pathlib import Path

import crypto.merkle

CRYPTO_DIR = Path(crypto.merkle.__file__).parent


def test_every_name_in_all_is_exported() -> None:
    namespace = runpy.run_path(str(CRYPTO_DIR / "__init__.py"))
    missing = [name for name in namespace["__all__"] if name not in namespace]
    assert not missing


def test_no_crypto_module_imports_federated() -> None:
    offenders = []
    for path in sorted(CRYPTO_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] == "federated"]
    assert not offenders


def test_importing_the_crypto_modules_loads_nothing_from_federated() -> None:
    code = (
        "import sys, crypto.errors, crypto.merkle, crypto.identity, crypto.note; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'federated'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=CRYPTO_DIR.parent)  # fmt: skip
    assert result.stdout.strip() == "[]"
