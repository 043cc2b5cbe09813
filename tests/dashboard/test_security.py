"""The dashboard's security rules over plain HTTP (Starlette's TestClient): where it listens, the token, the
headers on every response, and that it serves only the files it lists — never data, keys or trails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from accord.errors import ExitCode
from federated.dashboard import (
    PartnerSources,
    Sources,
    check_bind,
    coordinator_app,
    partner_app,
)
from federated.dashboard.__main__ import cli
from federated.dashboard.security import CONTENT_SECURITY_POLICY
from federated.errors import ConfigError

TOKEN = "a-long-enough-test-token"
LOCAL = "http://127.0.0.1:8050"


def client(study: Path, *, base_url: str = LOCAL, **options) -> TestClient:
    return TestClient(coordinator_app(Sources(study.parent), **options), base_url=base_url)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_a_non_loopback_address_without_a_token_is_refused(host):
    with pytest.raises(ConfigError, match="needs --token|only with --token"):
        check_bind(host, None)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_a_loopback_address_needs_no_token(host):
    check_bind(host, None)


def test_a_non_loopback_address_with_a_token_is_allowed():
    check_bind("0.0.0.0", TOKEN)


def test_a_guessable_token_is_refused():
    with pytest.raises(ConfigError, match="at least 16 characters"):
        check_bind("0.0.0.0", "short")


def test_the_command_refuses_a_non_loopback_bind_without_a_token_with_exit_code_3(hostile_study):
    done = CliRunner().invoke(cli, ["--output", str(hostile_study), "--host", "0.0.0.0"])
    assert done.exit_code == ExitCode.INVALID_INPUT
    assert "--host 0.0.0.0" in done.output and "--token" in done.output


def test_the_partner_command_refuses_a_non_loopback_bind_without_a_token(partner_node):
    done = CliRunner().invoke(cli, ["partner", "--trail", str(partner_node["trail"]), "--host", "10.0.0.1"])
    assert done.exit_code == ExitCode.INVALID_INPUT


@pytest.mark.parametrize("path", ["/", "/study/hostile", "/study/hostile/file/roc-m.png", "/no/such/page",
                                  "/study/hostile/file/coordinator.key", "/static/style.css"])
def test_every_response_carries_the_security_headers(hostile_study, path):
    response = client(hostile_study).get(path)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "script-src" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_pages_hold_no_script_and_no_inline_style(hostile_study):
    body = client(hostile_study).get("/study/hostile").text
    assert "<script" not in body and "<style" not in body
    assert not re.search(r"<[^>]*\s(style|on[a-z]+)=", body)  # no inline style, no event handler attribute


@pytest.mark.parametrize("name", ["coordinator.key", "submitted-study.toml", "coordinator-trail.jsonl",
                                  "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..%2Fcoordinator.key"])
def test_files_outside_the_listed_ones_are_not_served(hostile_study, name):
    response = client(hostile_study).get(f"/study/hostile/file/{name}")
    assert response.status_code == 404
    assert "secret" not in response.text


def test_a_study_name_cannot_reach_outside_the_output_folder(hostile_study):
    for path in ("/study/..%2F..", "/study/%2Fetc", "/study/../../etc/file/passwd"):
        assert client(hostile_study).get(path).status_code == 404


def test_a_symbolic_link_is_not_served_even_with_a_listed_suffix(hostile_study):
    (hostile_study / "plot.png").symlink_to(hostile_study / "coordinator.key")
    assert client(hostile_study).get("/study/hostile/file/plot.png").status_code == 404


def test_the_listed_files_are_served_with_their_types(hostile_study):
    http = client(hostile_study)
    assert http.get("/study/hostile/file/roc-m.png").headers["content-type"] == "image/png"
    assert http.get("/study/hostile/file/results.json").json()["study"] == "hostile"


def test_with_a_token_a_request_without_it_is_refused(hostile_study):
    response = client(hostile_study, token=TOKEN).get("/study/hostile")
    assert response.status_code == 401
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_with_a_token_a_wrong_token_is_refused(hostile_study):
    response = client(hostile_study, token=TOKEN).get("/", headers={"Authorization": "Bearer wrong-token-of-some-length"})
    assert response.status_code == 401


@pytest.mark.parametrize("how", ["bearer", "header", "query"])
def test_with_a_token_each_way_of_sending_it_is_accepted(hostile_study, how):
    http = client(hostile_study, token=TOKEN)
    headers = {"bearer": {"Authorization": f"Bearer {TOKEN}"}, "header": {"X-Accord-Token": TOKEN}}.get(how, {})
    response = http.get("/study/hostile" + (f"?token={TOKEN}" if how == "query" else ""), headers=headers)
    assert response.status_code == 200


def test_links_on_a_page_asked_for_with_a_query_token_carry_it(hostile_study):
    body = client(hostile_study, token=TOKEN).get(f"/?token={TOKEN}").text
    assert f'href="/study/hostile?token={TOKEN}"' in body


def test_a_foreign_host_header_is_refused_on_a_loopback_bind(hostile_study):
    response = client(hostile_study, base_url="http://attacker.example:8050").get("/")
    assert response.status_code == 400


@pytest.mark.parametrize("headers", [{"Origin": "http://attacker.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site", "Origin": "null"}, {"Sec-Fetch-Site": "same-site"}])
def test_a_cross_origin_post_is_refused(hostile_study, headers):
    assert client(hostile_study).post("/study/hostile/verify/output", headers=headers).status_code == 403


def test_a_post_from_the_dashboards_own_page_is_answered(hostile_study):
    headers = {"Sec-Fetch-Site": "same-origin", "Origin": "null"}  # what Chromium sends under no-referrer
    assert client(hostile_study).post("/study/hostile/verify/output", headers=headers).status_code == 200


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_the_dashboard_is_read_only(hostile_study, method):
    assert client(hostile_study).request(method, "/study/hostile").status_code == 405


def test_html_from_a_trail_and_results_is_escaped(hostile_study):
    body = client(hostile_study).get("/study/hostile").text
    assert "&lt;script&gt;alert(&#39;partner&#39;)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body and "&lt;b&gt;bold&lt;/b&gt;" in body
    assert "<img src=x" not in body and "<b>bold" not in body and "<i>too few" not in body


def test_the_partner_view_escapes_its_trail_and_sets_the_headers(tmp_path):
    from federated.audit import AuditTrail

    trail = AuditTrail(tmp_path / "trail.jsonl", actor="<script>x</script>")
    trail.append("task_refused", study="<s>", round=1, clause="<b>c</b>", reason="<img src=x>")
    response = TestClient(partner_app(PartnerSources(tmp_path / "trail.jsonl")), base_url=LOCAL).get("/")
    assert "&lt;script&gt;x&lt;/script&gt;" in response.text and "<img src=x>" not in response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_the_command_serves_on_loopback_and_prints_its_address(hostile_study):
    """`python -m federated.dashboard --output DIR --port 0` binds 127.0.0.1, says where, and answers there."""
    import subprocess
    import sys
    import urllib.request

    server = subprocess.Popen([sys.executable, "-m", "federated.dashboard", "--output", str(hostile_study.parent),
                               "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        with urllib.request.urlopen(line.split()[1] + "study/hostile") as response:
            assert response.status == 200 and response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    finally:
        server.terminate()
        server.wait()
