"""Performance metrics against scikit-learn's own, slices, calibration and figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from tests.engines.conftest import ExplodingClassifier, make_regression, write_artifact
from workers.engines.errors import EngineError
from workers.engines.loading import load_model
from workers.engines.performance import calibration, performance_report


def test_binary_classifier_metrics_equal_scikit_learn(data, gbt):
    X, y = data
    report = performance_report(gbt, X, y)
    m = report.metrics
    pred, proba = gbt.predict(X), gbt.predict_proba(X)[:, 1]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, gbt.predict_proba(X)))
    assert report.confusion_matrix == skm.confusion_matrix(y, pred).tolist()
    data_out = report.as_dict()
    json.dumps(data_out, allow_nan=False)
    assert set(data_out["figures"]) == {"confusion_matrix", "roc", "calibration"}
    assert data_out["figures"]["confusion_matrix"]["data"][0]["type"] == "heatmap"
    # labels 0 and 1 are classes: category axes, or Plotly draws a number line from -0.5 to 1.5
    layout = data_out["figures"]["confusion_matrix"]["layout"]
    assert layout["xaxis"]["type"] == layout["yaxis"]["type"] == "category"


def test_bar_charts_keep_numeric_looking_groups_as_categories():
    from workers.engines import figures

    assert figures.bar([0, 1], [0.3, 0.4], title="t")["layout"]["xaxis"]["type"] == "category"
    assert figures.bar(["0", "1"], [0.3, 0.4], title="t", horizontal=True)["layout"]["yaxis"]["type"] == "category"
    assert figures.grouped_bars([0, 1], {"a": [1, 2]}, title="t")["layout"]["xaxis"]["type"] == "category"


def test_calibration_curve_equals_scikit_learn():
    rng = np.random.default_rng(0)
    p = rng.random(5000)
    y = rng.random(5000) < p**1.5
    ours = calibration(y, p, bins=10)
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(ours["fraction_positive"], frac)
    np.testing.assert_allclose(ours["mean_predicted"], mean)
    assert sum(ours["counts"]) == 5000 and 0 < ours["expected_calibration_error"] < 0.2


def test_multiclass_metrics(data):
    from sklearn.linear_model import LogisticRegression

    X, _ = data
    y = np.digitize(X["x0"], [-0.5, 0.5])
    model = LogisticRegression(max_iter=500).fit(X, y)
    m = performance_report(model, X, y).metrics
    assert m["roc_auc_ovr_macro"] == pytest.approx(skm.roc_auc_score(y, model.predict_proba(X), multi_class="ovr"))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, model.predict(X), average="macro"))
    assert "roc_auc" not in m


def test_regression_metrics_and_slices():
    from sklearn.linear_model import Ridge

    X, y = make_regression(500)
    model = Ridge().fit(X, y)
    segment = pd.Series(np.where(X["x2"] > 1.5, "tail", "body"), name="segment")
    report = performance_report(model, X, y, slice_by=segment, small_slice_threshold=100)
    pred = model.predict(X)
    assert report.metrics["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert report.metrics["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert report.metrics["r2"] == pytest.approx(skm.r2_score(y, pred))
    slices = {s["value"]: s for s in report.slices["slices"]}
    tail = (segment == "tail").to_numpy()
    assert slices["tail"]["count"] == tail.sum() and slices["tail"]["small"]
    assert slices["tail"]["metrics"]["mae"] == pytest.approx(skm.mean_absolute_error(y[tail], pred[tail]))
    json.dumps(report.as_dict(), allow_nan=False)


def test_numeric_slices_are_quantile_bins_in_order(data, gbt):
    X, y = data
    report = performance_report(gbt, X, y, slice_by=X["x3"])
    slices = report.slices
    assert slices["binned"] and len(slices["slices"]) == 5
    assert sum(s["count"] for s in slices["slices"]) == len(X)
    labels = [s["value"] for s in slices["slices"]]
    assert labels[0].startswith("≤ ") and labels[-1].startswith("> ")  # the extremes are no label
    cuts = [float(labels[0][2:])] + [float(v.strip("(]").split(", ")[1]) for v in labels[1:-1]]
    assert cuts == sorted(cuts) and float(labels[-1][2:]) == cuts[-1]
    assert f"{X['x3'].max():.4g}" not in " ".join(labels) and f"{X['x3'].min():.4g}" not in " ".join(labels)


def test_onnx_classifier_performance(tmp_path, data, onnx_bytes):
    X, y = data
    path, digest = write_artifact(tmp_path, "model.onnx", onnx_bytes)
    report = performance_report(load_model(path, artifact_format="onnx", expected_sha256=digest), X, y)
    assert report.labels == [0, 1] and report.metrics["accuracy"] > 0.9 and report.metrics["roc_auc"] > 0.97


def test_a_model_that_raises_is_model_failed(data):
    X, y = data
    with pytest.raises(EngineError) as err:
        performance_report(ExplodingClassifier().fit(X, y), X, y)
    assert err.value.code == "model_failed"
