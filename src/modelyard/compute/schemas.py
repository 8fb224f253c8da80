"""What a backend reports about an attempt, whoever submitted it: the resources it asks
for, the resources it used, and the artifacts it left (pydantic, so domains put them in
their own schemas: ``jobs.schemas`` re-exports them)."""

from __future__ import annotations

from pydantic import Field

from modelyard.core.schema import Schema


class Resources(Schema):
    cpus: int = Field(1, ge=1, le=1024, description="CPUs reserved per instance.")
    memory_mb: int | None = Field(
        None, ge=16, le=2**24, description="Memory reserved per instance (admission only)."
    )
    gpus: int = Field(0, ge=0, le=64)
    instance_count: int = Field(1, ge=1, le=256, description="Hosts (1 on the local backend).")


class ResourceUsage(Schema):
    cpu_seconds: float = Field(description="User + system CPU time of the job's processes.")
    peak_rss_bytes: int = Field(description="Largest resident set of any one of its processes.")
    wall_seconds: float
    gpu_seconds: float | None = Field(None, description="GPU time; null where no GPU is used.")


class OutputFile(Schema):
    path: str
    digest: str
    size: int


class ModelArtifact(Schema):
    digest: str = Field(description="SHA-256 of model.tar.gz (deterministic: sorted, mtime 0).")
    size: int
    files: list[str] = Field(description="Paths inside the archive.")
