"""The container contract as seen from inside a built-in algorithm.

A job runs ``python -m modelyard.algorithms.<name> [--name value ...]`` in a working
directory laid out like SageMaker's ``/opt/ml``. The algorithm reads:

- hyperparameters from ``SM_HPS`` (a JSON object; values may be strings, as in
  ``hyperparameters.json``), else from ``$SM_INPUT_CONFIG_DIR/hyperparameters.json``, then
  overridden by ``--name value`` / ``--name=value`` arguments. Names starting with ``_`` or
  ``sagemaker_`` are platform bookkeeping (SageMaker's tuner and script mode add them) and
  are ignored; any other unknown name fails the job.
- channels from ``SM_CHANNEL_<NAME>``, else ``$SM_INPUT_DIR/data/<name>``;
- ``SM_MODEL_DIR`` (the model goes here), ``SM_OUTPUT_DIR`` (``failure`` goes here),
  ``SM_OUTPUT_DATA_DIR`` (extra outputs), ``SM_NUM_CPUS``, ``SM_HOSTS``, ``SM_CURRENT_HOST``.

Unset directories default as in SageMaker: ``SM_INPUT_DIR=/opt/ml/input``,
``SM_INPUT_CONFIG_DIR=$SM_INPUT_DIR/config``, ``SM_MODEL_DIR=/opt/ml/model``,
``SM_OUTPUT_DIR=/opt/ml/output``, ``SM_OUTPUT_DATA_DIR=$SM_OUTPUT_DIR/data``.

Exit status: 0 on success; 1 when the job's submitter can fix the problem (a bad
hyperparameter or bad data: :class:`AlgorithmError`), with a one-paragraph message in
``$SM_OUTPUT_DIR/failure`` and on stderr, written before any training starts; 2 for an
unexpected internal error, with the exception in ``failure`` and the traceback on stderr.

Metrics are printed on stdout, one per line, as ``#metric name=<name> value=<float>
step=<int>``; for a given name the last line printed is the value of the saved model.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import ValidationError

from modelyard.algorithms._schemas import ALGORITHMS, Hyperparameters

DEFAULT_ROOT = Path("/opt/ml")
IGNORED_PREFIXES = ("_", "sagemaker_")
METRIC_FORMAT = "#metric name={name} value={value} step={step}"
METRIC_NAME = re.compile(r"[A-Za-z0-9_.:/=+@-]{1,255}")

H = TypeVar("H", bound=Hyperparameters)


class AlgorithmError(Exception):
    """A problem the job's submitter can fix; the message names it and what is accepted."""


class HyperparameterError(AlgorithmError):
    """A hyperparameter is unknown, of the wrong type, out of range or inconsistent."""


class DataError(AlgorithmError):
    """A channel is missing, empty, unreadable, or lacks a column the algorithm needs."""


@dataclass(frozen=True)
class Cluster:
    """The hosts of this job (``SM_HOSTS``) and which one this process is."""

    hosts: tuple[str, ...]
    current_host: str

    @property
    def size(self) -> int:
        return len(self.hosts)


@dataclass
class Metrics:
    """Prints metric lines and remembers the last value of each name for ``metadata.json``."""

    final: dict[str, float] = field(default_factory=dict)
    quiet: bool = False  # remember values but print nothing (hosts other than algo-1)

    def emit(self, name: str, value: float, step: int = 0) -> None:
        """Print ``#metric name=<name> value=<float> step=<int>`` and flush stdout.

        A NaN or infinite value is not a measurement: it is noted on stderr, not printed.
        """
        if not METRIC_NAME.fullmatch(name):
            raise ValueError(f"metric name {name!r} must match {METRIC_NAME.pattern}")
        if step < 0:
            raise ValueError(f"metric {name!r}: step {step} is negative")
        number = float(value)
        if not math.isfinite(number):
            print(f"metric {name} is {number} at step {step}; not reported", file=sys.stderr)
            return
        self.final[name] = number
        if self.quiet:
            return
        print(METRIC_FORMAT.format(name=name, value=repr(number), step=int(step)), flush=True)


@dataclass(frozen=True)
class Contract:
    """Paths, raw hyperparameters, resources and hosts of one algorithm run."""

    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    input_dir: Path
    raw_hyperparameters: dict[str, Any]
    channels: dict[str, Path]
    num_cpus: int
    cluster: Cluster
    metrics: Metrics = field(default_factory=Metrics)
    # The platform's MODELYARD_* variables (the data-parallel contract of multi-host jobs).
    platform_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], argv: Sequence[str]) -> Contract:
        """Read the contract from environment variables and ``--name value`` arguments."""
        root = DEFAULT_ROOT
        input_dir = Path(environ.get("SM_INPUT_DIR", root / "input"))
        config_dir = Path(environ.get("SM_INPUT_CONFIG_DIR", input_dir / "config"))
        output_dir = Path(environ.get("SM_OUTPUT_DIR", root / "output"))
        raw = _hyperparameters_from(environ, config_dir)
        raw.update(_parse_argv(argv))
        return cls(
            model_dir=Path(environ.get("SM_MODEL_DIR", root / "model")),
            output_dir=output_dir,
            output_data_dir=Path(environ.get("SM_OUTPUT_DATA_DIR", output_dir / "data")),
            input_dir=input_dir,
            raw_hyperparameters=raw,
            channels=_channels_from(environ, input_dir),
            num_cpus=_num_cpus(environ),
            cluster=_cluster_from(environ),
            platform_env={k: v for k, v in environ.items() if k.startswith("MODELYARD_")},
        )

    def channel(self, name: str) -> Path | None:
        """The folder of channel ``name`` (lower case), or ``None`` when the job has none."""
        return self.channels.get(name)

    def hyperparameters(self, model: type[H]) -> H:
        """Validate the raw hyperparameters against ``model``; raise HyperparameterError."""
        return parse_hyperparameters(model, self.raw_hyperparameters)

    @property
    def is_lead_host(self) -> bool:
        """Whether this host writes the model and metrics: algo-1 (the first in SM_HOSTS)."""
        return self.cluster.current_host == self.cluster.hosts[0]

    def require_single_host(self, algorithm: str) -> None:
        """Fail when ``SM_HOSTS`` lists more than one host.

        Most built-in algorithms train on one host; a multi-host job fails here, before
        any data is read, rather than training the same model on every host. XGBoost and
        LightGBM train data-parallel instead (:meth:`data_parallel_env`).
        """
        if self.cluster.size > 1:
            raise HyperparameterError(
                f"SM_HOSTS lists {self.cluster.size} hosts ({', '.join(self.cluster.hosts)}) "
                f"but the built-in {algorithm} algorithm trains on a single host; "
                "run it with instance_count=1."
            )

    def data_parallel_env(self, algorithm: str, names: Sequence[str]) -> dict[str, str]:
        """The variables ``names`` that a multi-host backend sets for data-parallel training.

        Raises AlgorithmError naming the missing ones (the job ran on a backend that does
        not set up multi-host training, such as the local backend).
        """
        missing = [n for n in names if not self.platform_env.get(n)]
        if missing:
            raise AlgorithmError(
                f"SM_HOSTS lists {self.cluster.size} hosts but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set: multi-host {algorithm} "
                "trains data-parallel and needs a backend that sets up the hosts' "
                "communication (the Ray backend); run it there or with instance_count=1."
            )
        return {n: self.platform_env[n] for n in names}


def parse_hyperparameters(model: type[H], raw: Mapping[str, Any]) -> H:
    """Validate ``raw`` (values possibly strings) into ``model``.

    Unknown names (other than ``_*`` and ``sagemaker_*``), wrong types, out-of-range
    values and missing required values raise :class:`HyperparameterError` naming every
    offending hyperparameter and, for unknown names, listing the accepted ones.
    """
    accepted = {(f.alias or name): name for name, f in model.model_fields.items()}
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in raw.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        if key not in accepted:
            unknown.append(key)
            continue
        values[key] = _normalise(value, model.model_fields[accepted[key]].annotation)
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter(s) {', '.join(sorted(unknown))}; "
            f"accepted: {', '.join(sorted(accepted))}."
        )
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            field_info = model.model_fields.get(accepted.get(name, name))
            hint = f" ({field_info.description})" if field_info and field_info.description else ""
            given = "" if error["type"] == "missing" else f", got {error.get('input')!r}"
            problems.append(f"{name}: {error['msg']}{given}{hint}")
        raise HyperparameterError("invalid hyperparameter(s): " + "; ".join(problems)) from None


def validate_hyperparameters(algorithm: str, raw: Mapping[str, Any]) -> Hyperparameters:
    """Validate a built-in job's hyperparameters as the algorithm will, before launching it.

    Raises KeyError for an unknown algorithm and HyperparameterError for bad values.
    """
    if algorithm not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {algorithm!r}; known: {', '.join(sorted(ALGORITHMS))}")
    return parse_hyperparameters(ALGORITHMS[algorithm].hyperparameters, raw)


def _normalise(value: Any, annotation: Any) -> Any:
    """Undo SageMaker's string encodings: JSON-quoted strings, and "null"/"" for optionals."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            decoded = None
        if isinstance(decoded, str):
            text = decoded
    if text.lower() in ("", "null", "none") and _allows_none(annotation):
        return None
    return text


def _allows_none(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, UnionType) and NoneType in get_args(annotation)


def _hyperparameters_from(environ: Mapping[str, str], config_dir: Path) -> dict[str, Any]:
    if "SM_HPS" in environ:
        text, source = environ["SM_HPS"], "SM_HPS"
    else:
        path = config_dir / "hyperparameters.json"
        if not path.is_file():
            return {}
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        decoded = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise HyperparameterError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise HyperparameterError(
            f"{source} must be a JSON object of name: value, got {type(decoded).__name__}"
        )
    return dict(decoded)


def _parse_argv(argv: Sequence[str]) -> dict[str, str]:
    """``--name value`` and ``--name=value`` pairs; anything else is an error."""
    values: dict[str, str] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise HyperparameterError(
                f"unexpected command-line argument {arg!r}; pass hyperparameters as --name value"
            )
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise HyperparameterError(f"command-line hyperparameter --{name} has no value")
            value = args[i + 1]
            i += 1
        values[name] = value
        i += 1
    return values


def _channels_from(environ: Mapping[str, str], input_dir: Path) -> dict[str, Path]:
    channels: dict[str, Path] = {}
    data_dir = input_dir / "data"
    if data_dir.is_dir():
        for child in sorted(data_dir.iterdir()):
            if child.is_dir():
                channels[child.name.lower()] = child
    for key, value in environ.items():
        if key.startswith("SM_CHANNEL_") and value:
            channels[key.removeprefix("SM_CHANNEL_").lower()] = Path(value)
    return channels


def _num_cpus(environ: Mapping[str, str]) -> int:
    text = environ.get("SM_NUM_CPUS")
    if text is None:
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        raise HyperparameterError(f"SM_NUM_CPUS must be a whole number, got {text!r}") from None
    if count < 1:
        raise HyperparameterError(f"SM_NUM_CPUS must be at least 1, got {count}")
    return count


def _cluster_from(environ: Mapping[str, str]) -> Cluster:
    current = environ.get("SM_CURRENT_HOST", "algo-1")
    text = environ.get("SM_HOSTS")
    if not text:
        return Cluster((current,), current)
    try:
        hosts = json.loads(text)
    except json.JSONDecodeError:
        hosts = None
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise HyperparameterError(f"SM_HOSTS must be a JSON list of host names, got {text!r}")
    if current not in hosts:
        raise HyperparameterError(f"SM_CURRENT_HOST {current!r} is not in SM_HOSTS {hosts}")
    return Cluster(tuple(hosts), current)


def run_entry_point(
    algorithm: str,
    train: Callable[[Contract], None],
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run ``train`` under the contract and return the process exit status (0, 1 or 2).

    An :class:`AlgorithmError` becomes exit status 1 with its message in
    ``$SM_OUTPUT_DIR/failure`` and on stderr; any other exception becomes exit status 2
    with the exception in ``failure`` and the traceback on stderr.
    """
    env = os.environ if environ is None else environ
    args = sys.argv[1:] if argv is None else argv
    output_dir = Path(env.get("SM_OUTPUT_DIR", DEFAULT_ROOT / "output"))
    try:
        contract = Contract.from_environment(env, args)
        output_dir = contract.output_dir
        train(contract)
    except AlgorithmError as exc:
        _report_failure(output_dir, f"{algorithm}: {exc}")
        return 1
    except Exception as exc:
        traceback.print_exc()
        _report_failure(
            output_dir, f"{algorithm}: internal error ({type(exc).__name__}: {exc}); see the log"
        )
        return 2
    return 0


def _report_failure(output_dir: Path, message: str) -> None:
    """Write ``message`` as one paragraph to ``output_dir/failure`` and to stderr."""
    paragraph = " ".join(message.split())
    print(paragraph, file=sys.stderr, flush=True)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "failure").write_text(paragraph + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"could not write {output_dir / 'failure'}: {exc}", file=sys.stderr)
