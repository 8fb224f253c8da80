"""Structural checks of the index-holding scikit-learn types on the default allow-list.

skops can check *which* types a file holds, not whether their content is sane. A few
scikit-learn types store raw node and feature indices that compiled code follows
without bounds checks: a crafted file could load fine and then crash the process, read
memory out of bounds, or loop forever on ``predict``. skops therefore does not trust
``sklearn.tree._tree.Tree`` and ``TreePredictor`` by default. modelyard trusts them
(every tree ensemble needs them) and the neighbour trees, but only after this module
has checked, for each instance anywhere in the loaded object graph, that every index
points inside its array, that children come after their parent (so traversal ends),
and that feature indices are below the feature count the owning estimator checks
inputs against. Nothing is predicted before these checks pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.errors import UntrustedModel

TREE = "sklearn.tree._tree.Tree"
PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
NEIGHBOR_TREES = ("sklearn.neighbors._kd_tree.KDTree", "sklearn.neighbors._ball_tree.BallTree")
_MAX_OBJECTS = 10_000_000
# Estimators that hand their input to inner trees (or sub-estimators on column subsets)
# without those checking its width again. Stacking and voting are not among them: their
# final and member estimators check their own inputs.
_TREE_MODEL_MODULES = (
    "sklearn.tree.",
    "sklearn.ensemble._forest",
    "sklearn.ensemble._gb",
    "sklearn.ensemble._bagging",
    "sklearn.ensemble._iforest",
    "sklearn.ensemble._hist_gradient_boosting.",
)


def _name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _refuse(kind: str, problem: str) -> UntrustedModel:
    return UntrustedModel(f"the model file holds a malformed {kind}: {problem}; refused")


def check_loaded(root: Any) -> None:
    """Walk ``root``'s object graph and check every Tree, TreePredictor and KD/Ball tree.

    Raises :class:`UntrustedModel` naming the first inconsistency.
    """
    seen: set[int] = set()
    # (object, feature bound, whether the bound comes from a chain of tree ensembles)
    stack: list[tuple[Any, int | None, bool]] = [(root, None, False)]
    while stack:
        item, n_features, in_chain = stack.pop()
        if id(item) in seen or isinstance(item, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(item))
        if len(seen) > _MAX_OBJECTS:
            raise _refuse("object graph", f"more than {_MAX_OBJECTS} objects")
        own = getattr(item, "n_features_in_", None) if hasattr(item, "__dict__") else None
        if isinstance(own, (int, np.integer)):
            n_features, in_chain = _bound(item, int(own), n_features, in_chain)
        name = _name(item)
        if name == TREE:
            _check_tree(item, n_features)
        elif name == PREDICTOR:
            _check_predictor(item, n_features)
        elif name in NEIGHBOR_TREES:
            _check_neighbors(item, name)
        children: list[Any]
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = list(item)
        elif isinstance(item, np.ndarray):
            children = list(item.ravel()) if item.dtype == object else []
        elif hasattr(item, "__dict__"):
            children = list(vars(item).values())
        else:
            children = []
        stack.extend((child, n_features, in_chain) for child in children)


def _bound(estimator: Any, own: int, outer: int | None, in_chain: bool) -> tuple[int, bool]:
    """The feature count an estimator's trees must stay below.

    Tree ensembles call their trees with ``check_input=False``: only the outermost
    ensemble checks the input's width, so inside a chain of ensembles the bound is the
    smallest count on the way down. Any other estimator (a pipeline step, a stacking
    final estimator) checks its own input, so its own count starts a new bound.
    """
    is_tree_model = type(estimator).__module__.startswith(_TREE_MODEL_MODULES)
    if is_tree_model and in_chain and outer is not None:
        return min(outer, own), True
    return own, is_tree_model


def _check_children(kind: str, left: Any, right: Any, internal: Any, count: int) -> None:
    index = np.arange(count)
    if np.any(left[internal] <= index[internal]) or np.any(right[internal] <= index[internal]):
        raise _refuse(kind, "a child node index does not come after its parent")
    if np.any(left[internal] >= count) or np.any(right[internal] >= count):
        raise _refuse(kind, f"a child node index is outside the {count} nodes")


def _check_feature(kind: str, features: Any, limit: int) -> None:
    if features.size and np.any(features < 0):
        raise _refuse(kind, "a split uses a negative feature index")
    if features.size and np.any(features >= limit):
        raise _refuse(kind, f"a split uses a feature index beyond the {limit} features")


def _check_tree(tree: Any, n_features: int | None) -> None:
    kind = "decision tree"
    state = tree.__getstate__()
    nodes = state["nodes"]
    count = int(state["node_count"])
    if len(nodes) != count or np.asarray(state["values"]).shape[0] != count:
        raise _refuse(kind, "its node arrays do not match its node count")
    left = nodes["left_child"].astype(np.int64)
    right = nodes["right_child"].astype(np.int64)
    leaf = (left == -1) & (right == -1)
    internal = ~leaf
    _check_children(kind, left, right, internal, count)
    if n_features is None:
        raise _refuse(kind, "no estimator holding it says how many features it reads")
    limit = min(int(tree.n_features), n_features)
    _check_feature(kind, nodes["feature"][internal].astype(np.int64), limit)
    if int(state["max_depth"]) > count:
        raise _refuse(kind, "its depth exceeds its node count")


def _check_predictor(predictor: Any, n_features: int | None) -> None:
    kind = "histogram gradient boosting tree"
    nodes = predictor.nodes
    count = len(nodes)
    if count == 0:
        raise _refuse(kind, "it has no nodes")
    internal = nodes["is_leaf"] == 0
    _check_children(
        kind, nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), internal, count
    )
    if n_features is None:
        raise _refuse(kind, "no estimator holding it says how many features it reads")
    _check_feature(kind, nodes["feature_idx"][internal].astype(np.int64), n_features)
    categorical = internal & (nodes["is_categorical"] != 0)
    if np.any(categorical):
        bitsets = min(len(predictor.raw_left_cat_bitsets), len(predictor.binned_left_cat_bitsets))
        idx = nodes["bitset_idx"][categorical].astype(np.int64)
        if np.any(idx < 0) or np.any(idx >= bitsets):
            raise _refuse(kind, "a categorical split points outside its bitsets")


def _check_neighbors(tree: Any, name: str) -> None:
    kind = name.rsplit(".", 1)[-1]
    data, idx, node_data, node_bounds = tree.get_arrays()
    data = np.asarray(data)
    if data.ndim != 2:
        raise _refuse(kind, "its data is not a matrix")
    samples, features = data.shape
    idx = np.asarray(idx)
    if idx.shape != (samples,) or (samples and (idx.min() < 0 or idx.max() >= samples)):
        raise _refuse(kind, "its index array points outside its data")
    nodes = len(node_data)
    start = node_data["idx_start"].astype(np.int64)
    end = node_data["idx_end"].astype(np.int64)
    if np.any(start < 0) or np.any(end > samples) or np.any(start > end):
        raise _refuse(kind, "a node's index range lies outside its data")
    inner = np.flatnonzero(node_data["is_leaf"] == 0)
    if inner.size and np.any(2 * inner + 2 >= nodes):
        raise _refuse(kind, "an inner node's children lie outside its nodes")
    bounds = np.asarray(node_bounds)
    if bounds.ndim != 3 or bounds.shape[1] != nodes or bounds.shape[2] != features:
        raise _refuse(kind, "its node bounds do not match its nodes and features")
