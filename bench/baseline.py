"""A reference floor: TF-IDF unigrams + bigrams with logistic regression (scikit-learn).

It reads exactly the ids the neural models read (same vocabulary, same truncation, same splits),
so a neural number in the report always has a bag-of-n-grams number beside it.
"""
from __future__ import annotations

import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from bench.data import EncodedData, Split
from bench.results import EpochRecord
from bench.train import EvalResult, FitResult


def _docs(split: Split) -> list[str]:
    return [" ".join(map(str, row[:n])) for row, n in zip(split.ids, split.lengths)]


class TfidfClassifier:
    """Fit once on the training part; evaluate like the neural models (loss, acc, probabilities)."""

    def __init__(self, seed: int, C: float = 1.0):
        self.vectorizer = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, 2), min_df=2,
                                          sublinear_tf=True, dtype=np.float32)
        self.clf = LogisticRegression(C=C, max_iter=1000, random_state=seed)

    def fit(self, data: EncodedData) -> FitResult:
        start = time.perf_counter()
        x = self.vectorizer.fit_transform(_docs(data.train))
        self.clf.fit(x, data.train.labels)
        seconds = time.perf_counter() - start
        train = self.evaluate(data.train)
        val, tr_eval = self.evaluate(data.val), self.evaluate(data.train_eval)
        tokens = int(data.train.lengths.sum())
        record = EpochRecord(epoch=1, train_loss=train.loss, train_acc=train.acc, train_eval_loss=tr_eval.loss,
                             train_eval_acc=tr_eval.acc, val_loss=val.loss, val_acc=val.acc,
                             gap_acc=tr_eval.acc - val.acc, gap_loss=val.loss - tr_eval.loss, lr=0.0,
                             epoch_seconds=seconds, train_tokens_per_s=tokens / seconds)
        return FitResult(history=[record], best_epoch=1, train_seconds=seconds, train_tokens=tokens)

    def evaluate(self, split: Split) -> EvalResult:
        probs = self.clf.predict_proba(self.vectorizer.transform(_docs(split))).astype(np.float32)
        loss = float(log_loss(split.labels, probs, labels=self.clf.classes_))
        return EvalResult(loss=loss, acc=float((probs.argmax(1) == split.labels).mean()), probs=probs)

    def parameter_count(self) -> int:
        return int(self.clf.coef_.size + self.clf.intercept_.size)
