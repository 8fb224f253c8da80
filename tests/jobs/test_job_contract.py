"""The container contract without running anything: the tree, the SM_* variables,
inputs in File and FastFile mode, deterministic archives, and refused archives."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from modelyard.compute.archive import SOURCE_EXCLUDES, extract_tar_gz, list_tar_gz, write_tar_gz
from modelyard.core.artifacts import LocalArtifactStore
from modelyard.data.schemas import StoredFile
from modelyard.errors import InvalidInput
from modelyard.jobs import contract, ledger
from modelyard.jobs.schemas import JobSpec, ResolvedChannel, Resources, RetryPolicy


def _spec(**overrides: object) -> JobSpec:
    values: dict[str, object] = {
        "kind": "training",
        "entry_point": "pkg/train.py",
        "source_digest": "0" * 64,
        "algorithm": None,
        "requirements": False,
        "hyperparameters": {"max_depth": 5, "eta": 0.3, "objective": "binary:logistic", "v": True},
        "arguments": ["--extra", "1"],
        "environment": {"MY_FLAG": "on"},
        "inputs": [],
        "resources": Resources(cpus=2, gpus=0),
        "backend": "local",
        "max_runtime_s": 60,
        "retry": RetryPolicy(),
        "metric_definitions": [],
    }
    values.update(overrides)
    return JobSpec.model_validate(values)


def test_tree_config_files_and_environment(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    digest = store.put_bytes(b"a,b\n1,2\n").digest
    channel = ResolvedChannel(
        name="train",
        mode="File",
        content_type="text/csv",
        source="files",
        files=[StoredFile(path="part/one.csv", digest=digest, size=8)],
    )
    spec = _spec(inputs=[channel])
    layout = contract.Layout(tmp_path / "ml")
    contract.create_tree(layout, tmp_path / "ckpt")
    contract.materialize_inputs(layout, spec.inputs, store)
    contract.write_config(layout, spec, ["algo-1"], "algo-1")

    for folder in ("code", "input/config", "input/data", "model", "output/data"):
        assert (layout.root / folder).is_dir(), folder
    assert layout.checkpoints.is_symlink()
    assert layout.checkpoints.resolve() == (tmp_path / "ckpt").resolve()
    copied = layout.channel("train") / "part" / "one.csv"
    assert copied.read_bytes() == b"a,b\n1,2\n"
    assert copied.stat().st_ino == store.local_path(digest).stat().st_ino  # hard link, no copy

    config = layout.config
    assert json.loads((config / "hyperparameters.json").read_text()) == {
        "max_depth": "5",
        "eta": "0.3",
        "objective": "binary:logistic",
        "v": "True",
    }
    assert json.loads((config / "inputdataconfig.json").read_text()) == {
        "train": {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
            "ContentType": "text/csv",
        }
    }
    assert json.loads((config / "resourceconfig.json").read_text())["hosts"] == ["algo-1"]

    base = {"PATH": "/bin", "MODELYARD_TOKEN": "secret", "SM_STALE": "x", "PYTHONPATH": "/lib"}
    env = contract.environment(
        layout,
        spec,
        job_id="job-1",
        job_name="n",
        attempt=2,
        hosts=["algo-1"],
        current_host="algo-1",
        base=base,
    )
    assert "MODELYARD_TOKEN" not in env and "SM_STALE" not in env
    assert env["PATH"] == "/bin" and env["MY_FLAG"] == "on"
    assert env["SM_MODEL_DIR"] == str(layout.model)
    assert env["SM_CHANNELS"] == '["train"]'
    assert env["SM_CHANNEL_TRAIN"] == str(layout.channel("train"))
    assert env["SM_HP_MAX_DEPTH"] == "5" and env["SM_HP_OBJECTIVE"] == "binary:logistic"
    assert env["SM_HP_V"] == "true"  # non-strings are JSON, as the toolkit writes them
    assert json.loads(env["SM_HPS"]) == spec.hyperparameters
    assert json.loads(env["SM_USER_ARGS"]) == [
        "--max_depth", "5", "--eta", "0.3", "--objective", "binary:logistic", "--v", "True",
        "--extra", "1",
    ]  # fmt: skip
    assert env["SM_NUM_CPUS"] == "2" and env["SM_NUM_GPUS"] == "0"
    assert env["SM_HOSTS"] == '["algo-1"]' and env["SM_CURRENT_HOST"] == "algo-1"
    assert env["SM_OUTPUT_DATA_DIR"] == str(layout.output_data)
    assert env["SM_OUTPUT_INTERMEDIATE_DIR"] == str(layout.intermediate)
    assert env["SM_INPUT_CONFIG_DIR"] == str(layout.config)
    assert env["SM_CHECKPOINT_DIR"] == str(layout.checkpoints)
    assert env["SM_MODULE_NAME"] == "train" and env["SM_USER_ENTRY_POINT"] == "pkg/train.py"
    training = json.loads(env["SM_TRAINING_ENV"])
    assert training["channel_input_dirs"] == {"train": str(layout.channel("train"))}
    assert training["num_cpus"] == 2 and training["job_name"] == "n"
    assert env["MODELYARD_JOB_ID"] == "job-1" and env["MODELYARD_JOB_ATTEMPT"] == "2"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONPATH"] == os.pathsep.join([str(layout.code), "/lib"])

    argv = contract.command(spec, layout, "/usr/bin/python3")
    assert argv[:2] == ["/usr/bin/python3", str((layout.code / "pkg" / "train.py").resolve())]
    assert argv[2:] == json.loads(env["SM_USER_ARGS"])
    builtin = contract.command(
        _spec(entry_point=None, source_digest=None, algorithm="xgboost"), layout, "py"
    )
    assert builtin[:3] == ["py", "-m", "modelyard.algorithms.xgboost"]


def test_fast_file_mode_links_without_copying(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    digest = store.put_bytes(b"big data").digest
    channel = ResolvedChannel(
        name="big",
        mode="FastFile",
        content_type=None,
        source=f"artifact:{digest}",
        files=[StoredFile(path="data.bin", digest=digest, size=8)],
    )
    layout = contract.Layout(tmp_path / "ml")
    contract.create_tree(layout, tmp_path / "ckpt")
    contract.materialize_inputs(layout, [channel], store)
    link = layout.channel("big") / "data.bin"
    assert link.is_symlink() and link.resolve() == store.local_path(digest)
    assert link.read_bytes() == b"big data"


def test_harvest_is_deterministic_and_skips_failure(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    digests = []
    for run in ("a", "b"):
        layout = contract.Layout(tmp_path / run)
        contract.create_tree(layout, tmp_path / "ckpt")
        (layout.model / "sub").mkdir()
        (layout.model / "sub" / "w.bin").write_bytes(b"\x00\x01")
        (layout.model / "config.json").write_text("{}")
        (layout.output_data / "r.txt").write_text("r")
        layout.failure.write_text("not an output")
        model, outputs = contract.harvest(layout, store, tmp_path)
        assert model is not None and model.files == ["config.json", "sub/w.bin"]
        assert [o.path for o in outputs] == ["data/r.txt"]
        digests.append(model.digest)
    assert digests[0] == digests[1]  # same files, same bytes: stored once
    empty = contract.Layout(tmp_path / "empty")
    contract.create_tree(empty, tmp_path / "ckpt")
    assert contract.harvest(empty, store, tmp_path) == (None, [])
    assert contract.read_failure(empty) is None
    empty.failure.write_text("x" * 5000)
    assert contract.read_failure(empty) == "x" * 1024


def test_source_archive_excludes_caches_and_refuses_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "__pycache__").mkdir(parents=True)
    (src / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"x")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")
    (src / "train.py").write_text("print(1)\n")
    (src / "stale.pyc").write_bytes(b"x")
    archive = tmp_path / "src.tar.gz"
    assert write_tar_gz(src, archive, excludes=SOURCE_EXCLUDES) == ["train.py"]
    assert list_tar_gz(archive) == {"train.py": True}
    (src / "link.py").symlink_to(src / "train.py")
    with pytest.raises(InvalidInput, match="symbolic link"):
        write_tar_gz(src, tmp_path / "other.tar.gz", excludes=SOURCE_EXCLUDES)


@pytest.mark.parametrize(
    ("name", "kind", "problem"),
    [
        ("../evil.py", tarfile.REGTYPE, "outside|\\.\\."),
        ("/etc/passwd", tarfile.REGTYPE, "absolute|relative"),
        ("dev", tarfile.CHRTYPE, "not a file or folder"),
        ("link", tarfile.SYMTYPE, ".."),
    ],
)
def test_unsafe_source_archives_are_refused(
    tmp_path: Path, name: str, kind: bytes, problem: str
) -> None:
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "../../etc/passwd"
        data = b"x" if kind == tarfile.REGTYPE else b""
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)
    with pytest.raises(InvalidInput, match=problem):
        list_tar_gz(archive)
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(InvalidInput, match="not a readable"):
        list_tar_gz(tmp_path / "junk.tar.gz")


def test_channel_distribution_is_written_as_s3_distribution_type() -> None:
    files = [StoredFile(path="a.csv", digest="0" * 64, size=1)]
    channels = [
        ResolvedChannel(name=n, mode="File", content_type=None, source="files", files=files)
        for n in ("train", "validation")
    ]
    channels[0] = channels[0].model_copy(update={"distribution": "ShardedByS3Key"})
    config = contract.input_data_config(channels)
    assert config["train"]["S3DistributionType"] == "ShardedByS3Key"
    assert config["validation"]["S3DistributionType"] == "FullyReplicated"


def test_job_usage_counts_every_instance() -> None:
    one = _spec(resources=Resources(cpus=2, memory_mb=512, gpus=1))
    assert ledger.job_usage(one) == {"cpus": 2, "memory_mb": 512, "gpus": 1}
    three = _spec(resources=Resources(cpus=2, memory_mb=512, gpus=1, instance_count=3))
    assert ledger.job_usage(three) == {"cpus": 6, "memory_mb": 1536, "gpus": 3}
    assert ledger.job_usage(_spec(resources=Resources(instance_count=4)))["memory_mb"] == 0


def test_an_absolute_link_inside_a_folder_is_refused_before_extraction(tmp_path: Path) -> None:
    """``a/x -> /etc/passwd`` once passed as ``a//etc/passwd`` and then failed with a 500
    in extraction (tarfile's AbsoluteLinkError)."""
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        folder = tarfile.TarInfo("a")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        link = tarfile.TarInfo("a/x")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(InvalidInput, match=r"'a/x' links to the absolute path '/etc/passwd'"):
        list_tar_gz(archive)
    dest = tmp_path / "out"
    with pytest.raises(InvalidInput, match="may not be extracted"):
        extract_tar_gz(archive, dest)  # a caller that skipped the listing gets a 400 too
    assert not (dest / "a" / "x").exists()


def test_an_archive_that_unpacks_past_the_size_limit_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("one.bin", "two.bin"):
            info = tarfile.TarInfo(name)
            info.size = 600
            tar.addfile(info, io.BytesIO(b"\0" * 600))
    assert list_tar_gz(archive, max_total_size=1200) == {"one.bin": True, "two.bin": True}
    with pytest.raises(InvalidInput, match=r"at least 1200 bytes.*'two\.bin'.*limit is 1000 bytes"):
        list_tar_gz(archive, max_total_size=1000)
