"""The container contract: an attempt's working tree laid out like SageMaker's ``/opt/ml``.

::

    <root>/                              SM_* paths point here (SageMaker: /opt/ml)
      code/                              the job's source (SM_MODULE_DIR), the working dir
      input/config/hyperparameters.json  {name: value as a string}
      input/config/inputdataconfig.json  {channel: {TrainingInputMode, ContentType, …}}
      input/config/resourceconfig.json   {current_host, hosts, network_interface_name}
      input/data/<channel>/              the channel's files (File and FastFile modes)
      input/data/<channel>.manifest      FastFile on a remote artifact store: object URLs
      model/                             SM_MODEL_DIR: becomes the model artifact
      output/                            SM_OUTPUT_DIR: every file becomes an output artifact
      output/data/                       SM_OUTPUT_DATA_DIR
      output/intermediate/               SM_OUTPUT_INTERMEDIATE_DIR
      output/failure                     written by the job: the failure reason shown
      checkpoints/                       SM_CHECKPOINT_DIR: kept across attempts of a job

Environment variables follow the SageMaker training toolkit (``SM_MODEL_DIR``,
``SM_CHANNELS``, ``SM_CHANNEL_<NAME>``, ``SM_HPS``, ``SM_HP_<NAME>``, ``SM_HOSTS``…), and
hyperparameters are also passed as ``--name value`` arguments. Everything here is plain
functions of the job spec and a directory, so every backend builds the same tree.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.compute.archive import extract_tar_gz, walk, write_tar_gz
from modelyard.compute.backends.base import FAILURE_LIMIT as FAILURE_LIMIT
from modelyard.core.artifacts import ArtifactStore
from modelyard.core.paths import safe_join
from modelyard.jobs import builtins
from modelyard.jobs.schemas import JobSpec, ModelArtifact, OutputFile, Program, ResolvedChannel

NETWORK_INTERFACE = "lo"
_STRIPPED_ENV_PREFIXES = ("MODELYARD_", "SM_")


@dataclass(frozen=True)
class Layout:
    """The paths of one attempt's tree below ``root``."""

    root: Path

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def config(self) -> Path:
        return self.root / "input" / "config"

    @property
    def data(self) -> Path:
        return self.root / "input" / "data"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def output_data(self) -> Path:
        return self.root / "output" / "data"

    @property
    def intermediate(self) -> Path:
        return self.root / "output" / "intermediate"

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def channel(self, name: str) -> Path:
        return self.data / name


def create_tree(layout: Layout, checkpoint_store: Path) -> None:
    """Create the folders; ``checkpoints/`` is a link to the job's persistent folder."""
    for folder in (
        layout.code,
        layout.config,
        layout.data,
        layout.model,
        layout.output_data,
        layout.intermediate,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    checkpoint_store.mkdir(parents=True, exist_ok=True)
    if not layout.checkpoints.is_symlink():
        layout.checkpoints.symlink_to(checkpoint_store.resolve(), target_is_directory=True)


def hyperparameter_string(value: Any) -> str:
    """How a value appears in hyperparameters.json and on the command line: ``str()``."""
    return str(value)


def hyperparameter_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """``--name value`` for each hyperparameter, in the order given."""
    args: list[str] = []
    for name, value in hyperparameters.items():
        args += [f"--{name}", hyperparameter_string(value)]
    return args


def input_data_config(channels: list[ResolvedChannel]) -> dict[str, dict[str, str]]:
    config: dict[str, dict[str, str]] = {}
    for ch in channels:
        entry = {
            "TrainingInputMode": ch.mode,
            "S3DistributionType": ch.distribution,
            "RecordWrapperType": "None",
        }
        if ch.content_type:
            entry["ContentType"] = ch.content_type
        config[ch.name] = entry
    return config


def resource_config(hosts: list[str], current_host: str) -> dict[str, Any]:
    return {
        "current_host": current_host,
        "hosts": hosts,
        "network_interface_name": NETWORK_INTERFACE,
    }


def write_config(layout: Layout, spec: JobSpec, hosts: list[str], current_host: str) -> None:
    files = {
        "hyperparameters.json": {
            k: hyperparameter_string(v) for k, v in spec.hyperparameters.items()
        },
        "inputdataconfig.json": input_data_config(spec.inputs),
        "resourceconfig.json": resource_config(hosts, current_host),
    }
    for name, content in files.items():
        (layout.config / name).write_text(json.dumps(content, indent=2), encoding="utf-8")


def user_args(spec: JobSpec) -> list[str]:
    return hyperparameter_args(spec.hyperparameters) + list(spec.arguments)


def user_program(spec: JobSpec) -> Program:
    """The program of a job of user code: its built-in algorithm's module, or its entry
    point (the training and processing kinds' program, and that of a spec without one)."""
    if spec.algorithm is not None:
        return Program(module=builtins.module_of(spec.algorithm))
    if spec.entry_point is None:
        raise ValueError("a job of user code needs an algorithm or an entry point")
    return Program(script=spec.entry_point)


def program_of(spec: JobSpec) -> Program:
    """What the job's attempts run: the program its kind chose at submit."""
    return spec.program if spec.program is not None else user_program(spec)


def command(spec: JobSpec, layout: Layout, python: str) -> list[str]:
    """The job's argv: its program (a module, or a script from the source) and arguments."""
    args = user_args(spec)
    program = program_of(spec)
    if program.module is not None:
        return [python, "-m", program.module, *args]
    assert program.script is not None
    script = str(safe_join(layout.code, program.script))
    if program.script.endswith(".sh"):
        return ["/bin/sh", script, *args]
    return [python, script, *args]


def environment(
    layout: Layout,
    spec: JobSpec,
    *,
    job_id: str,
    job_name: str,
    attempt: int,
    hosts: list[str],
    current_host: str,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The job's environment: ``base`` (default: this process's) without ``MODELYARD_*``
    and ``SM_*``, the job's own variables, then the contract's."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith(_STRIPPED_ENV_PREFIXES)
    }
    env.update(spec.environment)
    channel_dirs = {ch.name: str(layout.channel(ch.name)) for ch in spec.inputs}
    args = user_args(spec)
    num_cpus = spec.resources.cpus
    training_env = {
        "channel_input_dirs": channel_dirs,
        "current_host": current_host,
        "hosts": hosts,
        "hyperparameters": spec.hyperparameters,
        "input_config_dir": str(layout.config),
        "input_data_config": input_data_config(spec.inputs),
        "input_dir": str(layout.input),
        "job_name": job_name,
        "log_level": 20,
        "model_dir": str(layout.model),
        "module_dir": str(layout.code),
        "module_name": _module_name(spec),
        "network_interface_name": NETWORK_INTERFACE,
        "num_cpus": num_cpus,
        "num_gpus": spec.resources.gpus,
        "output_data_dir": str(layout.output_data),
        "output_dir": str(layout.output),
        "output_intermediate_dir": str(layout.intermediate),
        "resource_config": resource_config(hosts, current_host),
        "user_entry_point": spec.entry_point or "",
    }
    env.update(
        {
            "SM_MODEL_DIR": str(layout.model),
            "SM_CHANNELS": json.dumps(sorted(channel_dirs)),
            "SM_HPS": json.dumps(spec.hyperparameters),
            "SM_HOSTS": json.dumps(hosts),
            "SM_CURRENT_HOST": current_host,
            "SM_NUM_CPUS": str(num_cpus),
            "SM_NUM_GPUS": str(spec.resources.gpus),
            "SM_LOG_LEVEL": "20",
            "SM_NETWORK_INTERFACE_NAME": NETWORK_INTERFACE,
            "SM_USER_ARGS": json.dumps(args),
            "SM_USER_ENTRY_POINT": spec.entry_point or "",
            "SM_MODULE_NAME": _module_name(spec),
            "SM_MODULE_DIR": str(layout.code),
            "SM_INPUT_DIR": str(layout.input),
            "SM_INPUT_CONFIG_DIR": str(layout.config),
            "SM_INPUT_DATA_CONFIG": json.dumps(input_data_config(spec.inputs)),
            "SM_RESOURCE_CONFIG": json.dumps(resource_config(hosts, current_host)),
            "SM_OUTPUT_DIR": str(layout.output),
            "SM_OUTPUT_DATA_DIR": str(layout.output_data),
            "SM_OUTPUT_INTERMEDIATE_DIR": str(layout.intermediate),
            "SM_CHECKPOINT_DIR": str(layout.checkpoints),
            "SM_TRAINING_ENV": json.dumps(training_env),
            "MODELYARD_JOB_ID": job_id,
            "MODELYARD_JOB_NAME": job_name,
            "MODELYARD_JOB_KIND": spec.kind,
            "MODELYARD_JOB_ATTEMPT": str(attempt),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                [str(layout.code), *filter(None, [env.get("PYTHONPATH")])]
            ),
        }
    )
    for name, path in channel_dirs.items():
        env[f"SM_CHANNEL_{name.upper()}"] = path
    for name, value in spec.hyperparameters.items():
        env[f"SM_HP_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def _module_name(spec: JobSpec) -> str:
    if spec.program is None and spec.algorithm is None and spec.entry_point is None:
        return ""
    program = program_of(spec)
    if program.module is not None:
        return program.module
    script = program.script or ""
    return script.rsplit("/", 1)[-1].removesuffix(".py").removesuffix(".sh")


# -- inputs ---------------------------------------------------------------------------------


def materialize_inputs(
    layout: Layout, channels: list[ResolvedChannel], store: ArtifactStore
) -> None:
    """Put each channel's files under ``input/data/<channel>/``, every object verified.

    File mode: a hard link to the store's (read-only) object when the store is a local
    folder on the same file system, else a verified copy. FastFile mode: nothing is
    copied; a symlink to the verified local object, or, for a remote store, a
    ``<channel>.manifest`` of JSON lines ``{"path", "url", "digest", "size"}`` to stream.
    """
    local_paths = _verified_local_paths(store, [f.digest for ch in channels for f in ch.files])
    for ch in channels:
        folder = layout.channel(ch.name)
        folder.mkdir(parents=True, exist_ok=True)
        manifest: list[str] = []
        for f in ch.files:
            dest = safe_join(folder, f.path)
            local = local_paths[f.digest]  # verified; None if the store is remote
            if local is None and ch.mode == "FastFile":
                entry = {"path": f.path, "url": store.object_url(f.digest), "digest": f.digest}
                manifest.append(json.dumps({**entry, "size": f.size}))
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if local is None:
                store.get_to_path(f.digest, dest)
            elif ch.mode == "FastFile":
                dest.symlink_to(local)
            else:
                try:
                    os.link(local, dest)
                except OSError:
                    store.get_to_path(f.digest, dest)
        if manifest:
            path = layout.data / f"{ch.name}.manifest"
            path.write_text("".join(f"{line}\n" for line in manifest), encoding="utf-8")


def _verified_local_paths(store: ArtifactStore, digests: list[str]) -> dict[str, Path | None]:
    """``store.local_path`` of each distinct digest: a full verify of every local object.

    Verifying is reading and hashing the whole object, which hashlib does without the GIL,
    so the objects are verified side by side on up to one thread per CPU: a job's input
    files are on the launch's critical path. The first error (a missing or damaged object)
    is raised, as a sequential loop would.
    """
    distinct = list(dict.fromkeys(digests))
    if len(distinct) <= 1 or (os.cpu_count() or 1) <= 1:
        return {d: store.local_path(d) for d in distinct}
    return dict(zip(distinct, _verify_pool().map(store.local_path, distinct), strict=True))


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _verify_pool() -> ThreadPoolExecutor:
    """One pool per process for verifying inputs, its threads kept between launches
    (starting threads per launch cost milliseconds each on a busy machine)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="modelyard-verify")
        return _pool


def extract_source(layout: Layout, digest: str, store: ArtifactStore) -> None:
    """Unpack the source snapshot into ``code/``."""
    local = store.local_path(digest)
    if local is not None:
        extract_tar_gz(local, layout.code)
        return
    with tempfile.TemporaryDirectory(prefix="modelyard-src-") as tmp:
        archive = Path(tmp) / "source.tar.gz"
        store.get_to_path(digest, archive)
        extract_tar_gz(archive, layout.code)


def has_requirements(layout: Layout) -> bool:
    return (layout.code / "requirements.txt").is_file()


# -- results --------------------------------------------------------------------------------


def read_failure(layout: Layout) -> str | None:
    """The job's own explanation in ``output/failure`` (first 1024 characters), if any."""
    try:
        with open(layout.failure, "rb") as fh:
            text = fh.read(FAILURE_LIMIT * 4).decode("utf-8", errors="replace")
    except OSError:
        return None
    text = text.replace("\x00", "\ufffd").strip()
    return text[:FAILURE_LIMIT] or None


def harvest(
    layout: Layout, store: ArtifactStore, scratch: Path
) -> tuple[ModelArtifact | None, list[OutputFile]]:
    """Store ``model/`` as one deterministic model.tar.gz and each file below ``output/``
    (except ``failure``) as its own object. ``scratch`` holds the archive meanwhile."""
    model: ModelArtifact | None = None
    if layout.model.is_dir() and any(layout.model.iterdir()):
        archive = scratch / "model.tar.gz"
        files = write_tar_gz(layout.model, archive, allow_symlinks=True)
        info = store.put_file(archive)
        archive.unlink()
        model = ModelArtifact(digest=info.digest, size=info.size, files=files)
    outputs: list[OutputFile] = []
    if layout.output.is_dir():
        for rel in walk(layout.output, allow_symlinks=True):
            path = layout.output / rel
            if rel == "failure" or path.is_symlink() or not path.is_file():
                continue
            info = store.put_file(path)
            outputs.append(OutputFile(path=rel, digest=info.digest, size=info.size))
    return model, outputs
