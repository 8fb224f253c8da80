"""The transform finisher on the controller kit: woken through the outbox from another
process, acting as its system principal."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
from transformkit import register_model, table

from modelyard.client.sdk import connect
from modelyard.runtime import Runtime
from modelyard.security.schemas import ListAudit
from modelyard.transform.service import Finisher
from testkit import make_settings

REPO = Path(__file__).resolve().parents[2]
WAIT = 60.0

# Another process on the same home and database: submit a transform, wait for its job to
# complete (its own jobs controller runs it), and exit without finalizing it.
_OTHER_PROCESS = """
import sys
from modelyard.client.sdk import connect

client = connect(home=sys.argv[1], db=sys.argv[2])
created = client.transforms.create(
    {"model": "churn", "dataset": "customers", "input_filter": ["a", "b", "c"]}
)
client.jobs.wait(created.job_id, logs=False)
client.close()
print(created.job_id)
"""


class WatchedFinisher(Finisher):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, resync_s=3600)  # only the outbox can wake it in time
        self.finalized: list[str] = []
        self.changed = threading.Condition()

    def reconcile(self, key: str) -> float | None:
        again = super().reconcile(key)
        with self.changed:
            if key in self._done:
                self.finalized.append(key)
            self.changed.notify_all()
        return again


def test_a_transform_completed_in_another_process_is_finalized_by_the_finisher_here(
    tmp_path: Path, db_url: str
) -> None:
    home = tmp_path / "home"
    client = connect(home=home, db=db_url)
    register_model(client, tmp_path)
    data = tmp_path / "customers.parquet"
    pq.write_table(table(20), data)
    client.datasets.register("customers", data)
    runtime = Runtime(make_settings(tmp_path, db_url=db_url))
    finisher = WatchedFinisher(runtime)
    assert finisher.start()  # holds the lease: the other process's finisher stands by
    try:
        other = subprocess.run(
            [sys.executable, "-c", _OTHER_PROCESS, str(home), db_url],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert other.returncode == 0, other.stderr
        job_id = other.stdout.split()[-1]
        with finisher.changed:
            assert finisher.changed.wait_for(lambda: job_id in finisher.finalized, WAIT)
        result = client.transforms.get(job_id)
        assert result.finalized and result.output_version == 1
        audit = runtime.execute(
            runtime.operations["security.list_audit"],
            ListAudit(operation="transforms.finalize"),
            runtime.principal(None),
            origin="test",
        )
        actors = {(e.actor, e.origin) for e in audit.events if e.target == f"transform:{job_id}"}
        assert actors == {("system:transforms.finisher", "controller:transforms.finisher")}
    finally:
        finisher.stop()
        runtime.close()
        client.close()
