"""Decide the ONNX fast path once, in a child process, for all of a replica's workers.

``python -m modelyard.serving.prepare OUT_DIR`` (settings in ``MODELYARD_SERVING_SETTINGS``)
loads the model with its framework, converts and verifies it, and writes the decision
(and the ONNX model, when it matched) to ``OUT_DIR``. Workers then load only ONNX
Runtime: the framework's memory (scikit-learn alone is ~150 MB) stays in this process,
which exits before the server starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from modelyard.flavors import load_model, read_descriptor
from modelyard.serving import onnx_fastpath
from modelyard.serving.loading import native_predictors
from modelyard.serving.model import InputSchema
from modelyard.serving.settings import ENV_VAR, ServerSettings


def needs_preparing(settings: ServerSettings) -> bool:
    """Whether the model's flavor is one the fast path converts (reading only its descriptor)."""
    if not settings.use_onnx or settings.model_dir is None:
        return False
    try:
        flavor = read_descriptor(settings.model_dir).flavor
    except Exception:  # the worker reports an unreadable model when it loads it
        return False
    return flavor in onnx_fastpath.CONVERTIBLE


def prepare(settings: ServerSettings, out_dir: Path, *, timeout_s: float = 600) -> None:
    """Run the preparation in a child process; a failure there means "native, because…"."""
    env_settings = settings.to_env()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "modelyard.serving.prepare", str(out_dir)],
            env={**os.environ, ENV_VAR: env_settings},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        failed = done.returncode != 0
        detail = f"exit status {done.returncode}: {done.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        failed, detail = True, f"it took over {timeout_s:.0f} s"
    if failed or not (out_dir / onnx_fastpath.RUNTIME_FILE).exists():
        decision = onnx_fastpath.Decision("native", f"ONNX preparation failed ({detail})")
        onnx_fastpath.save_decision(decision, out_dir)


def main() -> int:
    out_dir = Path(sys.argv[1])
    settings = ServerSettings.from_env()
    assert settings.model_dir is not None
    model = load_model(settings.model_dir)
    schema = InputSchema.from_signature(model.descriptor.signature)
    predict, predict_proba = native_predictors(model, schema)
    decision = onnx_fastpath.try_fast_path(model, schema, settings, predict, predict_proba)
    onnx_fastpath.save_decision(decision, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
