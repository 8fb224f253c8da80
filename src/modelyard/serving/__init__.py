"""The model-server runtime: one model version behind SageMaker's and KServe v2's contracts.

``build_app(model, settings)`` gives the ASGI app for a loaded model (tests, embedding);
``python -m modelyard.serving --model-dir ... --name ... --port ...`` runs it on uvicorn,
with ``--workers N`` processes. It knows nothing of the metadata database: endpoints,
variants and rollouts launch it as replica processes. See ``docs/serving.md``.
"""

from __future__ import annotations

from modelyard.serving.app import ModelServer, build_app
from modelyard.serving.settings import ServerSettings

__all__ = ["ModelServer", "ServerSettings", "build_app"]
