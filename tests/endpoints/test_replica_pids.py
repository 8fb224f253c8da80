"""A pid read from a replica's files is acted on only while it still names the process
that ran when the file was written (pids are reused once a process has ended)."""

from __future__ import annotations

import subprocess
import sys
import time

from modelyard.endpoints.processes import started_by


def test_a_pid_names_its_process_only_if_it_ran_when_the_file_was_written() -> None:
    written_long_ago = time.time() - 60
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert started_by(proc.pid, time.time())
        # The same number read from a file written before this process existed: a reuse.
        assert not started_by(proc.pid, written_long_ago)
    finally:
        proc.kill()
        proc.wait()
    assert not started_by(proc.pid, time.time())  # gone
