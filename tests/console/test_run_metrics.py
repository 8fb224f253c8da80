"""A run's metrics on its page: every metric in a table (latest, min, max, steps), and a
chart only for a history of more than one point (a single value is drawn as nothing)."""

from __future__ import annotations

from typing import Any

from consolekit import Console, sign_in


def test_single_values_are_read_in_the_table_and_only_histories_are_charted(
    console: Console, page: Any
) -> None:
    c = console.admin
    run = c.tracking.create_run("churn", name="final-figures")
    points = [
        {"key": "accuracy", "value": 0.9731, "step": 0},
        {"key": "usage.cpu_seconds", "value": 12.5, "step": 0},
    ]
    points += [{"key": "loss", "value": 1 / (1 + s), "step": s} for s in range(5)]
    c.tracking.log_batch(run.id, metrics=points)
    c.tracking.end_run(run.id)

    sign_in(page, console.url, console.admin_token)
    page.goto(f"{console.url}/#/runs/{run.id}")
    page.wait_for_selector("table.metrics tbody tr")
    rows = page.locator("table.metrics tbody tr")
    cells = [rows.nth(i).locator("th, td").all_inner_texts() for i in range(rows.count())]
    assert cells == [
        ["accuracy", "0.9731", "0.9731", "0.9731", "1"],
        ["loss", "0.2000", "0.2000", "1", "5"],  # latest is the last step's value
        ["usage.cpu_seconds", "12.50", "12.50", "12.50", "1"],
    ]
    assert page.locator("table.metrics thead th").all_inner_texts() == [
        "metric",
        "latest",
        "min",
        "max",
        "steps",
    ]
    page.wait_for_selector("figure.chart canvas")
    page.wait_for_load_state("networkidle")
    charts = page.locator("figure.chart")
    assert charts.count() == 1  # loss only: no chart of a single dot
    assert charts.first.locator("figcaption").inner_text() == "loss"
    assert charts.first.get_attribute("data-points") == "5"


def test_a_run_with_only_single_values_has_a_table_and_no_chart(
    console: Console, page: Any
) -> None:
    c = console.admin
    run = c.tracking.create_run("churn", name="one-shot")
    c.tracking.log_batch(run.id, metrics=[{"key": "auc", "value": 0.81, "step": 3}])
    sign_in(page, console.url, console.admin_token)
    page.goto(f"{console.url}/#/runs/{run.id}")
    row = page.wait_for_selector("table.metrics tbody tr")
    assert row.inner_text().split("\t") == ["auc", "0.8100", "0.8100", "0.8100", "1"]
    assert row.query_selector("td.num").get_attribute("title") == "at step 3"
    page.wait_for_load_state("networkidle")
    assert page.locator("figure.chart").count() == 0
    assert page.locator("[role=alert]").count() == 0
