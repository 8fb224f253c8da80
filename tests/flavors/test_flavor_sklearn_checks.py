"""Crafted index-holding scikit-learn objects are refused after loading, before any use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier

from modelyard.errors import UntrustedModel
from modelyard.flavors import load_model, save_model


def _saved(model: Any, tmp_path: Path) -> Path:
    save_model(model, tmp_path / "m")
    return tmp_path / "m"


def _forge_tree(tree: Any, field: str, node: int, value: int) -> None:
    state = tree.__getstate__()
    state["nodes"][field][node] = value
    tree.__setstate__(state)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("left_child", 0, "does not come after its parent"),  # a loop: predict never ends
        ("right_child", 10_000, "outside the"),
        ("feature", 7, "beyond the 4 features"),
        ("feature", -5, "negative feature index"),
    ],
)
def test_forged_decision_tree(
    tmp_path: Path, xy: Any, field: str, value: int, problem: str
) -> None:
    x, y = xy
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    _forge_tree(model.tree_, field, 0, value)
    with pytest.raises(UntrustedModel, match=problem):
        load_model(_saved(model, tmp_path))


def test_forged_tree_inside_a_forest(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    model = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    _forge_tree(model.estimators_[2].tree_, "feature", 0, 99)
    with pytest.raises(UntrustedModel, match="decision tree: a split uses a feature index"):
        load_model(_saved(model, tmp_path))


def test_forged_histogram_predictor(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    model = HistGradientBoostingClassifier(max_iter=3, max_leaf_nodes=4).fit(x, y)
    load_model(_saved(model, tmp_path / "good"))
    model._predictors[1][0].nodes["feature_idx"][0] = 50
    with pytest.raises(UntrustedModel, match="beyond the 4 features"):
        load_model(_saved(model, tmp_path / "bad"))
    model._predictors[1][0].nodes["feature_idx"][0] = 0
    model._predictors[1][0].nodes["left"][0] = 0
    with pytest.raises(UntrustedModel, match="does not come after its parent"):
        load_model(_saved(model, tmp_path / "loop"))


def test_forged_neighbour_tree(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    model = KNeighborsClassifier(algorithm="kd_tree").fit(x, y)
    loaded = load_model(_saved(model, tmp_path / "good"))
    np.testing.assert_array_equal(loaded.predict(x[:5]), model.predict(x[:5]))
    index = model._tree.get_arrays()[1]
    index[0] = 10**6  # get_arrays returns the tree's own buffers
    assert model._tree.get_arrays()[1][0] == 10**6
    with pytest.raises(UntrustedModel, match="index array points outside its data"):
        load_model(_saved(model, tmp_path / "bad"))


def test_inner_tree_cannot_claim_more_features_than_its_forest(tmp_path: Path, xy: Any) -> None:
    x, y = xy
    model = RandomForestClassifier(n_estimators=2, max_depth=3, random_state=0).fit(x, y)
    inner = model.estimators_[0]
    inner.n_features_in_ = 50  # the forest checks inputs against its own 4
    _forge_tree(inner.tree_, "feature", 0, 40)
    with pytest.raises(UntrustedModel, match="beyond the 4 features"):
        load_model(_saved(model, tmp_path))


def test_pipelines_of_trees_after_wider_transforms_still_load(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"city": ["a", "b", "c", "d"] * 10, "n": np.arange(40.0)})
    labels = np.arange(40) % 2
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
        RandomForestClassifier(n_estimators=2, random_state=0),
    ).fit(frame, labels)
    loaded = load_model(_saved(model, tmp_path))
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
