"""The SDK entry point: ``modelyard.connect()``."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Literal

from pydantic import ValidationError

from modelyard.client.artifacts import ArtifactsAPI
from modelyard.client.datasets import DatasetsAPI
from modelyard.client.endpoints import EndpointsAPI
from modelyard.client.jobs import JobsAPI
from modelyard.client.registry import ModelsAPI
from modelyard.client.security import AuditAPI, TokensAPI, UsersAPI
from modelyard.client.tracking import TrackingAPI
from modelyard.client.transforms import TransformsAPI
from modelyard.client.transport import EmbeddedTransport, RemoteTransport, Transport
from modelyard.config import Settings
from modelyard.errors import invalid_input_from
from modelyard.lineage.schemas import GetLineage, LineageGraph
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal


class Client:
    """One connection to modelyard, embedded or remote; the same API either way."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.artifacts = ArtifactsAPI(transport)
        self.datasets = DatasetsAPI(transport, self.artifacts)
        self.jobs = JobsAPI(transport, self.artifacts)
        self.users = UsersAPI(transport)
        self.tokens = TokensAPI(transport)
        self.audit = AuditAPI(transport)
        self.tracking = TrackingAPI(transport, self.artifacts)
        self.models = ModelsAPI(transport, self.artifacts)
        self.endpoints = EndpointsAPI(transport)
        self.transforms = TransformsAPI(transport, self.jobs)

    @property
    def is_remote(self) -> bool:
        return isinstance(self.transport, RemoteTransport)

    def lineage(
        self,
        node_type: str,
        node_id: str,
        *,
        direction: Literal["upstream", "downstream", "both"] = "both",
        depth: int = 10,
    ) -> LineageGraph:
        """The lineage graph around a node: ``client.lineage("run", run.id, direction=...)``.

        Node types: ``dataset_version``, ``job``, ``run``, ``artifact`` (a digest),
        ``model_version``, ``endpoint``.
        """
        try:
            req = GetLineage(
                node_type=node_type,
                node_id=node_id,
                direction=direction,
                depth=depth,
            )
        except ValidationError as exc:
            raise invalid_input_from(exc) from exc
        graph: LineageGraph = self.transport.call("lineage.get_lineage", req)
        return graph

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    url: str | None = None,
    *,
    token: str | None = None,
    home: str | os.PathLike[str] | None = None,
    db: str | None = None,
    artifacts: str | None = None,
) -> Client:
    """Connect to modelyard.

    With a ``url`` (or ``MODELYARD_URL`` set) the client talks HTTP to a server, sending
    ``token`` (or ``MODELYARD_TOKEN``). Otherwise it is embedded: operations run in this
    process on the stores under ``home`` (default ``MODELYARD_HOME`` or ``~/.modelyard``),
    or on ``db``/``artifacts`` URLs. An embedded client acts as the local admin unless a
    token is given, in which case it acts as that token's user.
    """
    url = url or os.environ.get("MODELYARD_URL") or None
    token = token or os.environ.get("MODELYARD_TOKEN") or None
    if url:
        return Client(RemoteTransport(url, token))
    settings = Settings.from_env(
        home=Path(home) if home is not None else None, db_url=db, artifacts_url=artifacts
    )
    runtime = Runtime(settings)
    principal = runtime.principal(token) if token else local_principal()
    return Client(EmbeddedTransport(runtime, principal))
