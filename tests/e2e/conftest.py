"""End-to-end fixtures: the demo hospitals' data and models, and a local federation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.hospitals.prepare import HOSPITALS, prepare
from federated.local.localhost import LocalFederation, Partner, free_port

_E2E = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/e2e carries the `e2e` marker (`pytest -m "not e2e"` leaves them out).

    A `pytestmark` here would not reach the test modules; this hook sees every collected item of the
    session, so it marks only those below this directory.
    """
    for item in items:
        if _E2E in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def hospitals(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hospitals")
    prepare(root)
    return root


@pytest.fixture
def partners(hospitals: Path) -> list[Partner]:
    return [Partner(name, hospitals / "data" / f"{name}.csv", hospitals / "data" / f"{name}.toml") for name, *_ in HOSPITALS]


def write_study(tmp_path: Path, hospitals: Path, **fields: object) -> Path:
    """A study of both demo models, written to tmp_path/study.toml."""
    values = {"id": "e2e", "purpose": "evaluation", "rounds": 1, "min_cohort": 2, "round_timeout_s": 60,
              "cohort_timeout_s": 90, "output_dir": str(tmp_path / "out")} | fields
    lines = [f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}" for k, v in values.items()]
    for name in ("logreg", "mlp"):
        lines += ["[[models]]", f'name = "{name}"', f'path = "{hospitals / "models" / f"{name}.onnx"}"']
    lines += ["[evaluation]", 'subgroup_levels = ["under_50", "50_plus"]']
    path = tmp_path / "study.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def federation(tmp_path: Path):
    local = LocalFederation(workdir=tmp_path / "nodes")
    yield local
    local.stop()


def run_simulated(study: Path, data: Path, partners: int) -> dict[str, Any]:
    """Run `study` under Flower's simulation engine through the coordinator CLI; its results.json."""
    done = subprocess.run(
        [sys.executable, "-m", "federated.server", "--study", str(study), "--insecure", "--port", str(free_port()),
         "--simulate", str(partners), "--simulation-data", str(data)],
        capture_output=True, text=True, timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((study.parent / "out" / "latest" / "results.json").read_text())
