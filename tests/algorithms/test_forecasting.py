"""The built-in forecaster (statsmodels ETS / ARIMA), run as a subprocess."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest
from algokit import JobDir

from modelyard.algorithms import forecasting


def seasonal(n: int, level: float, seed: int) -> np.ndarray:
    """Trend + weekly season + small noise, daily."""
    t = np.arange(n)
    noise = np.random.default_rng(seed).normal(scale=0.3, size=n)
    return level + 0.1 * t + 5.0 * np.sin(2 * np.pi * t / 7) + noise


@pytest.mark.parametrize(
    ("model", "extra"),
    [("ets", {}), ("arima", {"arima_order": "1,0,0", "seasonal_order": "1,1,0"})],
)
def test_multiple_series_forecasts(job: JobDir, model: str, extra: dict[str, str]) -> None:
    days = pd.date_range("2024-01-01", periods=84, freq="D")
    items = {"north": seasonal(84, 100.0, 81), "south": seasonal(84, 60.0, 82)}
    job.write(
        "train",
        {
            "item_id": np.repeat(list(items), 84),
            "timestamp": np.tile(days.strftime("%Y-%m-%d").to_numpy(), 2),
            "target": np.concatenate(list(items.values())),
        },
    )
    hps = {"prediction_length": 14, "model": model, **extra}
    result = job.run("forecasting", hps, in_process=model == "arima")
    metadata = result.assert_trained(job, ("model.json",))
    assert metadata["frequency"] == "D" and metadata["seasonal_periods"] == 7
    assert result.last("validation:mape") < 0.05
    forecast = pacsv.read_csv(job.output_data / "forecast.csv").to_pydict()
    assert forecast["item_id"] == ["north"] * 14 + ["south"] * 14
    assert str(forecast["timestamp"][0]).startswith("2024-03-25")
    future = seasonal(98, 100.0, 81)[84:]
    assert np.mean(np.abs(np.array(forecast["forecast"][:14]) - future) / future) < 0.05
    model_json = json.loads((job.model / "model.json").read_text())
    assert {entry["item_id"] for entry in model_json["series"]} == {"north", "south"}
    predictor = forecasting.load(job.model)
    np.testing.assert_allclose(
        predictor.predict(["north", "south"]).ravel(), forecast["forecast"], rtol=1e-9
    )
    assert predictor.predict([{"item_id": "south"}]).shape == (1, 14)


def test_single_series_without_item_id(job: JobDir) -> None:
    hours = pd.date_range("2024-01-01", periods=24 * 8, freq="h")
    t = np.arange(len(hours))
    target = 20 + 3 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(83).normal(0, 0.1, len(t))
    job.write(
        "train",
        {"timestamp": hours.strftime("%Y-%m-%dT%H:%M:%S").to_numpy(), "target": target},
        fmt="parquet",
    )
    result = job.run("forecasting", {"prediction_length": 24, "trend": "none"}, in_process=True)
    metadata = result.assert_trained(job, ("model.json",))
    assert metadata["seasonal_periods"] == 24
    assert result.last("validation:mape") < 0.03
    forecast = pacsv.read_csv(job.output_data / "forecast.csv")
    assert forecast.column_names == ["timestamp", "forecast"]
    np.testing.assert_allclose(
        forecasting.load(job.model).predict()[0], forecast.column("forecast").to_numpy()
    )
