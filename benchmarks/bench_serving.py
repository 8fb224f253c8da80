"""Model serving: modelyard's replica beside ``mlflow models serve`` and BentoML, same
model, same rows.

    .venv/bin/python -m benchmarks.bench_serving [--requests 2000] [--seconds 10]
                                                 [--concurrency 32] [--features 20]
                                                 [--trees 100] [--models hgb,xgb]

The models of issue 5, trained once on the same 20-feature rows: a scikit-learn
HistGradientBoostingClassifier (``hgb``) and an XGBoost XGBClassifier (``xgb``), each with
``--trees`` trees. Each is saved once with ``modelyard.flavors.save_model`` and once with
``mlflow.sklearn.save_model``/``mlflow.xgboost.save_model``, so both servers load the same
fitted estimator; each server runs one worker process on a free loopback port. Requests
are single JSON rows sent by a minimal keep-alive HTTP/1.1 client over raw sockets (so the
client's own cost stays small and equal for all). Per model:

- latency at concurrency 1: median of ``--requests`` requests, beside the median of the
  native model's in-process ``predict`` on one numpy row (goal: at most 1 ms above it);
- throughput at concurrency 32: requests per second over ``--seconds`` with 32 client
  threads (goal: at least 20x ``mlflow models serve``);
- idle memory: resident set size of the server's process tree after warm-up (goal: at
  most a third of ``mlflow models serve``'s).

BentoML is measured the same way, third, when its own environment exists (``make
bench-bentoml-venv`` builds ``.venv-bentoml`` from benchmarks/bentoml/requirements.txt;
it never enters requirements.lock): the estimator is also pickled, and ``bentoml serve``
runs benchmarks/bentoml/service.py, one ``/predict`` JSON API with BentoML's default
settings (one worker). Its figures print beside mlflow's, then modelyard's ratios to them.
Without that environment, or when BentoML fails, the reason prints and the rest goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
BENTOML_BIN = REPO / ".venv-bentoml" / "bin"
BENTOML_SERVICE_DIR = REPO / "benchmarks" / "bentoml"


class ServerError(Exception):
    """A server under test did not start or failed a request."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RawClient:
    """Keep-alive HTTP/1.1 POSTs of one fixed body; reads Content-Length replies."""

    def __init__(self, port: int, path: str, body: bytes, content_type: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.buffer = b""

    def post(self) -> bytes:
        self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._recv()
        body, self.buffer = rest[:length], rest[length:]
        if status != b"200":
            raise RuntimeError(f"HTTP {status.decode()}: {body[:200]!r}")
        return body

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def wait_ready(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise ServerError(f"server did not become ready in {timeout:.0f} s")


def tree_rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def latency_ms(port: int, path: str, body: bytes, ctype: str, n: int) -> float:
    client = RawClient(port, path, body, ctype)
    try:
        for _ in range(200):
            client.post()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            client.post()
            times.append(time.perf_counter() - t0)
    finally:
        client.close()
    return statistics.median(times) * 1000


def throughput(
    port: int, path: str, body: bytes, ctype: str, threads: int, seconds: float
) -> float:
    counts = [0] * threads
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        client = RawClient(port, path, body, ctype)
        try:
            while not stop.is_set():
                client.post()
                counts[i] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    time.sleep(1.0)  # warm-up
    start_counts, t0 = sum(counts), time.perf_counter()
    time.sleep(seconds)
    done, elapsed = sum(counts) - start_counts, time.perf_counter() - t0
    stop.set()
    for t in pool:
        t.join()
    if errors:
        raise ServerError(f"requests failed: {errors[0]!r}")
    return done / elapsed


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def train(kind: str, x: np.ndarray, y: np.ndarray, trees: int) -> Any:
    """The issue's classifiers, single-threaded predict where the library allows it."""
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=trees, random_state=0).fit(x, y)
    if kind == "xgb":
        from xgboost import XGBClassifier

        return XGBClassifier(n_estimators=trees, max_depth=6, random_state=0).fit(x, y)
    raise SystemExit(f"unknown model {kind!r} (hgb, xgb)")


def save_all(kind: str, estimator: Any, folder: Path, sample: np.ndarray) -> None:
    """The same fitted estimator saved for each server."""
    from modelyard.flavors import load_model, save_model

    save_model(estimator, folder / "modelyard", sample_input=sample)
    if kind == "xgb":
        import mlflow.xgboost

        mlflow.xgboost.save_model(estimator, str(folder / "mlflow"))
    else:
        import mlflow.sklearn

        # MLflow 3 saves scikit-learn models with skops, which refuses HGB's tree
        # predictor unless trusted; it is our own freshly fitted model.
        mlflow.sklearn.save_model(
            estimator,
            str(folder / "mlflow"),
            skops_trusted_types=[
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
            ],
        )
    # BentoML's service loads a pickle: .venv-bentoml pins the same scikit-learn and
    # XGBoost, and the file is this run's own freshly fitted model.
    (folder / "bentoml").mkdir()
    with (folder / "bentoml" / "model.pkl").open("wb") as f:
        pickle.dump(estimator, f)
    flavor = load_model(folder / "modelyard").flavor
    assert flavor == ("xgboost" if kind == "xgb" else "sklearn"), flavor


def native_latency_ms(estimator: Any, row: np.ndarray, n: int) -> float:
    for _ in range(50):
        estimator.predict(row)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        estimator.predict(row)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bentoml_missing() -> str | None:
    """Why BentoML cannot be measured here, or None when .venv-bentoml imports it."""
    python = BENTOML_BIN / "python"
    if not python.exists():
        return f"{python.relative_to(REPO)} is missing (run `make bench-bentoml-venv`)"
    probe = subprocess.run(
        [str(python), "-c", "import bentoml"], capture_output=True, text=True, timeout=120
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return f"{python.relative_to(REPO)} cannot import bentoml: {last}"
    return None


def server_commands(
    folder: Path, row: np.ndarray, with_bentoml: bool
) -> dict[str, tuple[list[str], dict[str, str], str, str, bytes]]:
    """Per server: command (the port is appended), environment, ping path, predict path, body."""
    my_body = json.dumps({"instances": row.tolist()}).encode()
    ml_body = json.dumps({"inputs": row.tolist()}).encode()
    bin_dir = Path(sys.executable).parent
    main_env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        # mlflow execs `uvicorn` by name: the environment's bin first on PATH
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    servers = {
        "modelyard": (
            [sys.executable, "-m", "modelyard.serving", "--model-dir", str(folder / "modelyard"),
             "--name", "bench", "--workers", "1", "--port"],
            main_env, "/ping", "/invocations", my_body,
        ),
        "mlflow": (
            [str(bin_dir / "mlflow"), "models", "serve", "-m", str(folder / "mlflow"),
             "--env-manager", "local", "-w", "1", "-h", "127.0.0.1", "-p"],
            main_env, "/ping", "/invocations", ml_body,
        ),
    }  # fmt: skip
    if with_bentoml:
        servers["bentoml"] = (
            [str(BENTOML_BIN / "bentoml"), "serve", "service:Classifier",
             "--working-dir", str(BENTOML_SERVICE_DIR), "--host", "127.0.0.1", "--port"],
            {
                **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                "BENCH_BENTOML_MODEL": str(folder / "bentoml" / "model.pkl"),
                # its home (model and bento stores) in the run's temp folder, and no
                # usage-statistics calls from a benchmark
                "BENTOML_HOME": str(folder / "bentoml" / "home"),
                "BENTOML_DO_NOT_TRACK": "true",
            },
            "/readyz", "/predict", my_body,
        )  # fmt: skip
    return servers


def log_excerpt(log: Path) -> list[str]:
    """The last exception line a server logged (a worker that keeps failing to start
    leaves only its restarts at the end), then its last line."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return [*errors[-1:], *lines[-1:]]


def measure_servers(
    folder: Path, row: np.ndarray, args: argparse.Namespace, with_bentoml: bool
) -> dict[str, dict[str, float]]:
    """modelyard's and mlflow's figures (a failure of either ends the run), then BentoML's
    when ``with_bentoml`` (a failure prints why and leaves it out of the results)."""
    results: dict[str, dict[str, float]] = {}
    servers = server_commands(folder, row, with_bentoml)
    for name, (command, env, ping, path, body) in servers.items():
        port = free_port()
        log = folder / f"{name}.log"
        proc: subprocess.Popen[bytes] | None = None
        try:
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [*command, str(port)], cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env
                )
            wait_ready(port, ping, proc)
            ctype = "application/json"
            latency_ms(port, path, body, ctype, 100)  # warm-up
            time.sleep(2)
            idle = tree_rss_mb(proc.pid)
            lat = latency_ms(port, path, body, ctype, args.requests)
            rps = throughput(port, path, body, ctype, args.concurrency, args.seconds)
        except (ServerError, OSError) as exc:
            reason = f"{name}: {exc}" + "".join(f"\n    | {line}" for line in log_excerpt(log))
            if name != "bentoml":
                raise SystemExit(reason) from exc
            print(f"  {name:10s} not measured: {reason}", flush=True)
            continue
        finally:
            if proc is not None:
                stop_server(proc)
        results[name] = {"latency_ms": lat, "rps": rps, "idle_mb": idle}
        print(f"  {name:10s} p50 {lat:.3f} ms   {rps:8.0f} req/s at c={args.concurrency}"
              f"   idle {idle:.0f} MB", flush=True)  # fmt: skip
    return results


def report(native_ms: float, results: dict[str, dict[str, float]]) -> None:
    my, ml = results["modelyard"], results["mlflow"]
    print(f"  native predict p50 {native_ms:.3f} ms")
    over = my["latency_ms"] - native_ms
    print(
        f"  latency: modelyard {over:+.3f} ms over native predict "
        f"(goal <= +1 ms): {'OK' if over <= 1 else 'MISSED'}"
    )
    ratio = my["rps"] / ml["rps"]
    print(f"  throughput: {ratio:.1f}x mlflow (goal >= 20x): {'OK' if ratio >= 20 else 'MISSED'}")
    share = my["idle_mb"] / ml["idle_mb"]
    print(
        f"  idle memory: {share:.2f} of mlflow (goal <= 0.33): "
        f"{'OK' if share <= 1 / 3 else 'MISSED'}",
        flush=True,
    )
    if "bentoml" in results:
        bm = results["bentoml"]
        print(
            f"  modelyard/bentoml: throughput {my['rps'] / bm['rps']:.1f}x, "
            f"p50 latency {my['latency_ms'] / bm['latency_ms']:.2f}x, "
            f"idle memory {my['idle_mb'] / bm['idle_mb']:.2f}x "
            f"(bentoml/mlflow throughput {bm['rps'] / ml['rps']:.1f}x)",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--models", default="hgb,xgb", help="comma-separated: hgb, xgb")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, args.features))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=len(x)) > 0).astype(int)
    row = x[:1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    missing = bentoml_missing()
    if missing:
        print(f"bentoml not measured: {missing}", flush=True)
    for kind in args.models.split(","):
        estimator = train(kind, x, y, args.trees)
        native_ms = native_latency_ms(estimator, row, args.requests)
        folder = tmp / kind
        save_all(kind, estimator, folder, x[:1000])
        print(f"{kind} ({type(estimator).__name__}, {args.trees} trees):", flush=True)
        report(native_ms, measure_servers(folder, row, args, with_bentoml=missing is None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
