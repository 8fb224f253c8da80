"""docs/serving.md "From a SageMaker model to an endpoint", run as a user would.

The training script, the unmodified SageMaker handler and the Python steps are taken
from the page itself, so the page cannot drift from what works: a script-mode job trains,
``models.register(job_id=..., entry_point=..., source_dir=...)`` packages the handler with
the job's model, the version is deployed and invoked, and the handler's predictions come
back. Issue 14 item 5.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "endpoints"))
from epkit import stop_all_replicas  # tests/endpoints is not a package

DOC = Path(__file__).parents[2] / "docs" / "serving.md"
SECTION = "## From a SageMaker model to an endpoint"


def _blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the section."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else None]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def _file_block(first_line: str) -> str:
    found = [body for lang, body in _blocks() if lang == "python" and body.startswith(first_line)]
    assert len(found) == 1, f"docs/serving.md: one block starting {first_line!r}"
    return found[0]


def test_the_documented_path_trains_registers_deploys_and_predicts(tmp_path: Path) -> None:
    work = tmp_path / "project"
    (work / "code").mkdir(parents=True)
    (work / "train.py").write_text(_file_block("# train.py"))
    (work / "code" / "inference.py").write_text(_file_block("# code/inference.py"))
    rng = random.Random(3)
    rows = ["a,b,label"]
    for _ in range(200):
        a, b = rng.random(), rng.random()
        rows.append(f"{a:.4f},{b:.4f},{int(a + b > 1.0)}")
    (work / "train.csv").write_text("\n".join(rows) + "\n")
    steps = [
        body
        for lang, body in _blocks()
        if lang == "python" and not body.startswith(("# train.py", "# code/"))
    ]
    assert len(steps) == 1
    home = tmp_path / "home"
    env = {**os.environ, "MODELYARD_HOME": str(home), "MODELYARD_WARM_START": "0"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", steps[0]],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        stop_all_replicas(home)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "python True" in lines
    assert "200 {'predictions': [1, 0]}" in lines, done.stdout
