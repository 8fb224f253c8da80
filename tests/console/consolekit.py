"""Helpers for the console's browser tests (imported as ``from consolekit import …``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.client.sdk import Client
from modelyard.runtime import Runtime

XSS_TAG = "<img src=x onerror=alert(1)>"


@dataclass
class Console:
    """A running server with auth, seeded data, and tokens for an admin and a viewer."""

    url: str
    runtime: Runtime
    admin: Client
    admin_token: str
    viewer_token: str
    runs: dict[str, str]  # run name -> id


def seed(admin: Client) -> dict[str, str]:
    """Two ended runs with params and 200-step metric histories (one tagged with markup)
    and a model version pending approval, registered from the second run."""
    runs: dict[str, str] = {}
    for name, depth, eta, slope in (("baseline", 4, "0.1", 0.002), ("deeper", 8, "0.05", 0.003)):
        run = admin.tracking.create_run(
            "churn",
            name=name,
            params={"max_depth": depth, "eta": eta, "objective": "binary:logistic"},
            tags={"note": XSS_TAG} if name == "deeper" else {"team": "growth"},
        )
        points = [{"key": "auc", "value": 0.5 + slope * s, "step": s} for s in range(200)]
        points += [{"key": "loss", "value": 1 / (1 + s * slope), "step": s} for s in range(200)]
        admin.tracking.log_batch(run.id, metrics=points)
        admin.tracking.end_run(run.id)
        runs[name] = run.id
    digest = admin.artifacts.upload(b"model bytes").digest
    admin.models.register(
        "churn-model",
        artifact=digest,
        flavor="sklearn",
        run_id=runs["deeper"],
        card={"intended_use": "churn scoring"},
    )
    return runs


def sign_in(page: Any, url: str, token: str) -> None:
    """Open the console and sign in with ``token`` through its form."""
    page.goto(url + "/")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_selector("nav.top")
