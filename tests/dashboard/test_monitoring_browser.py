"""A monitoring study in a real browser (the system's Chromium, driven by Playwright): what a person sees — the
studies list with the alert count, every alert listed with the numbers of results.json, the timeline's values
against the baseline with the alerts marked, the timeline chart loaded, the reason the schedule stopped.
Screenshots go to benchmarks/results/dashboard/ (ignored by git).

The last test opens the monitoring example's own output (`examples.monitoring.run_monitoring`, real Flower
processes: marker e2e), run once per session by `monitoring_example_out` (tests/conftest.py), which the e2e
monitoring test shares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federated.dashboard import Sources, coordinator_app
from federated.dashboard.security import CONTENT_SECURITY_POLICY
from federated.reporting.formatting import format_estimate, format_p_value, format_value
from tests.dashboard.conftest import live_server, screenshot
from tests.dashboard.monitoring_outputs import MODEL, STUDY_ID

pytestmark = pytest.mark.timeout(300)


def _alert_rows(page) -> list[list[str]]:
    rows = page.locator("#alerts tbody tr")
    return [[cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()] for i in range(rows.count())]


def _expected_alert_rows(results: dict) -> list[list[str]]:
    return [[str(a["period"]), a["partner"] or "pooled", a["model"], a["metric"], format_value(a["baseline"]),
             format_value(a["value"]), format_value(a["difference"]), format_p_value(a["p_value"]),
             format_value(a["threshold"]), a["message"]] for a in results["monitoring"]["alerts"]]


def _shown(metric: str, value, round_entry: dict, model: str, partner: str | None) -> str:
    """How the report prints a value of results.json: under DP (the round has standard errors for the model)
    an estimate clipped to its range's edge reads as a bound with the round's interval."""
    if partner is None:
        interval = round_entry.get("validation", {}).get(model, {}).get(f"{metric}_ci")
    else:
        interval = round_entry.get("heterogeneity", {}).get(model, {}).get("partners", {}).get(partner, {}).get(f"{metric}_ci")
    return format_estimate(metric, value, noisy=model in round_entry.get("standard_errors", {}), interval=interval)


def _check_timeline(page, results: dict) -> None:
    """Each series' value per period is the one results.json holds, and a cell is marked exactly where an
    alert names its period, model and partner."""
    monitoring = results["monitoring"]
    rounds = {entry["round"]: entry for entry in results["rounds"]}
    flagged = {(a["period"], a["model"], a["partner"], a["metric"]) for a in monitoring["alerts"]}
    for metric in monitoring["thresholds"]:
        timeline = page.locator(f'#monitoring .timeline[data-metric="{metric}"]')
        if not any(metric in values for entry in monitoring["periods"] for values in entry["pooled"].values()):
            assert timeline.locator(".no-values").inner_text() == f"No period released a value of {metric}."
            continue
        for entry in monitoring["periods"]:
            period = entry["period"]
            for model, values in entry["pooled"].items():
                cell = timeline.locator(f'tr.pooled[data-model="{model}"] td[data-period="{period}"]')
                expected = _shown(metric, values.get(metric), rounds[entry["round"]], model, None)
                assert cell.locator(".value").inner_text() == expected, (metric, period, model)
                assert ("alert" in (cell.get_attribute("class") or "")) == ((period, model, None, metric) in flagged)
            for partner, models in entry.get("per_partner", {}).items():
                for model, values in models.items():
                    cell = timeline.locator(f'tr[data-model="{model}"][data-partner="{partner}"] td[data-period="{period}"]')
                    expected = _shown(metric, values.get(metric), rounds[entry["round"]], model, partner)
                    assert cell.locator(".value").inner_text() == expected, (metric, period, partner)
                    assert ("alert" in (cell.get_attribute("class") or "")) == ((period, model, partner, metric) in flagged)
        image = timeline.locator("img")
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")


def test_the_studies_list_shows_the_monitoring_study_with_its_alert_count(monitoring_study, page):
    with live_server(coordinator_app(Sources(monitoring_study.parent))) as url:
        response = page.goto(url + "/")
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        row = page.locator(f'tr[data-study="{STUDY_ID}"]')
        assert row.locator(".status").inner_text() == "stopped"
        assert row.locator(".alert-count").inner_text() == "3 alerts"
        screenshot(page, "monitoring-studies")


def test_every_alert_is_listed_with_the_numbers_of_results_json(monitoring_study, page):
    results = json.loads((monitoring_study / "results.json").read_text())
    with live_server(coordinator_app(Sources(monitoring_study.parent))) as url:
        page.goto(f"{url}/study/{STUDY_ID}")
        assert _alert_rows(page) == _expected_alert_rows(results)
        assert page.locator("#stopped").inner_text() == f"Stopped at period 5 (hospital-c): {results['monitoring']['stopped']['reason']}"
        _check_timeline(page, results)
        baseline = page.locator(f'#monitoring tr.pooled[data-model="{MODEL}"] .baseline').inner_text()
        assert baseline == format_value(results["monitoring"]["periods"][0]["pooled"][MODEL]["accuracy"])
        page.locator("#monitoring").scroll_into_view_if_needed()
        screenshot(page, "monitoring")


@pytest.fixture
def monitoring_example(monitoring_example_out: Path) -> Path:
    """The run's directory of the monitoring example, run once per session (tests/conftest.py)."""
    return (monitoring_example_out / "output" / "latest").resolve()


@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_the_monitoring_examples_own_output_shows_its_alerts(monitoring_example, page):
    results = json.loads((monitoring_example / "results.json").read_text())
    assert results["monitoring"]["alerts"], "the example raised no alert"
    with live_server(coordinator_app(Sources(monitoring_example.parent))) as url:
        page.goto(url + "/")
        row = page.locator(f'tr[data-study="{monitoring_example.name}"]')
        count = len(results["monitoring"]["alerts"])
        assert row.locator(".alert-count").inner_text() == f"{count} alert{'' if count == 1 else 's'}"
        page.goto(f"{url}/study/{monitoring_example.name}")
        assert _alert_rows(page) == _expected_alert_rows(results)
        _check_timeline(page, results)
        screenshot(page, "monitoring-example")
