"""Built-in forecasting: ``python -m modelyard.algorithms.forecasting [--name value ...]``.

Fits one statsmodels model per series of the ``train`` channel: ETS (``ETSModel``: additive
or multiplicative error and seasonality, optional damped trend) or (seasonal) ARIMA. The
channel has a timestamp column, a target column and optionally an item-id column (one
series per item); each series must be regular at ``frequency`` (inferred when unset),
without gaps, duplicates or missing targets.

Validation: each series' last ``prediction_length`` points are held out, the model is
fitted on the rest, and ``validation:mape`` (mean |error| / |actual| over non-zero actuals,
a fraction: 0.05 = 5%) and ``validation:rmse`` over all series are printed (step 0). The
final model is then fitted on whole series, and its forecasts for the next
``prediction_length`` steps are written to ``$SM_OUTPUT_DATA_DIR/forecast.csv`` (columns
item_id when present, timestamp, forecast).

Writes to ``SM_MODEL_DIR``: ``model.json`` (model settings, and per series its start,
values and fitted parameters by name; no pickle: ``load`` re-applies the parameters to the
stored values without fitting), ``signature.json`` and ``metadata.json``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from modelyard.algorithms._contract import (
    Contract,
    DataError,
    HyperparameterError,
    run_entry_point,
)
from modelyard.algorithms._model_files import (
    PARAMS_FILE,
    read_json,
    read_signature,
    write_json,
    write_metadata,
    write_signature,
)
from modelyard.algorithms._schemas import (
    ColumnSpec,
    ForecastingHyperparameters,
    OutputSpec,
    Signature,
)
from modelyard.algorithms._tables import read_channel

NAME = "forecasting"
FORECAST_FILE = "forecast.csv"
# Season length implied by a frequency's base code (pandas offset aliases, old and new).
DEFAULT_SEASONS = {
    "h": 24, "H": 24, "D": 7, "B": 5, "W": 52, "M": 12, "MS": 12, "ME": 12,
    "Q": 4, "QS": 4, "QE": 4,
}  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """How every series is modelled: family, season length and family settings."""

    model: str
    seasonal_periods: int
    settings: dict[str, Any]

    def build(self, values: npt.NDArray[np.float64]) -> Any:
        """An unfitted statsmodels model of ``values``."""
        if self.model == "ets":
            return ETSModel(values, **self.settings)
        return ARIMA(
            values,
            order=tuple(self.settings["order"]),
            seasonal_order=tuple(self.settings["seasonal_order"]),
        )

    def fit(self, values: npt.NDArray[np.float64]) -> Any:
        model = self.build(values)
        with warnings.catch_warnings():
            # Optimiser chatter (convergence, start parameters) is not actionable here;
            # the validation metrics say whether the fit is any good.
            warnings.simplefilter("ignore")
            return model.fit(disp=False) if self.model == "ets" else model.fit()

    def apply(self, values: npt.NDArray[np.float64], params: Mapping[str, float]) -> Any:
        """Results of the model with fixed ``params`` (no fitting)."""
        model = self.build(values)
        vector = np.array([params[name] for name in model.param_names], dtype=np.float64)
        return model.smooth(vector) if self.model == "ets" else model.filter(vector)


def _spec(hps: ForecastingHyperparameters, season: int) -> ModelSpec:
    if hps.model == "ets":
        seasonal = None if hps.seasonal == "none" or season < 2 else hps.seasonal
        settings: dict[str, Any] = {
            "error": hps.error,
            "trend": None if hps.trend == "none" else "add",
            "damped_trend": hps.trend == "add_damped",
            "seasonal": seasonal,
            "seasonal_periods": season if seasonal else None,
        }
    else:
        order = [int(part) for part in hps.arima_order.split(",")]
        seasonal_order = [int(part) for part in hps.seasonal_order.split(",")]
        if any(seasonal_order) and season < 2:
            raise HyperparameterError(
                f"seasonal_order {hps.seasonal_order} needs seasonal_periods >= 2 (got "
                f"{season}); set seasonal_periods or a frequency with a known season"
            )
        settings = {
            "order": order,
            "seasonal_order": [*seasonal_order, season if any(seasonal_order) else 0],
        }
    return ModelSpec(hps.model, season, settings)


def _season(hps: ForecastingHyperparameters, frequency: str) -> int:
    if hps.seasonal_periods is not None:
        return hps.seasonal_periods
    offset = pd.tseries.frequencies.to_offset(frequency)
    base = offset.name.split("-")[0]
    return DEFAULT_SEASONS.get(base, 0) if offset.n == 1 else 0


@dataclass(frozen=True)
class Series:
    """One regular series: its id (None for a single unnamed series), start and values."""

    item_id: str | None
    start: pd.Timestamp
    values: npt.NDArray[np.float64]


def read_series(
    contract: Contract, hps: ForecastingHyperparameters
) -> tuple[list[Series], str, pa.Table]:
    """The train channel split into regular series, and their frequency; DataError if not."""
    table = read_channel(contract, "train", required=True)
    assert table is not None
    for column in (hps.timestamp_column, hps.target_column):
        if column not in table.column_names:
            raise DataError(
                f"channel 'train' has no column '{column}'; its columns are "
                f"{', '.join(table.column_names)} (set timestamp_column / target_column)"
            )
    has_items = hps.item_id_column in table.column_names
    try:
        times = pd.to_datetime(table.column(hps.timestamp_column).to_pylist())
    except (ValueError, TypeError) as exc:
        raise DataError(f"timestamp column '{hps.timestamp_column}' is not dates: {exc}") from None
    if times.isna().any():
        raise DataError(f"timestamp column '{hps.timestamp_column}' has missing values")
    target_type = table.schema.field(hps.target_column).type
    if not (pa.types.is_integer(target_type) or pa.types.is_floating(target_type)):
        raise DataError(
            f"target column '{hps.target_column}' has type {target_type}; expected numbers"
        )
    frame = pd.DataFrame(
        {
            "item": [str(v) for v in table.column(hps.item_id_column).to_pylist()]
            if has_items
            else "",
            "time": times,
            "value": table.column(hps.target_column).cast(pa.float64()).to_numpy(),
        }
    )
    frequency = hps.frequency
    series = []
    for item, group in frame.sort_values(["item", "time"]).groupby("item", sort=True):
        label = str(item) if has_items else None
        name = f"series '{item}'" if has_items else "the series"
        index = pd.DatetimeIndex(group["time"])
        if index.has_duplicates:
            raise DataError(f"{name} has duplicate timestamps")
        if not np.all(np.isfinite(group["value"].to_numpy())):
            raise DataError(f"{name} has missing or infinite target values")
        if frequency is None:
            frequency = pd.infer_freq(index) if len(index) >= 3 else None
            if frequency is None:
                raise DataError(f"cannot infer the frequency of {name}; set `frequency`")
        try:
            expected = pd.date_range(index[0], periods=len(index), freq=frequency)
        except ValueError as exc:
            raise HyperparameterError(
                f"frequency {frequency!r} is not a pandas offset alias: {exc}"
            ) from None
        if not expected.equals(index):
            bad = int(np.flatnonzero(expected != index)[0])
            raise DataError(
                f"{name} is not regular at frequency {frequency}: found {index[bad]} where "
                f"{expected[bad]} was expected (gaps or offsets)"
            )
        series.append(Series(label, index[0], group["value"].to_numpy(dtype=np.float64)))
    assert frequency is not None
    return series, frequency, table


def _check_lengths(series: list[Series], spec: ModelSpec, horizon: int) -> None:
    seasonal = spec.seasonal_periods if _seasonal(spec) else 0
    needed = horizon + max(2 * seasonal + 2, 8)
    for one in series:
        if len(one.values) < needed:
            raise DataError(
                f"series '{one.item_id or ''}' has {len(one.values)} points; with "
                f"prediction_length {horizon} and season {seasonal} it needs at least {needed}"
            )
        multiplicative = spec.model == "ets" and "mul" in (
            spec.settings["error"],
            spec.settings["seasonal"],
        )
        if multiplicative and np.any(one.values <= 0):
            raise DataError(
                f"series '{one.item_id or ''}' has values <= 0; multiplicative ETS needs "
                "positive data"
            )


def _seasonal(spec: ModelSpec) -> bool:
    if spec.model == "ets":
        return spec.settings["seasonal"] is not None
    return bool(spec.settings["seasonal_order"][3])


class ForecastPredictor:
    """Forecasts from stored series and fitted parameters, without refitting."""

    def __init__(self, document: Mapping[str, Any], signature: Signature) -> None:
        self.document = document
        self.signature = signature
        self.spec = ModelSpec(document["model"], document["seasonal_periods"], document["settings"])
        self.horizon: int = document["prediction_length"]
        self.frequency: str = document["frequency"]
        self._series = {entry["item_id"]: entry for entry in document["series"]}
        self._cache: dict[str | None, npt.NDArray[np.float64]] = {}

    @property
    def item_ids(self) -> list[str | None]:
        return list(self._series)

    def forecast_one(self, item_id: str | None) -> npt.NDArray[np.float64]:
        """The next ``prediction_length`` values of one series."""
        if item_id not in self._series:
            raise ValueError(f"unknown item_id {item_id!r}; known: {self.item_ids[:20]}")
        if item_id not in self._cache:
            entry = self._series[item_id]
            values = np.asarray(entry["values"], dtype=np.float64)
            results = self.spec.apply(values, entry["params"])
            self._cache[item_id] = np.asarray(results.forecast(self.horizon), dtype=np.float64)
        return self._cache[item_id]

    def predict(self, data: Any = None) -> npt.NDArray[np.float64]:
        """Forecasts, shape (items, prediction_length), for item ids (or rows with one).

        ``data`` is one item id, a sequence of ids or of mappings holding the item-id
        column, or ``None`` for every series in stored order (a single series trained
        without an item-id column has the id ``None``).
        """
        if data is None:
            items = self.item_ids
        elif isinstance(data, str):
            items = [data]
        else:
            items = [
                row[self.signature.inputs[0].name] if isinstance(row, Mapping) else row
                for row in data
            ]
        return np.vstack([self.forecast_one(None if i is None else str(i)) for i in items])

    def forecast_table(self) -> pa.Table:
        """Every series' forecast as rows of (item_id?, timestamp, forecast)."""
        columns: dict[str, list[Any]] = {"item_id": [], "timestamp": [], "forecast": []}
        for item_id, entry in self._series.items():
            values = self.forecast_one(item_id)
            start = pd.Timestamp(entry["start"])
            times = pd.date_range(
                start, periods=len(entry["values"]) + self.horizon, freq=self.frequency
            )
            columns["item_id"] += [item_id] * self.horizon
            columns["timestamp"] += [t.isoformat() for t in times[-self.horizon :]]
            columns["forecast"] += values.tolist()
        if all(item is None for item in self._series):
            del columns["item_id"]
        return pa.table(columns)


def load(model_dir: str | Path) -> ForecastPredictor:
    """Load ``model.json`` and ``signature.json`` (no pickle)."""
    folder = Path(model_dir)
    return ForecastPredictor(read_json(folder / PARAMS_FILE), read_signature(folder))


def train(contract: Contract) -> None:
    """Validate, read, hold out, fit, forecast, save; see the module docstring."""
    hps = contract.hyperparameters(ForecastingHyperparameters)
    contract.require_single_host(NAME)
    if hps.frequency is not None:
        try:
            pd.tseries.frequencies.to_offset(hps.frequency)
        except ValueError:
            raise HyperparameterError(
                f"frequency {hps.frequency!r} is not a pandas offset alias (D, h, W, MS, ...)"
            ) from None
    series, frequency, table = read_series(contract, hps)
    spec = _spec(hps, _season(hps, frequency))
    horizon = hps.prediction_length
    _check_lengths(series, spec, horizon)
    errors, actuals = [], []
    for one in series:
        fitted = spec.fit(one.values[:-horizon])
        errors.append(np.asarray(fitted.forecast(horizon)) - one.values[-horizon:])
        actuals.append(one.values[-horizon:])
    error, actual = np.concatenate(errors), np.concatenate(actuals)
    nonzero = actual != 0
    if nonzero.any():
        contract.metrics.emit(
            "validation:mape", float(np.mean(np.abs(error[nonzero] / actual[nonzero])))
        )
    contract.metrics.emit("validation:rmse", float(np.sqrt(np.mean(error**2))))
    entries = []
    for one in series:
        fitted = spec.fit(one.values)
        params = dict(
            zip(fitted.model.param_names, np.asarray(fitted.params).tolist(), strict=True)
        )
        entries.append(
            {
                "item_id": one.item_id,
                "start": one.start.isoformat(),
                "values": one.values.tolist(),
                "params": params,
            }
        )
    document = {
        "model": spec.model,
        "settings": spec.settings,
        "seasonal_periods": spec.seasonal_periods,
        "frequency": frequency,
        "prediction_length": horizon,
        "series": entries,
    }
    signature = Signature(
        algorithm=NAME,
        inputs=[ColumnSpec(name=hps.item_id_column, type="string")],
        label=ColumnSpec(
            name=hps.target_column, type=str(table.schema.field(hps.target_column).type)
        ),
        output=OutputSpec(
            name="forecast",
            dtype="float64",
            shape=[-1, horizon],
            description=f"the next {horizon} values of each requested series",
        ),
    )
    write_json(contract.model_dir / PARAMS_FILE, document)
    write_signature(contract, signature)
    predictor = ForecastPredictor(document, signature)
    contract.output_data_dir.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(predictor.forecast_table(), contract.output_data_dir / FORECAST_FILE)
    write_metadata(
        contract,
        NAME,
        hps,
        libraries=["statsmodels", "pandas"],
        extra={
            "series": len(series),
            "frequency": frequency,
            "seasonal_periods": spec.seasonal_periods,
        },
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run :func:`train` under the container contract; returns the exit status.

    ``argv`` and ``environ`` default to the process's own arguments and environment.
    """
    return run_entry_point(NAME, train, argv, environ)


if __name__ == "__main__":
    sys.exit(main())
