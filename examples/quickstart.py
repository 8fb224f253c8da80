"""The main job: the modelyard lifecycle that exists so far, end to end.

Run with ``make quickstart``. It registers a dataset, profiles it, registers a second
version that has drifted, diffs the two, gates on data-quality rules, trains the built-in
XGBoost (the job tracks itself as a run), registers the model, evaluates it in a run of
its own, approves it, points the ``production`` alias at it, shows its lineage and
prints the audit trail. State goes to ``MODELYARD_HOME`` if set, else to a fresh temporary folder.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time

import pyarrow as pa
from rich.console import Console
from rich.table import Table

import modelyard as my
from modelyard.flavors import load_model

console = Console()


def make_customers(n: int, *, seed: int, drift: float = 0.0, broken_emails: int = 0) -> pa.Table:
    """A synthetic churn dataset: generated, so the quickstart needs no download."""
    rng = random.Random(seed)
    plans = ["free", "pro", "team", "enterprise"]
    rows = {
        "customer_id": list(range(n)),
        "tenure_months": [rng.randint(0, 72) for _ in range(n)],
        "monthly_spend": [round(max(0.0, rng.gauss(40 + drift, 15)), 2) for _ in range(n)],
        "plan": [rng.choices(plans, weights=[5, 3, 2, 1])[0] for _ in range(n)],
        "email": [f"c{i}@example.com" for i in range(n)],
    }
    # Churn depends on tenure and spend (plus noise), so a model has something to learn.
    rows["churned"] = [
        rng.random() < (0.55 if t < 12 else 0.08) + (0.2 if s > 60 else 0.0)
        for t, s in zip(rows["tenure_months"], rows["monthly_spend"], strict=True)
    ]
    for i in rng.sample(range(n), broken_emails):
        rows["email"][i] = None
    return pa.table(rows)


def main() -> int:
    started = time.perf_counter()
    home = os.environ.get("MODELYARD_HOME") or tempfile.mkdtemp(prefix="modelyard-quickstart-")
    console.rule("[bold]modelyard quickstart")
    console.print(f"state in {home} (embedded: SQLite + local artifact folder)")
    client = my.connect(home=home)

    console.rule("1. register a dataset")
    v1 = client.datasets.register(
        "customers", make_customers(50_000, seed=1), description="monthly customer snapshot"
    )
    console.print(
        f"customers v{v1.version}: {v1.row_count} rows, {len(v1.columns)} columns, "
        f"{v1.size_bytes} bytes, file digest {v1.files[0].digest[:12]}…"
    )

    console.rule("2. its profile")
    assert v1.profile is not None
    table = Table("column", "type", "missing", "distinct≈", "mean", "p50", "top value")
    for c in v1.profile.columns:
        top = c.top_values[0].value if c.top_values else ""
        table.add_row(
            c.name,
            c.type,
            str(c.missing),
            str(c.distinct_estimate),
            "" if c.mean is None else f"{c.mean:.2f}",
            "" if not c.quantiles else f"{c.quantiles.get('p50', float('nan')):.2f}",
            str(top),
        )
    console.print(table)

    console.rule("3. a new version arrives: diff it against the last one")
    v2 = client.datasets.register(
        "customers", make_customers(52_000, seed=2, drift=25.0, broken_emails=130)
    )
    d = client.datasets.diff("customers", v1.version, v2.version)
    console.print(f"rows {d.row_count_a} -> {d.row_count_b} ({d.row_count_delta:+d})")
    for col in d.columns:
        flag = "[red]SHIFTED[/red]" if col.shifted else "ok"
        measure = f"PSI={col.psi:.3f}" if col.psi is not None else f"TVD={col.tvd or 0:.3f}"
        console.print(f"  {col.name:15} {flag:>20}  {measure}")

    console.rule("4. data-quality gate")
    rules = [
        {"type": "completeness", "column": "email", "name": "every customer has an email"},
        {"type": "uniqueness", "columns": ["customer_id"]},
        {"type": "range", "column": "tenure_months", "min": 0, "max": 120},
        {
            "type": "allowed_values",
            "column": "plan",
            "values": ["free", "pro", "team", "enterprise"],
        },
        {"type": "regex", "column": "email", "pattern": r"[^@]+@[^@]+\.[a-z]+"},
        {"type": "sql", "name": "spend is not negative", "predicate": "monthly_spend >= 0"},
    ]
    for version in (v1.version, v2.version):
        report = client.datasets.check("customers", rules, version=version)
        status = "[green]PASSED[/green]" if report.passed else "[red]FAILED[/red]"
        console.print(f"v{version}: {status} (report {report.id})")
        for r in report.report.results:
            mark = "✓" if r.passed else "✗"
            console.print(f"   {mark} {r.name}: {r.failing_rows} failing rows")
    try:
        report.raise_if_failed()
    except my.Conflict as exc:
        console.print(f"gate stops the pipeline for v{v2.version}: {exc.message}")

    console.rule("5. train the built-in XGBoost on the version that passed")
    table_v1 = client.datasets.to_arrow("customers", v1.version)
    plans = {"free": 0, "pro": 1, "team": 2, "enterprise": 3}
    features = pa.table(
        {
            "tenure_months": table_v1["tenure_months"],
            "monthly_spend": table_v1["monthly_spend"],
            "plan": pa.array([plans[p] for p in table_v1["plan"].to_pylist()], pa.int32()),
            "churned": pa.array([int(c) for c in table_v1["churned"].to_pylist()], pa.int8()),
        }
    )
    split = int(features.num_rows * 0.8)
    train = client.datasets.register("churn-train", features.slice(0, split), profile=False)
    valid = client.datasets.register("churn-validation", features.slice(split), profile=False)
    estimator = my.Estimator(
        algorithm="xgboost",
        hyperparameters={
            "objective": "binary:logistic",
            "num_round": 60,
            "max_depth": 4,
            "eval_metric": "auc,logloss",
            "label": "churned",
        },
        client=client,
    )
    job = estimator.fit(
        {
            "train": f"churn-train:{train.version}",
            "validation": f"churn-validation:{valid.version}",
        },
        logs=False,
    )
    console.print(f"job {job.id}: {job.state} after {len(job.attempt_list)} attempt(s)")
    for name, value in sorted(job.final_metrics.items()):
        console.print(f"   {name} = {value:.4f}")
    if job.model is not None:
        console.print(f"model artifact {job.model.digest[:12]}… ({job.model.size} bytes)")

    assert job.model is not None and job.run_id is not None

    console.rule("6. the job's tracked run")
    run = client.tracking.get_run(job.run_id)
    console.print(
        f"run {run.id} in experiment {run.experiment!r}: {run.status}, "
        f"{len(run.params)} params, code {run.code_digest or 'built-in'}"
    )
    console.print(
        "   inputs: " + ", ".join(f"{i.dataset} v{i.version} ({i.context})" for i in run.inputs)
    )
    for key, summary in run.metrics.items():
        console.print(f"   {key:28} latest={summary.latest:.4f} ({summary.count} points)")

    console.rule("7. register the model, evaluate it in a run of our own, approve it")
    model_name = "churn"
    version = client.models.register(
        model_name,
        run_id=run.id,
        job_id=job.id,
        metrics={k: v for k, v in job.final_metrics.items() if k.startswith("validation")},
        card={
            "intended_use": "rank customers by churn risk for the retention team",
            "training_data": f"churn-train v{train.version}",
            "evaluation": f"churn-validation v{valid.version}",
            "limitations": "synthetic data; plan is label-encoded",
        },
        description="built-in XGBoost on tenure, spend and plan",
    )
    console.print(f"registered {model_name} v{version.version}: {version.status}")
    console.print(
        f"   flavor {version.flavor}, signature "
        + ", ".join(f"{t.name}:{t.type}" for t in version.signature.inputs)
        + " -> "
        + ", ".join(f"{t.name}:{t.type}" for t in version.signature.outputs)
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(client.models.download(model_name, version.version, tmp))
        columns = ["tenure_months", "monthly_spend", "plan"]
        validation = client.datasets.to_arrow("churn-validation", valid.version)
        matrix = [validation[c].to_pylist() for c in columns]
        rows = [list(r) for r in zip(*matrix, strict=True)]
        scores = [float(x) for x in model.predict(rows)]
    labels = validation["churned"].to_pylist()
    with client.tracking.start_run(
        "churn-evaluation",
        name=f"threshold-sweep-v{version.version}",
        params={"model": f"{model_name}:{version.version}"},
        inputs=[("churn-validation", valid.version, "evaluation")],
        notes="Precision and recall of the registered model at each decision threshold.",
    ) as evaluation:
        for step, threshold in enumerate(t / 20 for t in range(1, 20)):
            hits = [(s >= threshold, bool(y)) for s, y in zip(scores, labels, strict=True)]
            tp = sum(1 for p, y in hits if p and y)
            predicted = sum(1 for p, _ in hits if p)
            actual = sum(1 for _, y in hits if y)
            evaluation.log_metrics(
                {
                    "threshold": threshold,
                    "precision": tp / predicted if predicted else 1.0,
                    "recall": tp / actual if actual else 0.0,
                },
                step=step,
            )
    best = client.tracking.get_run(evaluation.id).metrics
    console.print(
        f"evaluation run {evaluation.id}: precision max {best['precision'].max:.3f}, "
        f"recall max {best['recall'].max:.3f}"
    )
    auc = job.final_metrics["validation:auc"]
    if auc < 0.7:
        client.models.reject(model_name, version.version, reason=f"validation AUC {auc:.3f} < 0.7")
        console.print(f"[red]{model_name} v{version.version} rejected: AUC {auc:.3f}[/red]")
        return 1
    approved = client.models.approve(
        model_name, version.version, reason=f"validation AUC {auc:.3f} clears the 0.7 bar"
    )
    client.models.set_alias(model_name, "production", version.version)
    console.print(f"{model_name} v{approved.version}: {approved.status} by {approved.status_by}")
    for h in client.models.history(model_name).entries:
        what = f"alias {h.alias}" if h.alias else h.kind
        console.print(
            f"   {h.time:%H:%M:%S} {what:18} {h.old or '-':>22} -> {h.new or '-':22} {h.actor}"
        )
    graph = client.lineage("model_version", approved.id, direction="upstream")
    console.print(
        f"lineage of {model_name} v{approved.version}: "
        + ", ".join(sorted({n.label for n in graph.nodes}))
    )

    console.rule("8. deploy the approved model behind an endpoint and invoke it")
    endpoint = client.endpoints.deploy(model_name, "production", "churn")
    client.endpoints.wait("churn", timeout=300)
    customers = [[3, 72.5, 0], [40, 35.0, 2], [12, 48.0, 1]]  # tenure, spend, plan
    answer = client.endpoints.invoke("churn", json.dumps(customers))
    answer.raise_for_status()
    console.print(
        f"endpoint {endpoint.name}: variant {answer.headers.get('x-modelyard-variant')}, "
        f"model {answer.headers.get('x-modelyard-model-version')}"
    )
    for row, score in zip(customers, answer.json()["predictions"], strict=True):
        console.print(
            f"   tenure={row[0]:>2} spend={row[1]:>5} plan={row[2]} -> churn risk {score:.3f}"
        )

    console.rule("9. batch transform: score the whole validation set as a job")
    transformer = my.Transformer(model_name, version="production", client=client)
    scored = transformer.transform(
        "churn-validation",
        version=valid.version,
        join_source="Input",
        input_filter=columns,
        logs=False,
    )
    console.print(
        f"transform job {scored.job_id}: {scored.state}, {scored.rows_in} rows in, "
        f"{scored.rows_out} out, {scored.error_count} errors -> dataset "
        f"{scored.output_dataset} v{scored.output_version}"
    )
    client.endpoints.delete("churn", wait=True)  # stop its replica processes
    console.print("endpoint churn deleted (its replica processes stopped)")

    console.rule("10. the audit trail")
    events = client.audit.list(limit=20).events
    for e in reversed(events):
        console.print(
            f"  {e.time:%H:%M:%S} {e.actor:6} {e.operation:28} {e.target or '':28} {e.result}"
        )

    client.close()
    console.rule(f"done in {time.perf_counter() - started:.1f} s")
    print(  # plain print: a URL must not be wrapped
        f"See it in the console: modelyard up --home {home}, then open\n"
        f"   http://127.0.0.1:8765/#/runs/{run.id}  (the training run)\n"
        f"   http://127.0.0.1:8765/#/compare?runs={run.id},{evaluation.id}\n"
        f"   http://127.0.0.1:8765/#/models/{model_name}?version={approved.version}\n"
        f"   http://127.0.0.1:8765/#/lineage/model_version/{approved.id}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
