"""The built-in text classifier (TF-IDF + logistic regression), run as a subprocess."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from algokit import JobDir, assert_round_trip

TOPICS = {
    "sports": "match goal team score player coach league season win referee",
    "finance": "market stock price bank interest rate investor fund bond profit",
    "weather": "rain sunny storm forecast wind cloud temperature snow humid cold",
}
SHARED = ["the", "a", "today", "news", "report", "people", "said", "about", "very", "new"]


def corpus(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Sentences of 8 words: 4 from the topic's vocabulary, 4 shared filler words."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(sorted(TOPICS), size=n).tolist()
    texts = []
    for label in labels:
        words = [*rng.choice(TOPICS[label].split(), 4), *rng.choice(SHARED, 4)]
        texts.append(" ".join(rng.permutation(words)))
    return texts, labels


def test_text_and_label_columns(job: JobDir) -> None:
    texts, labels = corpus(400, seed=71)
    job.write("train", {"text": texts[:300], "label": labels[:300]})
    job.write("validation", {"text": texts[300:], "label": labels[300:]}, fmt="parquet")
    job.write("test", {"text": texts[300:]})
    result = job.run("text_classification", {"word_ngrams": 2})
    result.assert_trained(job, ("model.skops",))
    assert result.last("validation:accuracy") > 0.9
    predictor = assert_round_trip(job, "text_classification", texts[300:])
    assert predictor.predict("stock market bond price")[0] == "finance"
    rows = [{"text": "goal for the team"}, {"text": "snow and wind"}]
    assert predictor.predict(rows).tolist() == ["sports", "weather"]
    proba = predictor.predict_proba(pa.table({"text": texts[300:310]}))
    assert proba.shape == (10, 3)


def test_fasttext_lines(job: JobDir) -> None:
    texts, labels = corpus(400, seed=72)
    lines = [f"__label__{label} {text}\n" for label, text in zip(labels, texts, strict=True)]
    (job.channel("train") / "train.txt").write_text("".join(lines[:300]), encoding="utf-8")
    (job.channel("test") / "test.txt").write_text("".join(lines[300:]), encoding="utf-8")
    result = job.run("text_classification", {"min_count": 2}, in_process=True)
    result.assert_trained(job, ("model.skops",))
    assert result.last("test:accuracy") > 0.9
    assert_round_trip(job, "text_classification", texts[300:])
