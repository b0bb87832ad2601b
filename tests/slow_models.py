"""A model slow on purpose, pickled into artifacts by the worker-crash tests and loaded by real workers
(which import it from here): a logistic regression that sleeps in every prediction call."""

from __future__ import annotations

import time

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


class SlowClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, delay: float = 0.3):
        self.delay = delay

    def fit(self, X, y):
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        self.feature_names_in_ = self.model_.feature_names_in_
        self.n_features_in_ = self.model_.n_features_in_
        return self

    def predict(self, X):
        time.sleep(self.delay)
        return self.model_.predict(self._frame(X))

    def predict_proba(self, X):
        time.sleep(self.delay)
        return self.model_.predict_proba(self._frame(X))

    def _frame(self, X):
        import pandas as pd

        return X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=self.feature_names_in_)
