"""The monitoring timeline over plain HTTP: the studies list counts a monitoring study's alerts; the study page
shows each metric's values per period against the baseline with intervals, marks and lists the alerts,
says why the schedule stopped, and draws the timeline as the report does; markup in the section stays text;
a running study's alerts come from the trail."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
from starlette.testclient import TestClient

from federated.dashboard import Sources, coordinator_app
from federated.reporting.formatting import format_p_value, format_value
from federated.reporting.monitoring_section import (
    monitoring_lines,
    plot_monitoring,
    timelines,
)
from tests.dashboard.conftest import HOSTILE
from tests.dashboard.monitoring_outputs import (
    MODEL,
    STUDY_ID,
    monitoring_results,
    write_monitoring_study,
)

LOCAL = "http://127.0.0.1:8050"


def _http(study) -> TestClient:
    return TestClient(coordinator_app(Sources(study.parent)), base_url=LOCAL)


def _body(study, path: str = f"/study/{STUDY_ID}") -> str:
    response = _http(study).get(path)
    assert response.status_code == 200
    return response.text


def _row(body: str, start: str) -> str:
    return body.split(start, 1)[1].split("</tr>", 1)[0]


def _cells(row: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def test_the_studies_list_shows_a_monitoring_study_with_its_status_and_alert_count(monitoring_study):
    row = _row(_body(monitoring_study, "/"), f'<tr data-study="{STUDY_ID}">')
    assert 'class="status status-stopped">stopped<' in row
    assert "4 periods · " in row and ">3 alerts</span>" in row and '<span class="stopped">stopped</span>' in row


def test_a_study_that_is_not_a_monitoring_study_has_no_monitoring_cell_or_section(hostile_study):
    assert '<td class="monitoring">—</td>' in _body(hostile_study, "/")
    assert 'id="monitoring"' not in _body(hostile_study, "/study/hostile")


def test_each_alert_is_listed_with_every_column_as_results_json_has_it(monitoring_study):
    results = json.loads((monitoring_study / "results.json").read_text())
    table = _body(monitoring_study).split('<table id="alerts">', 1)[1].split("</table>", 1)[0]
    rows = [_cells(row) for row in table.split('<tr class="alert">')[1:]]
    expected = [[str(a["period"]), a["partner"] or "pooled", a["model"], a["metric"], format_value(a["baseline"]),
                 format_value(a["value"]), format_value(a["difference"]), format_p_value(a["p_value"]),
                 format_value(a["threshold"]), a["message"]] for a in results["monitoring"]["alerts"]]
    assert rows == expected and len(rows) == 3
    assert rows[0][7] == "0.0039" and rows[1][7] == "< 0.0001"


def test_each_period_value_is_shown_against_the_baseline_with_its_interval(monitoring_study):
    results = json.loads((monitoring_study / "results.json").read_text())
    body = _body(monitoring_study)
    section = body.split('<div class="timeline" data-metric="accuracy">', 1)[1].split("</div>", 1)[0]
    pooled = _row(section, f'<tr data-model="{MODEL}" class="pooled">')
    assert f'<td class="baseline">{format_value(results["monitoring"]["periods"][0]["pooled"][MODEL]["accuracy"])}</td>' in pooled
    for entry, round_entry in zip(results["monitoring"]["periods"], results["rounds"]):
        interval = round_entry["validation"][MODEL]["accuracy_ci"]
        assert (f'<span class="value">{format_value(entry["pooled"][MODEL]["accuracy"])}</span> '
                f'<span class="ci">[{format_value(interval["low"])}, {format_value(interval["high"])}]</span>') in pooled
        for partner, models in entry["per_partner"].items():
            row = _row(section, f'<tr data-model="{MODEL}" data-partner="{partner}">')
            assert f'<span class="value">{format_value(models[MODEL]["accuracy"])}</span>' in row


def test_alerts_are_marked_on_their_period_and_series_only(monitoring_study):
    section = _body(monitoring_study).split('<div class="timeline" data-metric="accuracy">', 1)[1].split("</div>", 1)[0]
    marked = {(row.split('data-partner="', 1)[1].split('"', 1)[0] if "data-partner" in row else "pooled", period)
              for row in section.split("<tr ")[1:]
              for period in re.findall(r'<td data-period="(\d+)" class="alert">', row)}
    assert marked == {("hospital-b", "3"), ("hospital-b", "4"), ("pooled", "4")}


def test_the_stop_and_its_reason_are_shown(monitoring_study):
    body = _body(monitoring_study)
    assert ('<p id="stopped" class="bad">Stopped at period 5 (hospital-c): hospital-c&#39;s privacy budget is spent '
            "(ε 10 of 10 for this study)</p>") in body
    assert '<tr data-period="4"><td>4</td><td>4</td>' in body and '<td class="alerts">2</td>' in body


def test_the_timeline_chart_is_a_png_the_page_links_and_an_unknown_one_is_not_found(monitoring_study):
    http = _http(monitoring_study)
    assert f'src="/study/{STUDY_ID}/monitoring/0.png"' in http.get(f"/study/{STUDY_ID}").text
    chart = http.get(f"/study/{STUDY_ID}/monitoring/0.png")
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"
    assert chart.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert http.get(f"/study/{STUDY_ID}/monitoring/1.png").status_code == 404


def test_the_chart_is_the_one_the_report_draws_from_the_same_results(monitoring_study, tmp_path):
    from PIL import Image

    served = _http(monitoring_study).get(f"/study/{STUDY_ID}/monitoring/0.png").content
    written = plot_monitoring(json.loads((monitoring_study / "results.json").read_text()), tmp_path)
    assert list(written) == ["accuracy"] and written["accuracy"].name == "monitoring-1.png"
    assert Image.open(io.BytesIO(served)).tobytes() == Image.open(written["accuracy"]).tobytes()


def test_the_report_section_lists_the_same_alerts_and_the_stop():
    results = monitoring_results()
    text = "\n".join(monitoring_lines(results, {"accuracy": __import__("pathlib").Path("monitoring-1.png")}))
    assert "**Stopped at period 5 (hospital-c): hospital-c's privacy budget is spent" in text
    assert text.count("| accuracy |") == 3  # one alert row per alert
    assert "| deployed · hospital-b | 0.8711 | 0.8711 | 0.8615 | 0.8000 ⚠ | 0.6888 ⚠ |" in text
    assert "![monitoring accuracy](monitoring-1.png)" in text


def test_markup_in_the_monitoring_section_is_text(tmp_path):
    results = monitoring_results()
    monitoring = results["monitoring"]
    monitoring["alerts"][0].update(partner=HOSTILE, message="<img src=x onerror=alert(1)>")
    monitoring["periods"][0]["per_partner"][HOSTILE] = monitoring["periods"][0]["per_partner"].pop("hospital-a")
    monitoring["thresholds"]["<b>auroc</b>"] = {"max_drop": 0.1, "alpha": 0.05}
    monitoring["stopped"]["reason"] = "<script>alert(2)</script>"
    study = write_monitoring_study(tmp_path / "output", results)
    body = _body(study)
    section = body.split('<section id="monitoring">', 1)[1].split("</section>", 1)[0]
    assert "<script" not in section and "<img src=x" not in section and "<b>" not in section
    assert "&lt;script&gt;alert(&#39;partner&#39;)&lt;/script&gt;" in section
    assert "&lt;img src=x onerror=alert(1)&gt;" in section and "&lt;script&gt;alert(2)&lt;/script&gt;" in section


def test_a_monitoring_section_of_the_wrong_shape_is_shown_as_far_as_it_reads(hostile_study):
    results = json.loads((hostile_study / "results.json").read_text())
    results.update(purpose="monitoring", monitoring={"periods": [{"period": "one"}, {"period": 2, "pooled": [1]}, 7],
                                                      "alerts": [{"period": 2, "metric": 3}, "x"], "stopped": "no"})
    (hostile_study / "results.json").write_text(json.dumps(results))
    body = _body(hostile_study, "/study/hostile")
    assert '<tr data-period="2">' in body and "Stopped" not in body
    assert len(re.findall(r'<tr class="alert">', body)) == 1


def test_while_running_the_alerts_come_from_the_coordinators_trail(monitoring_study):
    results = json.loads((monitoring_study / "results.json").read_text())
    (monitoring_study / "results.json").unlink()
    body = _body(monitoring_study)
    assert "From the coordinator&#39;s trail" in body
    rows = body.split('<table id="alerts">', 1)[1].split("</table>", 1)[0].split('<tr class="alert">')[1:]
    assert [_cells(r)[:2] for r in rows] == [[str(a["period"]), a["partner"] or "pooled"] for a in results["monitoring"]["alerts"]]
    assert ">3 alerts</span>" in _body(monitoring_study, "/")


@pytest.mark.parametrize("metric", ["accuracy"])
def test_timelines_take_the_baseline_from_the_comparisons(metric):
    timeline = next(t for t in timelines(monitoring_results()) if t.metric == metric)
    pooled = timeline.series[0]
    assert pooled.partner is None and pooled.baseline == pytest.approx(pooled.values[1])
    assert timeline.periods == [1, 2, 3, 4] and timeline.threshold == {"max_drop": 0.05, "alpha": 0.01}


def test_the_monitoring_page_holds_no_script_and_no_inline_style(monitoring_study):
    body = _body(monitoring_study)
    assert "<script" not in body and "<style" not in body
    assert not re.search(r"<[^>]*\s(style|on[a-z]+)=", body)
    assert _http(monitoring_study).get("/").headers["content-security-policy"].startswith("default-src 'none'")


def test_with_a_token_the_chart_needs_it_and_the_page_links_it_with_the_token(monitoring_study):
    token = "a-long-enough-test-token"
    http = TestClient(coordinator_app(Sources(monitoring_study.parent), token=token), base_url=LOCAL)
    assert http.get(f"/study/{STUDY_ID}/monitoring/0.png").status_code == 401
    body = http.get(f"/study/{STUDY_ID}?token={token}").text
    assert f'src="/study/{STUDY_ID}/monitoring/0.png?token={token}"' in body
    assert http.get(f"/study/{STUDY_ID}/monitoring/0.png?token={token}").status_code == 200


def test_a_dp_estimate_clipped_to_the_edge_of_its_range_is_shown_as_a_bound(tmp_path):
    results = monitoring_results()
    results["rounds"][1]["standard_errors"] = {MODEL: {"accuracy": 0.01}}  # period 2's round released DP estimates
    results["monitoring"]["periods"][1]["per_partner"]["hospital-a"][MODEL]["accuracy"] = 1.0
    results["rounds"][1]["heterogeneity"][MODEL]["partners"]["hospital-a"]["accuracy_ci"].update(low=0.965, high=1.0)
    study = write_monitoring_study(tmp_path / "output", results)
    row = _row(_body(study), f'<tr data-model="{MODEL}" data-partner="hospital-a">')
    assert '<td data-period="2"><span class="value">≥ 0.965 (clipped)</span>' in row
    assert '<td data-period="1"><span class="value">0.8700</span>' in row  # period 1's round had no DP noise
