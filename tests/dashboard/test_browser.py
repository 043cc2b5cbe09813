"""The dashboard in a real browser (the system's Chromium, driven by Playwright): what a person sees on the
pages of a real study — the numbers of results.json, the refusals with their clauses, the plots, ε per partner,
the evidence verified on demand, a forged trail failing, and markup from a trail shown as text. Screenshots
go to benchmarks/results/dashboard/ (ignored by git)."""

from __future__ import annotations

import json

import pytest

from federated.dashboard import PartnerSources, Sources, coordinator_app, partner_app
from federated.dashboard.security import CONTENT_SECURITY_POLICY
from federated.reporting.formatting import format_value
from tests.dashboard.conftest import HOSTILE, live_server, screenshot
from tests.dashboard.study_outputs import REFUSING, STUDY_ID, tampered_copy

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def results(demo) -> dict:
    return json.loads((demo["study"] / "results.json").read_text())


def _cell(page, selector: str) -> str:
    return page.locator(selector).first.inner_text().strip()


def test_the_studies_page_lists_the_study_with_its_status(demo, page):
    with live_server(coordinator_app(Sources(demo["output"]))) as url:
        response = page.goto(url + "/")
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        row = page.locator(f'tr[data-study="{STUDY_ID}"]')
        assert row.locator(".status").inner_text() == "completed"
        screenshot(page, "studies")


def test_the_study_page_shows_the_pooled_metrics_of_results_json(demo, page, results):
    final = results["rounds"][-1]
    with live_server(coordinator_app(Sources(demo["output"]))) as url:
        page.goto(f"{url}/study/{STUDY_ID}")
        for model, metrics in final["pooled"].items():
            for metric in ("count", "accuracy", "auroc", "brier"):
                shown = _cell(page, f'#pooled tr[data-model="{model}"] td[data-metric="{metric}"] .value')
                assert shown == format_value(metrics[metric]), (model, metric)
            se = _cell(page, f'#pooled tr[data-model="{model}"] td[data-metric="accuracy"] .se')
            assert se == f"± {format_value(final['standard_errors'][model]['accuracy'])}"
        screenshot(page, "study")


def test_the_study_page_shows_the_intervals_of_results_json(demo, page, results):
    final = results["rounds"][-1]
    with live_server(coordinator_app(Sources(demo["output"]))) as url:
        page.goto(f"{url}/study/{STUDY_ID}")
        for model, summary in final["validation"].items():
            interval = summary["accuracy_ci"]
            shown = _cell(page, f'#validation table[data-model="{model}"] tr[data-metric="accuracy"] .ci')
            assert shown == f"[{format_value(interval['low'])}, {format_value(interval['high'])}]"
            method = _cell(page, f'#validation table[data-model="{model}"] tr[data-metric="accuracy"] .method')
            assert method == interval["method"]


def test_the_study_page_lists_each_refusal_with_its_clause(demo, page, results):
    with live_server(coordinator_app(Sources(demo["output"]))) as url:
        page.goto(f"{url}/study/{STUDY_ID}")
        for entry in results["rounds"]:
            refusals = page.locator(f'#rounds tr[data-round="{entry["round"]}"] .refusals li')
            assert refusals.count() == len(entry["refused"]) == 1
            assert refusals.locator(".partner").inner_text() == REFUSING
            assert refusals.locator(".clause").inner_text() == "allowed_purposes"
            assert refusals.locator(".reason").inner_text() == entry["refused"][0]["reason"]
            assert page.locator(f'#rounds tr[data-round="{entry["round"]}"] .contributors').inner_text() == ", ".join(entry["contributors"])


def test_the_matrix_shows_released_cells_and_the_heterogeneity_rows(demo, page, results):
    final = results["rounds"][-1]
    with live_server(coordinator_app(Sources(demo["output"]))) as url:
        page.goto(f"{url}/study/{STUDY_ID}")
        for model, row in final["matrix"].items():
            for partner, cell in row.items():
                shown = _cell(page, f'#matrix tr[data-model="{model}"] td[data-partner="{partner}"]')
                expected = "withheld by partner" if cell is None else f"{format_value(cell['accuracy'])} / {format_value(cell['auroc'])}"
                assert shown == expected
        for model, entry in final["heterogeneity"].items():
            for partner, row in entry["partners"].items():
                shown = _cell(page, f'#heterogeneity table[data-model="{model}"] tr[data-partner="{partner}"] .accuracy')
                assert shown == format_value(row["accuracy"])


def test_the_plots_are_the_report_pngs_and_load(demo, page):
    with live_server(coordinator_app(Sources(demo["output"]))) as url:
        page.goto(f"{url}/study/{STUDY_ID}")
        images = page.locator("#plots img")
        names = sorted(images.nth(i).get_attribute("alt") for i in range(images.count()))
        assert names == sorted(p.name for p in demo["study"].glob("*.png"))
        for i in range(images.count()):
            assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")


def test_epsilon_per_partner_is_what_the_partner_trails_in_the_pack_record(demo, page, results):
    with live_server(coordinator_app(Sources(demo["output"]))) as url:
        page.goto(f"{url}/study/{STUDY_ID}")
        for partner, claim in results["privacy"].items():
            spent = _cell(page, f'#privacy tr[data-partner="{partner}"] .spent')
            assert spent == format_value(claim["basic_composition"]["epsilon"]) == "10"
        assert _cell(page, f'#privacy tr[data-partner="{REFUSING}"] .spent') == format_value(0.0)


def test_the_evidence_pack_is_verified_on_demand(demo, page):
    with live_server(coordinator_app(Sources(demo["output"], coordinator_key=None))) as url:
        page.goto(f"{url}/study/{STUDY_ID}")
        page.locator('button.verify-pack[data-pack="evidence.zip"]').click()
        assert page.locator("#verdict").inner_text() == "VERIFIED"
        assert page.locator("#checks li").count() > 0
        screenshot(page, "verified")


def test_the_output_directory_without_partner_trails_verifies_only_with_gaps(demo, page):
    with live_server(coordinator_app(Sources(demo["output"]))) as url:
        page.goto(f"{url}/study/{STUDY_ID}")
        page.locator("#verify-output").click()
        assert page.locator("#verdict").inner_text() == "VERIFIED WITH GAPS"


def test_a_forged_trail_is_shown_failing_verification(demo, page, tmp_path):
    forged = tampered_copy(demo["study"], tmp_path)
    partners = tuple(demo["nodes"] / name for name in ("hospital-a", "hospital-b", "hospital-c"))
    with live_server(coordinator_app(Sources(forged.parent, partner_trails=partners))) as url:
        page.goto(f"{url}/study/{STUDY_ID}")
        assert "chain broken" in page.locator("#trail-problem").inner_text()
        page.locator("#verify-output").click()
        assert page.locator("#verdict").inner_text() == "FAILED"
        assert "coordinator-trail.jsonl" in page.locator("#reason").inner_text()
        screenshot(page, "forged-trail")


def test_markup_in_a_trail_is_shown_as_text_and_never_runs(hostile_study, page):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    with live_server(coordinator_app(Sources(hostile_study.parent))) as url:
        page.goto(f"{url}/study/hostile")
        refusal = page.locator("#rounds .refusals li").first
        assert refusal.locator(".partner").inner_text() == HOSTILE
        assert refusal.locator(".clause").inner_text() == "<b>bold</b>"
        assert page.locator("#rounds b, #rounds img, script").count() == 0
        screenshot(page, "escaped")
    assert dialogs == []


def test_the_partner_view_in_the_browser(demo, page):
    node = demo["nodes"] / REFUSING
    contract = demo["hospitals"] / "data" / f"{REFUSING}.contract.toml"
    with live_server(partner_app(PartnerSources(node / "trail.jsonl", contract=contract))) as url:  # it never spent
        page.goto(url + "/")
        assert page.locator(".problem").count() == 0
        clauses = page.locator("#refused .clause")
        assert clauses.count() == 2 and {clauses.nth(i).inner_text() for i in range(2)} == {"allowed_purposes"}
        assert "Purposes allowed: training." in page.locator("#contract").inner_text()
        screenshot(page, "partner-refusing")


def test_the_partner_view_shows_epsilon_spent_and_remaining_from_the_ledger(demo, page):
    node = demo["nodes"] / "hospital-a"
    with live_server(partner_app(PartnerSources(node / "trail.jsonl", node / "budget.sqlite"))) as url:
        page.goto(url + "/")
        row = page.locator(f'#budget tr[data-study="{STUDY_ID}"]')
        assert row.locator(".spent").inner_text() == "10" and row.locator(".remaining").inner_text() == format_value(0.0)
        assert page.locator("#accepted tbody tr").count() >= 2
        screenshot(page, "partner")
