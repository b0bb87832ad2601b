"""Small real models on generated data with known structure, shared by the engine tests.

The target is driven by ``x0`` (strongly), ``x1`` (weakly) and nothing else, so every explainer
must rank ``x0`` first. Models are trained once per session and kept small: the whole folder
runs in well under a minute on two cores.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

N_FEATURES = 6
FEATURES = [f"x{i}" for i in range(N_FEATURES)]


def make_data(n: int = 800, *, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Features N(0, 1); y = 1 when 3·x0 + 0.5·x1 + noise > 0."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, N_FEATURES)), columns=FEATURES)
    logit = 3.0 * X["x0"] + 0.5 * X["x1"] + rng.normal(scale=0.5, size=n)
    return X, (logit > 0).to_numpy().astype(np.int64)


def make_regression(n: int = 800, *, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """y = 4·x0 + x1 + noise."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, N_FEATURES)), columns=FEATURES)
    return X, (4.0 * X["x0"] + X["x1"] + rng.normal(scale=0.3, size=n)).to_numpy()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shift(values):
    """A function only this test module defines: skops does not trust it."""
    return values + 1.0


class ExplodingClassifier(ClassifierMixin, BaseEstimator):
    """Fits, then raises on predict with the row in its message (Charter must not copy it)."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        raise ValueError(f"cannot score row {np.asarray(X)[0].tolist()}")

    def predict_proba(self, X):
        raise ValueError(f"cannot score row {np.asarray(X)[0].tolist()}")


@pytest.fixture(scope="session")
def data():
    return make_data()


@pytest.fixture(scope="session")
def gbt(data):
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = data
    return GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0).fit(X, y)


@pytest.fixture(scope="session")
def logreg(data):
    from sklearn.linear_model import LogisticRegression

    X, y = data
    return LogisticRegression(max_iter=500).fit(X, y)


@pytest.fixture(scope="session")
def xgb_model(data):
    import xgboost as xgb

    X, y = data
    return xgb.XGBClassifier(n_estimators=30, max_depth=3, random_state=0, n_jobs=1).fit(X, y)


@pytest.fixture(scope="session")
def lgb_model(data):
    import lightgbm as lgb

    X, y = data
    return lgb.LGBMClassifier(n_estimators=30, num_leaves=8, random_state=0, n_jobs=1, verbose=-1).fit(X, y)


@pytest.fixture(scope="session")
def onnx_bytes(data) -> bytes:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y = data
    model = LogisticRegression(max_iter=500).fit(X.to_numpy(np.float32), y)
    return to_onnx(model, X.to_numpy(np.float32)[:1], target_opset=17).SerializeToString()


def write_artifact(tmp_path: Path, name: str, data: bytes) -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()
