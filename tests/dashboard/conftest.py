"""Fixtures for the dashboard: a real study's outputs (made once per session), a study whose trail carries HTML,
a monitoring study, a partner node with a ledger, a live server on a free loopback port, and the system's Chromium."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from federated.audit import AuditTrail
from privacy import BudgetLedger
from tests.dashboard.monitoring_outputs import write_monitoring_study
from tests.dashboard.study_outputs import run_demo_study

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "benchmarks" / "results" / "dashboard"  # ignored by git
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
HOSTILE = "<script>alert('partner')</script>"


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> dict[str, Path]:
    """A completed two-round study of the demo hospitals (hospital-c refuses), with its evidence pack."""
    return run_demo_study(tmp_path_factory.mktemp("dashboard-demo"))


@pytest.fixture
def hostile_study(tmp_path) -> Path:
    """A study output whose trail and results name a partner `<script>…` and carry markup in a refusal."""
    out = tmp_path / "output" / "hostile"
    out.mkdir(parents=True)
    trail = AuditTrail(out / "coordinator-trail.jsonl", actor="coordinator")
    trail.append("study_started", study="hostile", rounds=1)
    trail.append("task_refused", study="hostile", round=1, node="1", partner=HOSTILE, clause="<b>bold</b>",
                 reason="<img src=x onerror=alert(1)>")
    results = {"study": "hostile", "purpose": "evaluation", "status": "cohort_too_small", "message": "<i>too few</i>",
               "min_cohort": 2, "models": [], "rounds": [{
                   "round": 1, "contributors": [], "missing": [{"node": "2", "reason": "<u>timeout</u>"}],
                   "refused": [{"partner": HOSTILE, "clause": "<b>bold</b>", "reason": "<img src=x onerror=alert(1)>"}],
                   "duration_s": 0.5}]}
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (out / "roc-m.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (out / "submitted-study.toml").write_text('id = "hostile"\n', encoding="utf-8")
    (out / "coordinator.key").write_text("secret\n", encoding="utf-8")
    return out


@pytest.fixture
def monitoring_study(tmp_path) -> Path:
    """A monitoring study in the agreed results.json shape: alerts at hospital-b and on the pooled accuracy,
    stopped before period 5 (tests/dashboard/monitoring_outputs.py)."""
    return write_monitoring_study(tmp_path / "output")


@pytest.fixture
def partner_node(tmp_path) -> dict[str, Path]:
    """A partner's trail and ledger as its node writes them: one study accepted and charged twice, one refused."""
    trail_path, ledger_path = tmp_path / "node" / "trail.jsonl", tmp_path / "node" / "budget.sqlite"
    trail_path.parent.mkdir()
    trail = AuditTrail(trail_path, actor="hospital-x")
    where = {"study": "s1", "round": 1}
    ledger = BudgetLedger(ledger_path, max_epsilon_total=20.0, max_epsilon_per_study=5.0,
                          on_spend=lambda record: trail.append(
                              "privacy_spent", **{k: v for k, v in record.items() if k != "study_id"}, study="s1",
                              round=where["round"]))
    for round_number in (1, 2):
        where["round"] = round_number
        trail.append("task_received", study="s1", round=round_number, task_sha256="a" * 64)
        trail.append("task_accepted", study="s1", round=round_number, data_sha256="b" * 64, manifest_sha256="c" * 64, count=None)
        ledger.spend(study_id="s1", release=f"evaluate/{round_number}", epsilon=1.5, delta=1e-6)
    trail.append("task_received", study="s2", round=1, task_sha256="d" * 64)
    trail.append("task_refused", study="s2", round=1, clause="allowed_purposes",
                 reason="contract clause 'allowed_purposes': purpose 'training' is not among ['evaluation']")
    return {"trail": trail_path, "ledger": ledger_path}


@contextmanager
def live_server(app) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 at a free port in a thread; yields the base URL; stops on exit."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


@pytest.fixture(scope="session")
def browser():
    """The system's Chromium driven by Playwright (no browser download); skips when either is missing."""
    executable = next((path for path in CHROMIUM if Path(path).is_file()), None) or shutil.which("chromium")
    if executable is None:
        pytest.skip("no Chromium on this machine: `apt-get install -y chromium` (.ci/run installs it) to run browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed: `pip install -e '.[test]'`")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
