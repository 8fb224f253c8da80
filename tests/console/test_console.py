"""The console's main paths in a real browser (Debian's Chromium through Playwright)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from consolekit import XSS_TAG, Console, seed, sign_in
from playwright.sync_api import expect

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.console import CSP
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from testkit import LiveServer, make_settings


def test_page_and_assets_carry_the_csp_and_the_api_still_works(console: Console) -> None:
    for path in ("/", "/console/app.js", "/console/vendor/uPlot.esm.js"):
        response = httpx.get(console.url + path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert "script-src 'self';" in CSP and "unsafe-inline" not in CSP
    page = httpx.get(console.url + "/").text
    assert "<script>" not in page.replace(" ", "")  # no inline script for the CSP to allow
    assert httpx.get(console.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(console.url + "/docs").status_code == 200
    # The static mount serves only the built files: no escape from its folder.
    assert httpx.get(console.url + "/console/../../config.py").status_code == 404
    assert httpx.get(console.url + "/console/missing.js").status_code == 404


def test_sign_in_needs_a_valid_token(console: Console, page: Any) -> None:
    page.goto(console.url + "/")
    page.fill("input[name=token]", "myt_tok-nothere_secret")
    page.click("button[type=submit]")
    alert = page.wait_for_selector("[role=alert]")
    assert "401" in alert.inner_text()
    assert page.locator("nav.top").count() == 0
    page.fill("input[name=token]", console.admin_token)
    page.click("button[type=submit]")
    assert "root · admin" in page.wait_for_selector("nav.top .who").inner_text()
    # The token lives in this tab's sessionStorage, never in a cookie.
    assert page.context.cookies() == []
    assert page.evaluate("sessionStorage.getItem('modelyard.token')") == console.admin_token
    page.click("button[name=sign-out]")
    page.wait_for_selector("input[name=token]")


def test_open_a_run_and_its_metric_charts(console: Console, page: Any) -> None:
    sign_in(page, console.url, console.admin_token)
    page.click("nav.top >> text=Experiments")
    page.click("a:text-is('churn')")
    page.wait_for_selector("table.runs tbody tr")
    assert page.locator("table.runs tbody tr").count() == 2
    page.click("table.runs a:text-is('deeper')")
    chart = page.wait_for_selector("figure.chart[data-series='1'] canvas")
    assert chart.bounding_box()["width"] > 100
    charts = page.locator("figure.chart")
    assert charts.count() == 2
    assert charts.first.get_attribute("data-points") == "200"
    assert "max_depth" in page.locator("table.kv").first.inner_text()


def test_runs_table_filters_with_the_sdk_query_language_and_sorts(
    console: Console, page: Any
) -> None:
    sign_in(page, console.url, console.admin_token)
    page.goto(console.url + "/#/experiments/churn")
    page.wait_for_selector("table.runs tbody tr")
    page.fill("input[name=filter]", 'params.max_depth = "4"')
    page.click("form.filter button[type=submit]")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    assert page.locator("table.runs tbody tr a").inner_text() == "baseline"
    # A bad filter shows the server's message and no rows.
    page.fill("input[name=filter]", "metrics.auc >>> 1")
    page.click("form.filter button[type=submit]")
    assert "400" in page.wait_for_selector("[role=alert]").inner_text()
    page.goto(console.url + "/#/experiments/churn")
    page.click("th.sortable button:has-text('auc')")
    page.wait_for_url("**order_by=metrics.auc")
    expect(page.locator("table.runs tbody tr a").first).to_have_text("baseline")
    page.click("th.sortable button:has-text('auc')")
    page.wait_for_url("**order_by=metrics.auc+desc")
    expect(page.locator("table.runs tbody tr a").first).to_have_text("deeper")


def test_compare_two_runs(console: Console, page: Any) -> None:
    sign_in(page, console.url, console.admin_token)
    page.goto(console.url + "/#/experiments/churn")
    page.wait_for_selector("table.runs tbody tr")
    compare = page.locator("button:has-text('Compare')")
    assert compare.is_disabled()
    for box in page.locator("table.runs input[type=checkbox]").all():
        box.check()
    compare.click()
    page.wait_for_selector("figure.chart[data-series='2'] canvas")
    assert page.locator("figure.chart[data-series='2']").count() == 2
    differing = page.locator("table.compare tr.differs th").all_inner_texts()
    assert sorted(t.split(" ")[0] for t in differing) == ["eta", "max_depth"]
    assert "objective" in page.locator("table.compare").inner_text()


def test_approve_a_model_version_with_a_reason(console: Console, page: Any) -> None:
    sign_in(page, console.url, console.admin_token)
    page.click("nav.top >> text=Overview")
    page.click("text=churn-model")  # from the pending approvals
    page.wait_for_selector("button[name=approve]")
    assert page.locator("button[name=reject]").is_disabled()  # a reason is required first
    page.fill("textarea[name=reason]", "AUC 0.9 on holdout, <b>signed off</b>")
    page.click("button[name=approve]")
    page.wait_for_selector("table.history td:has-text('PendingManualApproval → Approved')")
    assert "<b>signed off</b>" in page.locator("table.history").inner_text()
    assert page.locator("button[name=approve]").count() == 0
    version = console.admin.models.version("churn-model", 1)
    assert (version.status, version.status_by) == ("Approved", "root")
    # Move the production alias to it.
    page.fill("input[name=alias]", "production")
    page.click("button[name=move-alias]")
    page.wait_for_selector("table.history td:has-text('alias production')")
    assert console.admin.models.version("churn-model", "production").version == 1


def test_tags_are_rendered_as_text_never_as_markup(console: Console, page: Any) -> None:
    sign_in(page, console.url, console.admin_token)
    page.goto(console.url + f"/#/runs/{console.runs['deeper']}")
    cell = page.wait_for_selector(f"td:text-is('{XSS_TAG}')")
    assert cell.inner_text() == XSS_TAG
    assert page.locator("main img").count() == 0
    page.wait_for_timeout(300)  # time for an injected onerror to fire (the page fixture fails)


def test_viewer_sees_no_approve_button_and_the_api_refuses(console: Console, page: Any) -> None:
    sign_in(page, console.url, console.viewer_token)
    assert "vera · viewer" in page.locator("nav.top .who").inner_text()
    assert page.locator("nav.top >> text=Audit").count() == 0
    page.goto(console.url + "/#/models/churn-model?version=1")
    page.wait_for_selector("text=churn scoring")  # the version's card has loaded
    assert page.locator("button[name=approve]").count() == 0
    assert page.locator("button[name=move-alias]").count() == 0
    # The button's absence is cosmetic: the API refuses the call itself.
    status = page.evaluate(
        """async (token) => (await fetch('/api/v1/models/churn-model/versions/1/approve', {
            method: 'POST', headers: {Authorization: 'Bearer ' + token,
            'Content-Type': 'application/json'}, body: '{"reason": "sneaky"}'})).status""",
        console.viewer_token,
    )
    assert status == 403
    assert console.admin.models.version("churn-model", 1).status == "PendingManualApproval"


@pytest.mark.parametrize("path", ["#/datasets", "#/jobs", "#/audit", "#/lineage/run/{run}"])
def test_other_pages_render(console: Console, page: Any, path: str) -> None:
    sign_in(page, console.url, console.admin_token)
    page.goto(console.url + "/" + path.format(run=console.runs["deeper"]))
    page.wait_for_selector("section.card")
    page.wait_for_load_state("networkidle")
    assert page.locator("[role=alert]").count() == 0
    if "lineage" in path:
        assert page.locator("svg.lineage g.node").count() == 2


@pytest.fixture
def open_server(tmp_path: Any, chromium_path: str) -> Iterator[tuple[str, Client]]:
    """A loopback server without auth: no token needed, so only the origin check stands
    between another site's form and a state change."""
    runtime = Runtime(make_settings(tmp_path))
    admin = Client(EmbeddedTransport(runtime, local_principal()))
    seed(admin)
    with LiveServer(runtime) as server:
        yield server.url, admin
    admin.close()
    runtime.close()


def test_another_sites_form_cannot_approve(open_server: tuple[str, Client], page: Any) -> None:
    url, admin = open_server
    target = f"{url}/api/v1/models/churn-model/versions/1/approve"
    evil = f"""<!doctype html><form id=f method=post action="{target}"></form>
        <script>document.getElementById('f').submit()</script>"""
    page.route(
        "http://evil.test/**", lambda route: route.fulfill(body=evil, content_type="text/html")
    )
    with page.expect_navigation(url=target):
        page.goto("http://evil.test/")
    assert "cross_origin_refused" in page.content()
    assert admin.models.version("churn-model", 1).status == "PendingManualApproval"
    # Without auth the console itself needs no sign-in and its own requests pass.
    page.goto(url + "/#/models/churn-model?version=1")
    assert "local · admin" in page.wait_for_selector("nav.top .who").inner_text()
    page.click("button[name=approve]")
    page.wait_for_selector("table.history td:has-text('PendingManualApproval → Approved')")


def test_dataset_profile_and_diff_between_versions(console: Console, page: Any) -> None:
    import pyarrow as pa

    rows = range(400)
    base = pa.table({"spend": [float(i % 50) for i in rows], "plan": ["free", "pro"] * 200})
    drifted = pa.table({"spend": [float(i % 50) + 40 for i in rows], "plan": ["pro"] * 400})
    console.admin.datasets.register("customers", base)
    console.admin.datasets.register("customers", drifted)
    sign_in(page, console.url, console.admin_token)
    page.goto(console.url + "/#/datasets/customers")
    expect(page.locator(".profile svg.hist")).to_have_count(1)  # spend is numeric
    page.click("button[name=diff]")
    table = page.locator(".diff table")
    expect(table.locator("tr:has(td:text-is('spend')) .badge")).to_have_text("shifted")
    expect(table.locator("tr:has(td:text-is('plan')) .badge")).to_have_text("shifted")
    assert page.locator(".diff svg.shares").count() == 2
    page.goto(console.url + "/#/datasets/customers?version=1")
    expect(page.locator("section.card h2:text-is('customers v1')")).to_be_visible()
    assert page.locator("button[name=diff]").count() == 0  # nothing before v1
