"""Declarations of the built-in algorithms: hyperparameters, model files, metrics, signatures.

Everything here is pure pydantic, so the jobs domain and the SDK can validate a built-in
job's hyperparameters (:func:`modelyard.algorithms.validate_hyperparameters`) before
launching it, without importing XGBoost or scikit-learn, and ``docs/algorithms.md`` is
rendered from these classes by :mod:`modelyard.algorithms._docs`.

Hyperparameter values arrive as strings in SageMaker's ``hyperparameters.json`` and on the
command line; pydantic's lax mode turns ``"100"``, ``"0.3"`` and ``"true"`` into the declared
types. Every field has a description and, where it is numeric, its accepted range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Hyperparameters(BaseModel):
    """Base of every algorithm's hyperparameters: immutable, unknown names rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TabularHyperparameters(Hyperparameters):
    """Where the label is in a table: by column name, or by position in headerless CSV."""

    label: str = Field("label", min_length=1, description="Name of the label column.")
    label_column_index: int | None = Field(
        None,
        ge=0,
        description=(
            "SageMaker's built-in CSV convention: when set, CSV files have no header row and "
            "the label is the column at this 0-based position (usually 0). Columns are then "
            "named f0, f1, ... by position and every other column is a feature. Overrides "
            "`label`."
        ),
    )


XGBoostObjective = Literal[
    "binary:logistic",
    "binary:logitraw",
    "binary:hinge",
    "multi:softmax",
    "multi:softprob",
    "reg:squarederror",
    "reg:squaredlogerror",
    "reg:pseudohubererror",
    "reg:absoluteerror",
    "reg:logistic",
    "reg:gamma",
    "reg:tweedie",
    "count:poisson",
    "rank:pairwise",
    "rank:ndcg",
    "rank:map",
]


class XGBoostHyperparameters(TabularHyperparameters):
    """Gradient-boosted trees with XGBoost (classification, regression, ranking)."""

    objective: XGBoostObjective = Field(
        "reg:squarederror",
        description=(
            "Learning task: binary:* (labels 0/1), multi:* (labels 0..num_class-1), "
            "reg:*/count:* (numeric labels) or rank:* (relevance labels, needs `group`)."
        ),
    )
    num_round: int = Field(100, ge=1, le=100_000, description="Number of boosting rounds.")
    eta: float = Field(0.3, gt=0, le=1, description="Learning rate (shrinkage per round).")
    max_depth: int = Field(6, ge=0, le=64, description="Maximum tree depth (0: no limit).")
    min_child_weight: float = Field(
        1.0, ge=0, description="Minimum sum of instance hessian in a leaf."
    )
    gamma: float = Field(0.0, ge=0, description="Minimum loss reduction to split a leaf.")
    subsample: float = Field(1.0, gt=0, le=1, description="Row sampling ratio per tree.")
    colsample_bytree: float = Field(1.0, gt=0, le=1, description="Column sampling ratio per tree.")
    reg_lambda: float = Field(1.0, ge=0, alias="lambda", description="L2 regularisation.")
    alpha: float = Field(0.0, ge=0, description="L1 regularisation.")
    scale_pos_weight: float = Field(
        1.0, gt=0, description="Weight of positive examples (binary objectives)."
    )
    tree_method: Literal["hist", "approx", "exact"] = Field(
        "hist", description="Tree construction algorithm."
    )
    max_bin: int = Field(256, ge=2, le=65_536, description="Histogram bins per feature.")
    eval_metric: str | None = Field(
        None,
        description=(
            "Comma-separated XGBoost metrics (rmse, logloss, auc, ndcg@10, ...); "
            "default: the objective's own metric."
        ),
    )
    num_class: int | None = Field(
        None, ge=2, description="Number of classes for multi:*; default: max label + 1."
    )
    early_stopping_rounds: int | None = Field(
        None,
        ge=1,
        description=(
            "Stop when the last validation metric has not improved for this many rounds; "
            "needs a validation channel. The saved model keeps the best round."
        ),
    )
    group: str | None = Field(
        None, description="Query-id column for rank:* objectives (rows of a query together)."
    )
    nthread: int | None = Field(None, ge=1, description="Threads; default SM_NUM_CPUS.")
    seed: int = Field(0, ge=0, description="Random seed.")


LightGBMObjective = Literal[
    "regression",
    "regression_l1",
    "huber",
    "poisson",
    "tweedie",
    "binary",
    "multiclass",
    "multiclassova",
    "lambdarank",
    "rank_xendcg",
]


class LightGBMHyperparameters(TabularHyperparameters):
    """Gradient-boosted trees with LightGBM (classification, regression, ranking)."""

    objective: LightGBMObjective = Field(
        "regression",
        description=(
            "Learning task: binary (labels 0/1), multiclass* (labels 0..num_class-1), "
            "regression* (numeric labels) or lambdarank/rank_xendcg (needs `group`)."
        ),
    )
    num_boost_round: int = Field(100, ge=1, le=100_000, description="Boosting rounds.")
    learning_rate: float = Field(0.1, gt=0, le=1, description="Shrinkage per round.")
    num_leaves: int = Field(31, ge=2, le=131_072, description="Maximum leaves per tree.")
    max_depth: int = Field(-1, ge=-1, le=64, description="Maximum depth (-1: no limit).")
    min_data_in_leaf: int = Field(20, ge=0, description="Minimum rows in a leaf.")
    feature_fraction: float = Field(1.0, gt=0, le=1, description="Column sampling ratio.")
    bagging_fraction: float = Field(1.0, gt=0, le=1, description="Row sampling ratio.")
    bagging_freq: int = Field(0, ge=0, description="Resample rows every k rounds (0: off).")
    lambda_l1: float = Field(0.0, ge=0, description="L1 regularisation.")
    lambda_l2: float = Field(0.0, ge=0, description="L2 regularisation.")
    max_bin: int = Field(255, ge=2, le=65_535, description="Histogram bins per feature.")
    metric: str | None = Field(
        None,
        description=(
            "Comma-separated LightGBM metrics (l2, binary_logloss, auc, ndcg, ...); "
            "default: the objective's own metric."
        ),
    )
    num_class: int | None = Field(
        None, ge=2, description="Classes for multiclass*; default: max label + 1."
    )
    early_stopping_rounds: int | None = Field(
        None,
        ge=1,
        description=(
            "Stop when the first validation metric has not improved for this many rounds; "
            "needs a validation channel. The saved model keeps the best round."
        ),
    )
    group: str | None = Field(None, description="Query-id column for ranking objectives.")
    num_threads: int | None = Field(None, ge=1, description="Threads; default SM_NUM_CPUS.")
    seed: int = Field(0, ge=0, description="Random seed.")


class LinearLearnerHyperparameters(TabularHyperparameters):
    """Regularised linear and logistic regression (scikit-learn underneath).

    The objective is ``mean(loss) + l1 * |w|_1 + wd / 2 * |w|_2^2`` for every predictor type
    (half squared error for the regressor, log loss for the classifiers).
    """

    predictor_type: Literal["binary_classifier", "multiclass_classifier", "regressor"] = Field(
        description="What to predict: one of two classes, one of many, or a number."
    )
    l1: float = Field(0.0, ge=0, description="L1 regularisation strength per example.")
    wd: float = Field(0.0, ge=0, description="L2 regularisation (weight decay) per example.")
    normalize_data: bool = Field(True, description="Standardise features (mean 0, sd 1).")
    num_classes: int | None = Field(
        None, ge=2, description="Expected classes for multiclass_classifier (checked)."
    )
    max_iter: int = Field(1000, ge=1, le=1_000_000, description="Solver iterations.")
    tol: float = Field(1e-4, gt=0, description="Solver tolerance.")


class KMeansHyperparameters(Hyperparameters):
    """k-means clustering (scikit-learn). Every column is a feature."""

    k: int = Field(ge=1, le=100_000, description="Number of clusters.")
    init: Literal["k-means++", "random"] = Field("k-means++", description="Centre seeding.")
    max_iter: int = Field(300, ge=1, le=100_000, description="Lloyd iterations per run.")
    n_init: int = Field(1, ge=1, le=100, description="Runs with different seeds; best kept.")
    tol: float = Field(1e-4, ge=0, description="Relative tolerance on centre movement.")
    feature_dim: int | None = Field(None, ge=1, description="Expected feature count (checked).")
    seed: int = Field(0, ge=0, description="Random seed.")


class KNNHyperparameters(TabularHyperparameters):
    """k-nearest-neighbours classification or regression (scikit-learn)."""

    predictor_type: Literal["classifier", "regressor"] = Field(
        description="Majority vote of the neighbours' labels, or their mean."
    )
    k: int = Field(5, ge=1, le=10_000, description="Number of neighbours.")
    index_metric: Literal["L2", "COSINE"] = Field("L2", description="Distance between rows.")
    sample_size: int | None = Field(
        None, ge=1, description="Keep a random sample of this many training rows."
    )
    seed: int = Field(0, ge=0, description="Random seed for `sample_size`.")


class PCAHyperparameters(Hyperparameters):
    """Principal component analysis (scikit-learn). Every column is a feature."""

    num_components: int = Field(ge=1, description="Number of components to keep.")
    algorithm_mode: Literal["regular", "randomized"] = Field(
        "regular", description="Exact SVD, or randomised SVD for large inputs."
    )
    feature_dim: int | None = Field(None, ge=1, description="Expected feature count (checked).")
    seed: int = Field(0, ge=0, description="Random seed (randomized mode).")


class RandomCutForestHyperparameters(Hyperparameters):
    """Anomaly detection with SageMaker RCF's interface; an Isolation Forest underneath.

    This is **not** Amazon's Random Cut Forest: it is scikit-learn's ``IsolationForest``
    (splits on a uniformly random feature, not in proportion to feature ranges). It keeps
    RCF's hyperparameter names and its convention that a higher score is more anomalous;
    scores are isolation scores in (0, 1], not comparable with SageMaker RCF's.
    """

    num_trees: int = Field(100, ge=1, le=10_000, description="Number of trees.")
    num_samples_per_tree: int = Field(
        256, ge=1, le=1_000_000, description="Rows sampled to build each tree."
    )
    feature_dim: int | None = Field(None, ge=1, description="Expected feature count (checked).")
    label: str | None = Field(
        None,
        description=(
            "Optional column of 0/1 anomaly labels; excluded from the features and used "
            "only for metrics on the validation and test channels."
        ),
    )
    seed: int = Field(0, ge=0, description="Random seed.")


class TextClassificationHyperparameters(Hyperparameters):
    """Text classification: TF-IDF features and a logistic regression (scikit-learn)."""

    text_column: str = Field("text", min_length=1, description="Column holding the text.")
    label: str = Field("label", min_length=1, description="Column holding the class.")
    word_ngrams: int = Field(1, ge=1, le=5, description="Use word n-grams up to this length.")
    min_count: int = Field(1, ge=1, description="Ignore terms in fewer documents than this.")
    max_features: int | None = Field(None, ge=1, description="Keep the most frequent terms.")
    lowercase: bool = Field(True, description="Lower-case text before tokenising.")
    sublinear_tf: bool = Field(True, description="Use 1 + log(tf) term frequencies.")
    wd: float = Field(1e-4, ge=0, description="L2 regularisation strength per example.")
    max_iter: int = Field(1000, ge=1, le=1_000_000, description="Solver iterations.")


class ForecastingHyperparameters(Hyperparameters):
    """Time-series forecasting with statsmodels (ETS or ARIMA), one model per series."""

    prediction_length: int = Field(ge=1, le=10_000, description="Steps to forecast.")
    model: Literal["ets", "arima"] = Field("ets", description="Model family.")
    frequency: str | None = Field(
        None,
        description="Pandas offset alias of the series (D, h, W, MS...); default: inferred.",
    )
    seasonal_periods: int | None = Field(
        None,
        ge=0,
        description="Season length (0: none); default from the frequency (h 24, D 7, MS 12).",
    )
    trend: Literal["none", "add", "add_damped"] = Field("add", description="ETS trend component.")
    seasonal: Literal["none", "add", "mul"] = Field("add", description="ETS seasonal component.")
    error: Literal["add", "mul"] = Field("add", description="ETS error component.")
    arima_order: str = Field(
        "1,1,1", pattern=r"^\d+,\d+,\d+$", description="ARIMA (p,d,q) as 'p,d,q'."
    )
    seasonal_order: str = Field(
        "0,0,0",
        pattern=r"^\d+,\d+,\d+$",
        description="Seasonal ARIMA (P,D,Q) as 'P,D,Q'; the period is `seasonal_periods`.",
    )
    timestamp_column: str = Field("timestamp", min_length=1, description="Time column.")
    target_column: str = Field("target", min_length=1, description="Value column.")
    item_id_column: str = Field(
        "item_id", min_length=1, description="Series id column, used when present."
    )


@dataclass(frozen=True)
class AlgorithmInfo:
    """What docs and the jobs domain need to know about one built-in algorithm."""

    name: str
    module: str
    hyperparameters: type[Hyperparameters]
    model_files: tuple[str, ...]
    channels: str
    metrics: str
    output: str


def _info(
    name: str,
    hyperparameters: type[Hyperparameters],
    model_files: tuple[str, ...],
    channels: str,
    metrics: str,
    output: str,
) -> AlgorithmInfo:
    return AlgorithmInfo(
        name,
        f"modelyard.algorithms.{name}",
        hyperparameters,
        model_files,
        channels,
        metrics,
        output,
    )


_TABULAR = "train (required), validation and test (optional): numeric features and a label"
ALGORITHMS: dict[str, AlgorithmInfo] = {
    info.name: info
    for info in (
        _info(
            "xgboost",
            XGBoostHyperparameters,
            ("model.ubj",),
            _TABULAR + "; rank:* also a `group` column",
            "`validation:<metric>` every round; `train:<metric>` and `test:<metric>` once, for "
            "the saved model",
            "probability of class 1 (binary:logistic), class probabilities (multi:softprob), "
            "class index (multi:softmax), a value (reg:*) or a relevance score (rank:*)",
        ),
        _info(
            "lightgbm",
            LightGBMHyperparameters,
            ("model.txt",),
            _TABULAR + "; ranking objectives also a `group` column",
            "`validation:<metric>` every round; `train:<metric>` and `test:<metric>` once, for "
            "the saved model",
            "probability of class 1 (binary), class probabilities (multiclass*), a value "
            "(regression*) or a relevance score (ranking)",
        ),
        _info(
            "linear_learner",
            LinearLearnerHyperparameters,
            ("model.npz", "model.json"),
            _TABULAR,
            "`<channel>:accuracy` and `<channel>:log_loss` (classifiers), `<channel>:mse` and "
            "`<channel>:r2` (regressor) for train, validation and test",
            "predicted label (`predict`), class probabilities (`predict_proba`, classifiers)",
        ),
        _info(
            "kmeans",
            KMeansHyperparameters,
            ("model.npz", "model.json"),
            "train (required), validation and test (optional): numeric features only",
            "`<channel>:msd` (mean squared distance to the nearest centre) and `<channel>:ssd` "
            "(their sum) for train, validation and test",
            "index of the nearest centre",
        ),
        _info(
            "knn",
            KNNHyperparameters,
            ("model.npz", "model.json"),
            _TABULAR,
            "`<channel>:accuracy` (classifier) or `<channel>:mse` (regressor) for validation "
            "and test",
            "majority label of the k nearest training rows, or their mean label",
        ),
        _info(
            "pca",
            PCAHyperparameters,
            ("model.npz", "model.json"),
            "train (required), validation and test (optional): numeric features only",
            "`train:explained_variance_ratio`; `<channel>:reconstruction_mse` for train, "
            "validation and test",
            "projection on the num_components principal components",
        ),
        _info(
            "random_cut_forest",
            RandomCutForestHyperparameters,
            ("model.skops",),
            "train (required), validation and test (optional): numeric features, optionally "
            "a 0/1 anomaly label column named by `label`",
            "`<channel>:mean_score` for train, validation and test; `<channel>:auc` where "
            "labels are given",
            "anomaly score in (0, 1], higher = more anomalous",
        ),
        _info(
            "text_classification",
            TextClassificationHyperparameters,
            ("model.skops",),
            "train (required), validation and test (optional): a text and a label column, or "
            "fastText lines `__label__<class> <text>`",
            "`<channel>:accuracy` for train, validation and test",
            "predicted label (`predict`), class probabilities (`predict_proba`)",
        ),
        _info(
            "forecasting",
            ForecastingHyperparameters,
            ("model.json",),
            "train (required): timestamp, target and optional item_id columns",
            "`validation:mape` (a fraction) and `validation:rmse` on a holdout of each series' "
            "last prediction_length steps",
            "prediction_length forecasts per series (item ids in, rows of forecasts out); "
            "`forecast.csv` in SM_OUTPUT_DATA_DIR",
        ),
    )
}
"""The built-in algorithms by name; ``python -m <module>`` runs one under the contract."""

HYPERPARAMETERS: dict[str, type[Hyperparameters]] = {
    name: info.hyperparameters for name, info in ALGORITHMS.items()
}


class ColumnSpec(BaseModel):
    """One input column: its name and Arrow type (``str(pyarrow.DataType)``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: str


class OutputSpec(BaseModel):
    """What ``predict`` returns: a name, a NumPy dtype, a shape (-1: any) and its meaning."""

    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str
    shape: list[int]
    description: str


class Signature(BaseModel):
    """``signature.json``: the columns a model reads, its label and what it predicts.

    ``inputs`` are in the order ``predict`` expects for positional rows or arrays.
    """

    model_config = ConfigDict(frozen=True)

    algorithm: str
    inputs: list[ColumnSpec]
    label: ColumnSpec | None = None
    group: ColumnSpec | None = None
    output: OutputSpec
    classes: list[str] | list[int] | list[float] | None = None

    @property
    def feature_names(self) -> list[str]:
        """Input column names, in order."""
        return [column.name for column in self.inputs]
