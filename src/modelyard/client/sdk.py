"""The SDK entry point: ``modelyard.connect()``."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from modelyard.client.transport import EmbeddedTransport, RemoteTransport, Transport
from modelyard.errors import invalid_input_from

if TYPE_CHECKING:
    from modelyard.client.artifacts import ArtifactsAPI
    from modelyard.client.datasets import DatasetsAPI
    from modelyard.client.endpoints import EndpointsAPI
    from modelyard.client.jobs import JobsAPI
    from modelyard.client.registry import ModelsAPI
    from modelyard.client.security import AuditAPI, TokensAPI, UsersAPI
    from modelyard.client.tracking import TrackingAPI
    from modelyard.client.transforms import TransformsAPI
    from modelyard.lineage.schemas import LineageGraph


class Client:
    """One connection to modelyard, embedded or remote; the same API either way.

    Each API (``client.jobs``, ``client.models``…) is built, and its module imported, on
    first use: a command that lists models through a server loads neither the data
    engines (pyarrow, DuckDB) nor the stores.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @cached_property
    def artifacts(self) -> ArtifactsAPI:
        from modelyard.client.artifacts import ArtifactsAPI

        return ArtifactsAPI(self.transport)

    @cached_property
    def datasets(self) -> DatasetsAPI:
        from modelyard.client.datasets import DatasetsAPI

        return DatasetsAPI(self.transport, self.artifacts)

    @cached_property
    def jobs(self) -> JobsAPI:
        from modelyard.client.jobs import JobsAPI

        return JobsAPI(self.transport, self.artifacts)

    @cached_property
    def users(self) -> UsersAPI:
        from modelyard.client.security import UsersAPI

        return UsersAPI(self.transport)

    @cached_property
    def tokens(self) -> TokensAPI:
        from modelyard.client.security import TokensAPI

        return TokensAPI(self.transport)

    @cached_property
    def audit(self) -> AuditAPI:
        from modelyard.client.security import AuditAPI

        return AuditAPI(self.transport)

    @cached_property
    def tracking(self) -> TrackingAPI:
        from modelyard.client.tracking import TrackingAPI

        return TrackingAPI(self.transport, self.artifacts)

    @cached_property
    def models(self) -> ModelsAPI:
        from modelyard.client.registry import ModelsAPI

        return ModelsAPI(self.transport, self.artifacts)

    @cached_property
    def endpoints(self) -> EndpointsAPI:
        from modelyard.client.endpoints import EndpointsAPI

        return EndpointsAPI(self.transport)

    @cached_property
    def transforms(self) -> TransformsAPI:
        from modelyard.client.transforms import TransformsAPI

        return TransformsAPI(self.transport, self.jobs)

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
        from modelyard.lineage.schemas import GetLineage

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
    from modelyard.config import Settings
    from modelyard.runtime import Runtime
    from modelyard.security.service import local_principal

    settings = Settings.from_env(
        home=Path(home) if home is not None else None, db_url=db, artifacts_url=artifacts
    )
    runtime = Runtime(settings)
    principal = runtime.principal(token) if token else local_principal()
    return Client(EmbeddedTransport(runtime, principal))
