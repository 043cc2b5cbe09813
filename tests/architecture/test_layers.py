"""The package layers of DESIGN.md, enforced on the source: each module imports only its own
layer or the layers below it, and the import graph inside `federated/` has no cycle.

Layers, top to bottom (a module may import anything at its own level or lower, never higher;
`server` and `client` share a level but never import each other):

    local → server | client → audit.evidence → audit | reporting → messages
    → evaluation | training | runtime → study | errors → privacy | crypto → accord

Imports under `if TYPE_CHECKING:` and inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("accord", "crypto", "privacy", "federated")

# (prefix, level): the longest matching prefix decides a module's layer.
LAYERS: list[tuple[str, int]] = [
    ("accord", 0),
    ("crypto", 1),
    ("privacy", 1),
    ("federated.errors", 2),
    ("federated.study", 2),
    ("federated.evaluation", 3),
    ("federated.training", 3),
    ("federated.runtime", 3),
    ("federated.messages", 4),
    ("federated.audit", 5),
    ("federated.reporting", 5),
    ("federated.audit.evidence", 6),
    ("federated.audit.__main__", 7),  # the auditor's CLI sits with the apps, above the evidence it verifies
    ("federated.server", 7),
    ("federated.client", 7),
    ("federated.local", 8),
    ("federated.dashboard", 8),  # reads what the apps wrote; nothing imports it
    ("federated", 9),  # the package's own __init__
]
SIBLINGS_APART = {("federated.server", "federated.client"), ("federated.client", "federated.server")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> tuple[str, int]:
    matches = [(prefix, level) for prefix, level in LAYERS if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer: add it to LAYERS"
    return max(matches, key=lambda m: len(m[0]))


def project_imports(path: Path) -> set[str]:
    """Every project module `path` imports, at module level, lazily or for type checking."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from federated.audit import trail` names a module too
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if _is_module(f"{node.module}.{alias.name}"))
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _is_module(dotted: str) -> bool:
    base = ROOT / dotted.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def test_every_module_belongs_to_a_layer() -> None:
    for module in all_modules():
        layer_of(module)


def test_no_module_imports_a_higher_layer() -> None:
    violations = []
    for module, path in sorted(all_modules().items()):
        prefix, level = layer_of(module)
        for imported in sorted(project_imports(path)):
            other_prefix, other_level = layer_of(imported)
            if other_level > level or (prefix, other_prefix) in SIBLINGS_APART:
                violations.append(f"{module} ({prefix}) imports {imported} ({other_prefix})")
    assert not violations, "upward imports:\n" + "\n".join(violations)


def test_federated_has_no_import_cycle() -> None:
    modules = all_modules()
    graph = {m: {i for i in project_imports(p) if i in modules and i != m} for m, p in modules.items()
             if m.startswith("federated")}
    # A package's __init__ re-exporting its modules is not a cycle of logic: skip edges into a parent package.
    for m, edges in graph.items():
        graph[m] = {e for e in edges if not m.startswith(e + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("module", ["federated.client.app"])
def test_importing_the_client_app_loads_neither_torch_nor_tenseal(module: str) -> None:
    import subprocess
    import sys

    # scipy too: scipy.stats alone cost each message's ClientApp process ~1 s of imports (issue 11).
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'tenseal', 'ray', 'scipy') if m in sys.modules]; "
            "print(','.join(heavy)); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"importing {module} loaded {done.stdout.strip()} {done.stderr[-2000:]}"


def test_the_layer_checker_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: a lower module importing a higher one is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from federated.server.app import app\n")
    imports = project_imports(bad)
    assert "federated.server.app" in imports
    assert layer_of("federated.server.app")[1] > layer_of("federated.evaluation.metrics")[1]
