"""SDK wrapper for the model registry: ``client.models``.

::

    v = client.models.register("churn", path="model_dir", flavor="sklearn",
                               metrics={"auc": 0.91}, run_id=run.id)
    client.models.approve("churn", v.version, reason="beats v3 on the holdout set")
    client.models.set_alias("churn", "production", v.version)
    client.models.download("churn", "production", "served_model/")

A folder is packed as a deterministic ``.tar.gz`` (the same files always give the same
digest) and uploaded before the version is registered; a single file is uploaded as is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from modelyard.client.artifacts import ArtifactsAPI
from modelyard.client.transport import Transport
from modelyard.core.paths import safe_component
from modelyard.errors import InvalidInput, ModelyardError, invalid_input_from
from modelyard.registry.schemas import (
    Alias,
    ApproveVersion,
    CreateModel,
    DeleteAlias,
    GetHistory,
    GetModel,
    GetVersion,
    History,
    ListModels,
    ListVersions,
    Model,
    ModelCard,
    ModelList,
    ModelVersion,
    RegisterVersion,
    RejectVersion,
    SetAlias,
    Signature,
    Status,
    VersionList,
)

# The archive code and the jobs' and endpoints' schemas are imported by the calls that use
# them: listing or describing models through a server loads neither.
if TYPE_CHECKING:
    from modelyard.endpoints.schemas import Endpoint, Strategy
    from modelyard.flavors import ModelDescriptor
    from modelyard.flavors import Signature as FlavorSignature
    from modelyard.flavors import TensorSpec as FlavorTensorSpec

_GZIP_MAGIC = b"\x1f\x8b"


def _build(model: type[BaseModel], **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        raise invalid_input_from(exc) from exc


def _descriptor_of(folder: Path) -> ModelDescriptor | None:
    """The folder's model descriptor, or None when it is not a model folder we know."""
    # The flavors import numpy and the model libraries: only registering a folder needs them.
    from modelyard.flavors import read_descriptor

    try:
        return read_descriptor(folder)
    except ModelyardError:
        return None


def _registry_signature(found: FlavorSignature) -> Signature:
    """A flavors signature as the registry stores it (unnamed tensors get input_<i>)."""

    def specs(items: list[FlavorTensorSpec] | None, prefix: str) -> list[dict[str, Any]]:
        return [
            {"name": t.name or f"{prefix}_{i}", "type": str(t.dtype), "shape": t.shape}
            for i, t in enumerate(items or [])
        ]

    built: Signature = _build(
        Signature, inputs=specs(found.inputs, "input"), outputs=specs(found.outputs, "output")
    )
    return built


class ModelsAPI:
    """Model groups, versions, approval, aliases and history (``client.models``)."""

    def __init__(self, transport: Transport, artifacts: ArtifactsAPI) -> None:
        self._t = transport
        self._artifacts = artifacts

    # groups
    def create(
        self, name: str, *, description: str = "", tags: Mapping[str, str] | None = None
    ) -> Model:
        """Create an empty model group (registering a version creates it too)."""
        req = _build(CreateModel, name=name, description=description, tags=dict(tags or {}))
        result: Model = self._t.call("models.create_model", req)
        return result

    def list(self, prefix: str | None = None, *, limit: int = 100, offset: int = 0) -> ModelList:
        req = _build(ListModels, prefix=prefix, limit=limit, offset=offset)
        result: ModelList = self._t.call("models.list_models", req)
        return result

    def get(self, name: str) -> Model:
        result: Model = self._t.call("models.get_model", _build(GetModel, name=name))
        return result

    # versions
    def _upload(self, path: Path) -> tuple[str, str]:
        """Upload a file or a folder (as .tar.gz): (digest, file name or '')."""
        from modelyard.compute.archive import SOURCE_EXCLUDES, write_tar_gz

        if path.is_dir():
            with tempfile.TemporaryDirectory(prefix="modelyard-model-") as tmp:
                archive = Path(tmp) / "model.tar.gz"
                write_tar_gz(path, archive, excludes=SOURCE_EXCLUDES)
                return self._artifacts.upload(archive).digest, ""
        if path.is_file():
            return self._artifacts.upload(path).digest, path.name
        raise InvalidInput(f"{str(path)!r} is neither a file nor a folder")

    def _upload_handler(
        self, entry_point: str | os.PathLike[str], source_dir: str | os.PathLike[str] | None
    ) -> tuple[str, str]:
        """Upload the handler's folder (or its one file) as .tar.gz: (entry point, digest)."""
        from modelyard.compute.archive import SOURCE_EXCLUDES, write_tar_gz

        with tempfile.TemporaryDirectory(prefix="modelyard-handler-") as tmp:
            archive = Path(tmp) / "source.tar.gz"
            if source_dir is not None:
                folder = Path(source_dir)
                if not folder.is_dir():
                    raise InvalidInput(f"source_dir {str(folder)!r} is not a folder")
                entry = Path(entry_point).as_posix()
                write_tar_gz(folder, archive, excludes=SOURCE_EXCLUDES)
            else:
                script = Path(entry_point)
                if not script.is_file():
                    raise InvalidInput(
                        f"entry_point {str(script)!r} is not a file (give source_dir when it "
                        "is a path inside a folder)"
                    )
                entry = script.name
                staging = Path(tmp) / "source"
                staging.mkdir()
                shutil.copyfile(script, staging / entry)
                write_tar_gz(staging, archive)
            return entry, self._artifacts.upload(archive).digest

    def register(
        self,
        name: str,
        *,
        flavor: str | None = None,
        artifact: str | None = None,
        path: str | os.PathLike[str] | None = None,
        filename: str = "",
        flavor_metadata: Mapping[str, Any] | None = None,
        signature: Signature | Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        run_id: str | None = None,
        job_id: str | None = None,
        card: ModelCard | Mapping[str, Any] | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        entry_point: str | os.PathLike[str] | None = None,
        source_dir: str | os.PathLike[str] | None = None,
    ) -> ModelVersion:
        """Register the next version of model ``name`` (pending approval).

        The model is ``artifact`` (a digest already uploaded; ``filename`` names it if it
        is a single file), or ``path`` (a file, or a folder packed as .tar.gz, uploaded
        now), or, with neither, the model a completed training job ``job_id`` produced.

        The server takes ``flavor`` from the content when it names one (a saved model
        folder's descriptor, a SageMaker ``code/inference.py``: ``python``, a built-in
        algorithm's model) and refuses a ``flavor`` that disagrees with it. For a saved
        model folder or a built-in algorithm's model, ``signature`` defaults to what the
        folder's descriptor says.

        ``entry_point`` (with ``source_dir``), as in SageMaker's ``Model(entry_point=...,
        source_dir=...)``: a SageMaker inference handler (``model_fn``, ``input_fn``,
        ``predict_fn``, ``output_fn``) to serve the model with. ``entry_point`` is a path
        inside ``source_dir``, or, without ``source_dir``, a local ``.py`` file. The folder
        (or the file) is uploaded and the server packages it with the model as ``code/``:
        the version is that new artifact, flavor ``python``.
        """
        if artifact is not None and path is not None:
            raise InvalidInput("give artifact (a digest) or path (a file or folder), not both")
        described: ModelDescriptor | None = None
        if path is not None:
            if Path(path).is_dir():
                described = _descriptor_of(Path(path))
            artifact, filename = self._upload(Path(path))
        elif artifact is None:
            if job_id is None:
                raise InvalidInput("give artifact (a digest), path, or job_id of a trained model")
            from modelyard.compute.archive import extract_tar_gz
            from modelyard.jobs.schemas import GetJob, Job

            job: Job = self._t.call("jobs.describe", _build(GetJob, job_id=job_id))
            if job.model is None:
                raise InvalidInput(f"job {job_id} has no model (it is {job.state})")
            artifact = job.model.digest
            if signature is None and entry_point is None:
                with tempfile.TemporaryDirectory(prefix="modelyard-model-") as tmp:
                    archive, folder = Path(tmp) / "model.tar.gz", Path(tmp) / "model"
                    self._artifacts.download(artifact, archive)
                    extract_tar_gz(archive, folder)
                    described = _descriptor_of(folder)
        entry: str | None = None
        source_digest: str | None = None
        if entry_point is not None:
            entry, source_digest = self._upload_handler(entry_point, source_dir)
            described = None  # the packaged model is served by its handler
        elif source_dir is not None:
            raise InvalidInput("source_dir is the handler's folder: give entry_point with it")
        if signature is None and described is not None and described.signature is not None:
            signature = _registry_signature(described.signature)
        req = _build(
            RegisterVersion,
            name=name,
            artifact_digest=artifact,
            artifact_filename=filename,
            flavor=flavor,
            flavor_metadata=dict(flavor_metadata or {}),
            signature=signature if signature is not None else Signature(),
            metrics=dict(metrics or {}),
            card=card if card is not None else ModelCard(),
            source_run_id=run_id,
            source_job_id=job_id,
            description=description,
            tags=dict(tags or {}),
            entry_point=entry,
            source_digest=source_digest,
        )
        result: ModelVersion = self._t.call("models.register_version", req)
        return result

    def versions(
        self, name: str, *, status: Status | None = None, limit: int = 100, offset: int = 0
    ) -> VersionList:
        """Versions of a model, newest first."""
        req = _build(ListVersions, name=name, status=status, limit=limit, offset=offset)
        result: VersionList = self._t.call("models.list_versions", req)
        return result

    def version(self, name: str, version: int | str) -> ModelVersion:
        """A version by number, alias (``"production"``) or ``"latest"``."""
        req = _build(GetVersion, name=name, version=str(version))
        result: ModelVersion = self._t.call("models.get_version", req)
        return result

    def approve(self, name: str, version: int, *, reason: str = "") -> ModelVersion:
        req = _build(ApproveVersion, name=name, version=version, reason=reason)
        result: ModelVersion = self._t.call("models.approve_version", req)
        return result

    def reject(self, name: str, version: int, *, reason: str) -> ModelVersion:
        """Reject a pending version, or revoke an approval; ``reason`` is required."""
        req = _build(RejectVersion, name=name, version=version, reason=reason)
        result: ModelVersion = self._t.call("models.reject_version", req)
        return result

    # aliases
    def set_alias(self, name: str, alias: str, version: int) -> Alias:
        """Point ``alias`` at ``version`` (``production`` needs an Approved version)."""
        req = _build(SetAlias, name=name, alias=alias, version=version)
        result: Alias = self._t.call("models.set_alias", req)
        return result

    def delete_alias(self, name: str, alias: str) -> Alias:
        req = _build(DeleteAlias, name=name, alias=alias)
        result: Alias = self._t.call("models.delete_alias", req)
        return result

    def history(
        self, name: str, *, version: int | None = None, limit: int = 100, offset: int = 0
    ) -> History:
        """Registrations, status and alias changes, oldest first."""
        req = _build(GetHistory, name=name, version=version, limit=limit, offset=offset)
        result: History = self._t.call("models.get_history", req)
        return result

    # files
    def download(self, name: str, version: int | str, dest: str | os.PathLike[str]) -> Path:
        """Fetch a version's artifact into the folder ``dest``; the path of the model.

        A folder archive (.tar.gz, registered from a folder or by a training job) is
        extracted into ``dest``, which is returned; a single file is written as
        ``dest/<its file name>`` and that path is returned. Content is verified against
        its digest before anything is written to ``dest``.
        """
        from modelyard.compute.archive import extract_tar_gz, list_tar_gz

        found = self.version(name, version)
        # The name comes from the server: one component, never a path out of dest.
        filename = safe_component(found.artifact_filename or "model")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="modelyard-model-") as tmp:
            local = Path(tmp) / "artifact"
            self._artifacts.download(found.artifact_digest, local)
            if not found.artifact_filename:
                with open(local, "rb") as fh:
                    is_gzip = fh.read(2) == _GZIP_MAGIC
                if is_gzip:
                    list_tar_gz(local)  # refuses unsafe names before anything is written
                    extract_tar_gz(local, dest)
                    return dest
            target = dest / filename
            shutil.move(local, target)
            return target

    # deployment
    def deploy(
        self,
        name: str,
        version: int | str,
        endpoint_name: str,
        *,
        variant: str = "primary",
        replicas: int = 1,
        strategy: Strategy | Mapping[str, Any] | None = None,
        placement: Mapping[str, Any] | None = None,
    ) -> Endpoint:
        """Deploy a version to an endpoint (see ``client.endpoints.deploy``); ``placement``
        e.g. ``{"backend": "ray", "num_cpus": 1}`` runs the replicas as Ray actors."""
        from modelyard.client.endpoints import EndpointsAPI

        return EndpointsAPI(self._t).deploy(
            name,
            version,
            endpoint_name,
            variant=variant,
            replicas=replicas,
            strategy=strategy,
            placement=placement,
        )
