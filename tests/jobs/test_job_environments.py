"""A source with requirements.txt runs in a per-requirements virtual environment, built
once (offline here: a wheel built by the test and a package already installed) and reused."""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

from jobkit import estimator

import modelyard as my


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, ``tinylib`` 0.1, written by hand."""
    files = {
        "tinylib/__init__.py": b"VALUE = 42\n",
        "tinylib-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinylib\nVersion: 0.1\n",
        "tinylib-0.1.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinylib-0.1.dist-info/RECORD,,")
    files["tinylib-0.1.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True)
    path = folder / "tinylib-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


SCRIPT = """
    import sys
    import psutil
    import tinylib
    print("tinylib", tinylib.VALUE)
    print("prefix", sys.prefix)
"""


def test_requirements_get_a_cached_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first, second = tmp_path / "one", tmp_path / "two"
    for folder in (first, second):
        _wheel(folder / "src" / "wheels")
    requirements = "./wheels/tinylib-0.1-py3-none-any.whl\npsutil\n"
    with my.connect(home=home) as client:
        runs = []
        for folder in (first, second):
            (folder / "src" / "requirements.txt").write_text(requirements)
            est = estimator(client, folder, SCRIPT)
            runs.append(est.fit(logs=False))
        envs = [p for p in (home / "envs").iterdir() if p.is_dir()]
        assert len(envs) == 1  # one environment for both jobs
        for job in runs:
            assert job.state == "Completed" and job.spec.requirements
            texts = [x.text for x in client.jobs.logs(job.id).lines]
            assert "tinylib 42" in texts and f"prefix {envs[0]}" in texts
        first_log = "\n".join(x.text for x in client.jobs.logs(runs[0].id).lines)
        second_log = "\n".join(x.text for x in client.jobs.logs(runs[1].id).lines)
        assert (
            "installing requirements.txt" in first_log
            and "Successfully installed tinylib" in first_log
        )
        assert "installing requirements.txt" not in second_log  # reused, not rebuilt
        # Without requirements the job runs in this interpreter's environment.
        (first / "src" / "requirements.txt").unlink()
        plain = estimator(client, first, "import sys\nprint(sys.prefix)\n").fit(logs=False)
        assert not plain.spec.requirements
        assert [x.text for x in client.jobs.logs(plain.id).lines] == [sys.prefix]
