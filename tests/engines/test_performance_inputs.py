"""Issue 12, correct inputs for performance: scikit-learn's log-loss clipping, boolean labels with a
positive label, sample weights (equal to scikit-learn's ``sample_weight`` to 1e-9), and categorical
groups with an unused category through the runner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from tests.engines.conftest import make_regression
from workers.engines.data import validate
from workers.engines.errors import EngineError
from workers.engines.loading import wrap_estimator
from workers.engines.performance import performance_report
from workers.engines.runner import evaluate

TOLERANCE = 1e-9


def _weights(n: int, seed: int = 5) -> np.ndarray:
    w = np.random.default_rng(seed).gamma(2.0, 1.0, n)
    w[::17] = 0.0  # some rows weigh nothing
    return w


def test_log_loss_clips_as_scikit_learn_does_on_hard_probabilities(data):
    """A fully grown tree predicts hard 0/1 probabilities, wrong on some held-out rows: scikit-learn clips
    at the machine epsilon of float64 (2.2e-16); Charter clipped at 1e-15, a different loss."""
    X, y = data
    tree = DecisionTreeClassifier(random_state=0).fit(X[:400], y[:400])
    proba = tree.predict_proba(X[400:])
    assert set(np.unique(proba)) == {0.0, 1.0} and (tree.predict(X[400:]) != y[400:]).any()
    ours = performance_report(tree, X[400:], y[400:]).metrics["log_loss"]
    assert ours == pytest.approx(skm.log_loss(y[400:], proba), rel=1e-12, abs=0)
    weighted = performance_report(tree, X[400:], y[400:], sample_weight=_weights(400)).metrics["log_loss"]
    assert weighted == pytest.approx(skm.log_loss(y[400:], proba, sample_weight=_weights(400)), rel=1e-12, abs=0)


def test_weighted_classification_metrics_equal_scikit_learn(data, gbt):
    X, y = data
    w = _weights(len(y))
    m = performance_report(gbt, X, y, sample_weight=w).metrics
    pred, proba = gbt.predict(X), gbt.predict_proba(X)
    expected = {
        "accuracy": skm.accuracy_score(y, pred, sample_weight=w),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred, sample_weight=w),
        "precision": skm.precision_score(y, pred, sample_weight=w),
        "recall": skm.recall_score(y, pred, sample_weight=w),
        "f1": skm.f1_score(y, pred, sample_weight=w),
        "precision_macro": skm.precision_score(y, pred, average="macro", sample_weight=w),
        "recall_weighted": skm.recall_score(y, pred, average="weighted", sample_weight=w),
        "f1_weighted": skm.f1_score(y, pred, average="weighted", sample_weight=w),
        "roc_auc": skm.roc_auc_score(y, proba[:, 1], sample_weight=w),
        "brier_score": skm.brier_score_loss(y, proba[:, 1], sample_weight=w),
        "log_loss": skm.log_loss(y, proba, sample_weight=w),
    }
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, rel=0, abs=TOLERANCE), name
    assert m["accuracy"] != pytest.approx(skm.accuracy_score(y, pred), rel=0, abs=TOLERANCE)  # the weights matter
    assert m["sum_of_weights"] == pytest.approx(w.sum())


def test_weighted_multiclass_and_slice_metrics_equal_scikit_learn(data):
    X, _ = data
    y = np.digitize(X["x0"], [-0.5, 0.5])  # three classes
    model = LogisticRegression(max_iter=500).fit(X, y)
    w = _weights(len(y))
    segment = pd.Series(np.where(X["x2"] > 0, "a", "b"), name="segment")
    report = performance_report(model, X, y, sample_weight=w, slice_by=segment)
    pred, proba = model.predict(X), model.predict_proba(X)
    assert report.metrics["roc_auc_ovr_macro"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", sample_weight=w), rel=0, abs=TOLERANCE
    )
    assert report.metrics["f1_macro"] == pytest.approx(
        skm.f1_score(y, pred, average="macro", sample_weight=w), rel=0, abs=TOLERANCE
    )
    assert report.confusion_matrix_weighted == pytest.approx(skm.confusion_matrix(y, pred, sample_weight=w))
    assert report.confusion_matrix == skm.confusion_matrix(y, pred).tolist()  # rows, not weights
    for s in report.slices["slices"]:
        mask = (segment == s["value"]).to_numpy()
        assert s["count"] == mask.sum()
        assert s["metrics"]["accuracy"] == pytest.approx(
            skm.accuracy_score(y[mask], pred[mask], sample_weight=w[mask]), rel=0, abs=TOLERANCE
        )


def test_weighted_regression_metrics_equal_scikit_learn():
    X, y = make_regression(400, seed=2)
    model = LinearRegression().fit(X, y)
    w = _weights(len(y))
    m = performance_report(model, X, y, sample_weight=w).metrics
    pred = model.predict(X)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred, sample_weight=w), rel=0, abs=TOLERANCE)
    assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred, sample_weight=w), rel=0, abs=TOLERANCE)
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred, sample_weight=w), rel=0, abs=TOLERANCE)


@pytest.mark.parametrize(
    ("weights", "problem"),
    [(lambda n: -np.ones(n), "negative"), (lambda n: np.full(n, np.nan), "missing"), (lambda n: np.zeros(n), "is 0")],
    ids=["negative", "missing", "all-zero"],
)
def test_bad_sample_weights_are_refused(data, gbt, weights, problem):
    X, y = data
    with pytest.raises(EngineError) as caught:
        performance_report(gbt, X, y, sample_weight=weights(len(y)))
    assert caught.value.code == "bad_sample_weight"


@pytest.mark.parametrize(
    ("pos_label", "positive"), [(True, True), ("yes", True), (1, True), ("no", False), (False, False), (None, True)]
)
def test_boolean_labels_with_a_positive_label(data, pos_label, positive):
    X, y = data
    labels = y.astype(bool)
    model = LogisticRegression(max_iter=500).fit(X, labels)
    m = performance_report(model, X, labels, pos_label=pos_label).metrics
    pred, proba = model.predict(X), model.predict_proba(X)
    assert m["pos_label"] is positive
    assert m["precision"] == pytest.approx(skm.precision_score(labels, pred, pos_label=positive), rel=0, abs=TOLERANCE)
    assert m["recall"] == pytest.approx(skm.recall_score(labels, pred, pos_label=positive), rel=0, abs=TOLERANCE)
    column = list(model.classes_).index(positive)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(labels == positive, proba[:, column]), rel=0, abs=TOLERANCE)


def test_a_positive_label_that_is_no_class_is_refused_in_words(data):
    X, y = data
    labels = np.where(y == 1, "approved", "declined")
    model = LogisticRegression(max_iter=500).fit(X, labels)
    with pytest.raises(EngineError) as caught:
        performance_report(model, X, labels, pos_label="maybe")
    assert caught.value.code == "invalid_positive_label" and "two classes" in caught.value.message


def test_the_sample_weight_column_is_no_feature_and_weighs_the_runner_metrics(data):
    """A model that does not know its feature names takes every column but the target, the sensitive
    ones and, now, the weights: the weights are loaded on the data object (``data.sample_weight``)."""
    X, y = data
    model = LogisticRegression(max_iter=500).fit(X.to_numpy(), y)  # no feature names
    w = _weights(len(y))
    frame = X.assign(label=y, weight=w)
    loaded = validate(frame, target="label", sample_weight_column="weight")
    assert "weight" not in loaded.feature_names and np.array_equal(loaded.sample_weight, w)
    result, _ = evaluate("performance", wrap_estimator(model), frame, target="label", sensitive=[],
                         parameters={"sample_weight_column": "weight"})  # fmt: skip
    pred = model.predict(X.to_numpy())
    assert result["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w), abs=TOLERANCE)
    with pytest.raises(EngineError) as caught:
        evaluate("performance", wrap_estimator(model), frame.assign(weight=-w), target="label", sensitive=[],
                 parameters={"sample_weight_column": "weight"})  # fmt: skip
    assert caught.value.code == "bad_sample_weight" and "'weight'" in caught.value.message


def test_an_unused_category_runs_through_the_fairness_runner(data, gbt):
    X, y = data
    frame = X.assign(label=y, sex=pd.Categorical(np.where(np.arange(len(y)) % 2, "F", "M"), categories=["F", "M", "X"]))
    result, _ = evaluate("fairness", wrap_estimator(gbt), frame, target="label", sensitive=["sex"],
                         parameters={"bootstrap": 0, "positive_label": 1})  # fmt: skip
    labels = [g["label"] for g in result["report"]["analyses"][-1]["groups"]]
    assert labels == ["sex=F", "sex=M"] and not result["report"]["analyses"][-1]["empty_groups"]
