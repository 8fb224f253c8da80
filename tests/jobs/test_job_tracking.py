"""A job creates its run and fills it: hyperparameters, inputs, code, metrics, usage,
model and outputs, final status; and the lineage edges from data to the job's model."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from jobkit import estimator, live_server  # noqa: F401 (live_server: a fixture)

from modelyard.client.sdk import Client

TRAIN = """
    import os
    from modelyard.jobs import log_metric

    for epoch in range(3):
        print(f"epoch={epoch} loss={1.0 / (epoch + 1):.3f}")
        log_metric("accuracy", 0.5 + epoch / 10, step=epoch)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "weights.txt"), "w") as fh:
        fh.write("w=1")
    with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt"), "w") as fh:
        fh.write("fine")
"""


def test_a_job_creates_and_fills_its_run(client: Client, tmp_path: Path) -> None:
    version = client.datasets.register("customers", pa.table({"x": [1.0, 2.0]})).version
    est = estimator(
        client,
        tmp_path,
        TRAIN,
        hyperparameters={"epochs": 3, "opt": "adam"},
        metric_definitions=[{"Name": "loss", "Regex": r"loss=([0-9.]+)"}],
        experiment="churn",
    )
    job = est.fit(inputs={"train": "customers"})
    assert job.state == "Completed" and job.run_id is not None
    run = client.tracking.get_run(job.run_id)
    assert run.experiment == "churn" and run.status == "FINISHED" and run.job_id == job.id
    assert run.params == {"epochs": "3", "opt": "adam"}
    assert run.code_digest == job.spec.source_digest
    assert [(i.dataset, i.version, i.context) for i in run.inputs] == [
        ("customers", version, "train")
    ]
    assert run.metrics["accuracy"].latest == pytest.approx(0.7)
    assert run.metrics["loss"].latest == pytest.approx(0.333)
    assert run.metrics["loss"].count == 3  # log lines without a step get steps 0, 1, 2
    assert run.metrics["usage.cpu_seconds"].latest >= 0
    assert run.metrics["usage.wall_seconds"].latest > 0
    history = client.tracking.metric_history(run.id, "loss")
    assert [p.step for p in history.points] == [0, 1, 2]

    graph = client.lineage("job", job.id)
    edges = {(e.source.split(":")[0], e.relation, e.target.split(":")[0]) for e in graph.edges}
    assert ("dataset_version", "input", "job") in edges
    assert ("artifact", "code", "job") in edges
    assert ("job", "tracked_as", "run") in edges
    assert ("job", "model", "artifact") in edges
    assert ("job", "output", "artifact") in edges
    assert job.model is not None
    assert f"artifact:{job.model.digest}" in {e.target for e in graph.edges}

    # downstream of the dataset version reaches the job's model through the job
    version_id = run.inputs[0].version_id
    down = client.lineage("dataset_version", version_id, direction="downstream")
    assert f"artifact:{job.model.digest}" in {n.type + ":" + n.id for n in down.nodes}
