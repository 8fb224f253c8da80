"""Settings of one model-server replica (command-line flags, or ``build_app``'s argument)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# SageMaker real-time endpoints cap a request at 6 MB; the same default keeps scripts portable.
DEFAULT_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
ENV_VAR = "MODELYARD_SERVING_SETTINGS"
# A replica's secret comes in this environment variable (never a flag: ``ps`` shows
# flags); requests must then carry it in SECRET_HEADER (see modelyard.endpoints.replica_auth).
SECRET_ENV = "MODELYARD_REPLICA_SECRET"
SECRET_HEADER = "x-modelyard-replica-secret"
_PATHS = ("model_dir", "onnx_sample", "handler", "onnx_dir")


@dataclass(frozen=True)
class ServerSettings:
    """How one replica serves one model version.

    ``max_wait_ms`` is the longest a request waits for others to share its batch; a request
    that arrives while nothing else is queued runs at once. ``max_batch_size`` counts rows.
    ``onnx_rtol``/``onnx_atol`` bound the difference between ONNX Runtime and the native
    model on the verification sample (class labels must be equal).
    """

    name: str = "model"
    version: str = "1"
    model_dir: Path | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    use_onnx: bool = True
    onnx_rtol: float = 1e-4
    onnx_atol: float = 1e-5
    onnx_sample: Path | None = None
    handler: Path | None = None
    # Set by the process entry point: a folder where the ONNX decision (and the verified
    # ONNX model) was prepared once for all workers (see ``modelyard.serving.prepare``).
    onnx_dir: Path | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    # When set, every request must carry it in SECRET_HEADER (403 otherwise).
    secret: str | None = None
    # When not empty, the only Host names answered (421 otherwise); ports are not compared.
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {self.max_wait_ms}")
        if self.max_payload_bytes < 1:
            raise ValueError(f"max_payload_bytes must be positive, got {self.max_payload_bytes}")

    def to_env(self) -> str:
        """JSON for ``MODELYARD_SERVING_SETTINGS``: how worker processes receive the flags."""
        data: dict[str, Any] = asdict(self)
        # Never the secret: this variable stays in the environment that model code and
        # its subprocesses see. Workers get it through SECRET_ENV, popped by from_env.
        del data["secret"]
        for key in _PATHS:
            data[key] = str(data[key]) if data[key] is not None else None
        return json.dumps(data)

    @classmethod
    def from_env(cls) -> ServerSettings:
        raw = os.environ.get(ENV_VAR)
        if not raw:
            raise RuntimeError(
                f"{ENV_VAR} is not set; start the server with python -m modelyard.serving"
            )
        data = json.loads(raw)
        for key in _PATHS:
            data[key] = Path(data[key]) if data.get(key) else None
        data["allowed_hosts"] = tuple(data.get("allowed_hosts") or ())
        data["secret"] = os.environ.pop(SECRET_ENV, None) or None
        return cls(**data)
