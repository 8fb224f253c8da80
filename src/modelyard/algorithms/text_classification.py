"""Built-in text classification: ``python -m modelyard.algorithms.text_classification``.

Plays BlazingText's supervised role with TF-IDF features (word n-grams up to
``word_ngrams``) and a multinomial logistic regression, both from scikit-learn. Input
files hold either a text column and a label column (CSV, Parquet or JSON lines; names
set by ``text_column`` and ``label``), or fastText lines ``__label__<class> <text>`` (the
first label of a line is its class; sniffed by a first line starting with ``__label__``).

Writes to ``SM_MODEL_DIR``: ``model.skops`` (a scikit-learn ``Pipeline`` of
``TfidfVectorizer`` and ``LogisticRegression`` in skops format, loaded with an explicit
trusted-types list), ``signature.json`` and ``metadata.json``. Metric lines (step 0):
``<channel>:accuracy`` for train, validation and test.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from modelyard.algorithms._contract import Contract, DataError, run_entry_point
from modelyard.algorithms._model_files import (
    read_signature,
    write_metadata,
    write_predictions,
    write_signature,
)
from modelyard.algorithms._schemas import (
    ColumnSpec,
    OutputSpec,
    Signature,
    TextClassificationHyperparameters,
)
from modelyard.algorithms._tables import channel_files, class_labels, label_array, read_file
from modelyard.flavors._sklearn import import_skops

NAME = "text_classification"
MODEL_FILE = "model.skops"
FASTTEXT_PREFIX = "__label__"
# Everything in the pipeline is trusted by skops by default (scikit-learn estimators,
# NumPy types); nothing else is trusted, and nothing is taken from the file itself.
TRUSTED_TYPES: list[str] = []


class TextPredictor:
    """Classifies texts with the fitted TF-IDF + logistic-regression pipeline."""

    def __init__(self, pipeline: Pipeline, signature: Signature) -> None:
        self.pipeline = pipeline
        self.signature = signature

    def _texts(self, data: Any) -> list[str]:
        column = self.signature.inputs[0].name
        if isinstance(data, str):
            return [data]
        if isinstance(data, pa.Table):
            return [str(text) for text in data.column(column).to_pylist()]
        if type(data).__module__.startswith("pandas"):
            return [str(text) for text in data[column].tolist()]
        texts = []
        for number, row in enumerate(data):
            if isinstance(row, Mapping):
                if column not in row:
                    raise ValueError(f"row {number} lacks the text field {column!r}")
                row = row[column]
            if not isinstance(row, str):
                raise ValueError(f"row {number} is a {type(row).__name__}, not text")
            texts.append(row)
        return texts

    def predict(self, data: Any) -> npt.NDArray[Any]:
        """Predicted class per text; accepts a string, strings, mappings, Arrow or pandas."""
        return np.asarray(self.pipeline.predict(self._texts(data)))

    def predict_proba(self, data: Any) -> npt.NDArray[np.float64]:
        """Class probabilities, shape (texts, classes), columns in ``classes`` order."""
        return np.asarray(self.pipeline.predict_proba(self._texts(data)), dtype=np.float64)


def load(model_dir: str | Path) -> TextPredictor:
    """Load ``model.skops`` (trusting only skops' defaults) and ``signature.json``."""
    folder = Path(model_dir)
    pipeline = import_skops().load(folder / MODEL_FILE, trusted=TRUSTED_TYPES)
    if not isinstance(pipeline, Pipeline):
        raise ValueError(f"{folder / MODEL_FILE} holds a {type(pipeline).__name__}, not a Pipeline")
    return TextPredictor(pipeline, read_signature(folder))


def read_fasttext(path: Path, text_column: str, label: str) -> pa.Table:
    """fastText supervised lines: leading ``__label__X`` tokens, then the text."""
    texts: list[str] = []
    labels: list[str | None] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            tokens = line.split()
            if not tokens:
                continue
            names = []
            while tokens and tokens[0].startswith(FASTTEXT_PREFIX):
                names.append(tokens.pop(0).removeprefix(FASTTEXT_PREFIX))
            labels.append(names[0] if names else None)
            texts.append(" ".join(tokens))
    return pa.table(
        {text_column: pa.array(texts, pa.string()), label: pa.array(labels, pa.string())}
    )


def _is_fasttext(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(64).lstrip().startswith(FASTTEXT_PREFIX.encode())


def read_texts(
    contract: Contract, channel: str, hps: TextClassificationHyperparameters, *, required: bool
) -> tuple[list[str], npt.NDArray[Any] | None] | None:
    """A channel's texts and labels (None when absent); DataError naming what is wrong."""
    folder = contract.channel(channel)
    if folder is None:
        if required:
            raise DataError(f"channel '{channel}' is required (SM_CHANNEL_{channel.upper()})")
        return None
    tables = []
    for path in channel_files(channel, folder):
        try:
            if _is_fasttext(path):
                table = read_fasttext(path, hps.text_column, hps.label)
            else:
                table = read_file(path)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise DataError(f"channel '{channel}': cannot read {path}: {exc}") from None
        if table.num_rows:
            tables.append(
                table.select([c for c in (hps.text_column, hps.label) if c in table.column_names])
            )
    if not tables:
        raise DataError(f"channel '{channel}' is empty: its files in {folder} have no rows")
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as exc:
        raise DataError(
            f"channel '{channel}': files disagree on the text and label columns: {exc}"
        ) from None
    if hps.text_column not in table.column_names:
        raise DataError(
            f"channel '{channel}' has no text column '{hps.text_column}'; set `text_column` "
            "or use fastText lines '__label__<class> <text>'"
        )
    text = table.column(hps.text_column)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        raise DataError(
            f"text column '{hps.text_column}' in channel '{channel}' has type {text.type}"
        )
    if text.null_count:
        raise DataError(
            f"text column '{hps.text_column}' in channel '{channel}' has {text.null_count} "
            "missing values"
        )
    label_needed = channel != "test"
    if hps.label not in table.column_names or table.column(hps.label).null_count == table.num_rows:
        if label_needed:
            raise DataError(
                f"channel '{channel}' has no label column '{hps.label}' (nor __label__ prefixes)"
            )
        return text.to_pylist(), None
    return text.to_pylist(), class_labels(label_array(table, hps.label, channel))


def train(contract: Contract) -> None:
    """Validate, read, fit, save; see the module docstring for inputs and outputs."""
    hps = contract.hyperparameters(TextClassificationHyperparameters)
    contract.require_single_host(NAME)
    train_data = read_texts(contract, "train", hps, required=True)
    assert train_data is not None
    texts, labels = train_data
    assert labels is not None
    classes = np.unique(labels)
    if len(classes) < 2:
        raise DataError(f"channel 'train' has {len(classes)} class(es); at least 2 are needed")
    others = {
        name: read_texts(contract, name, hps, required=False) for name in ("validation", "test")
    }
    pipeline = Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    ngram_range=(1, hps.word_ngrams),
                    min_df=hps.min_count,
                    max_features=hps.max_features,
                    lowercase=hps.lowercase,
                    sublinear_tf=hps.sublinear_tf,
                    dtype=np.float64,
                ),
            ),
            (
                "classifier",
                LogisticRegression(
                    C=np.inf if hps.wd == 0 else 1.0 / (len(texts) * hps.wd), max_iter=hps.max_iter
                ),
            ),
        ]
    )
    try:
        pipeline.fit(texts, labels)
    except ValueError as exc:  # e.g. "empty vocabulary" when min_count prunes every term
        raise DataError(f"channel 'train': {exc}") from None
    signature = Signature(
        algorithm=NAME,
        inputs=[ColumnSpec(name=hps.text_column, type="string")],
        label=ColumnSpec(name=hps.label, type=str(labels.dtype)),
        output=OutputSpec(
            name="label",
            dtype=str(labels.dtype),
            shape=[-1],
            description="predicted class; predict_proba gives (texts, classes) probabilities",
        ),
        classes=classes.tolist(),
    )
    predictor = TextPredictor(pipeline, signature)
    for name, split in (("train", train_data), *others.items()):
        if split is not None and split[1] is not None:
            accuracy = float(np.mean(predictor.predict(split[0]) == split[1]))
            contract.metrics.emit(f"{name}:accuracy", accuracy)
    contract.model_dir.mkdir(parents=True, exist_ok=True)
    import_skops().dump(pipeline, contract.model_dir / MODEL_FILE)
    write_signature(contract, signature)
    test = others["test"]
    if test is not None:
        write_predictions(contract, predictor.predict(test[0]))
    vocabulary = len(pipeline.named_steps["tfidf"].vocabulary_)
    write_metadata(
        contract, NAME, hps, libraries=["scikit-learn", "skops"], extra={"vocabulary": vocabulary}
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run :func:`train` under the container contract; returns the exit status.

    ``argv`` and ``environ`` default to the process's own arguments and environment.
    """
    return run_entry_point(NAME, train, argv, environ)


if __name__ == "__main__":
    sys.exit(main())
