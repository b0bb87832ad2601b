"""Robustness: metrics under noise and missing values; bad inputs reported, never crashing the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from tests.engines.conftest import ExplodingClassifier, make_regression
from workers.engines.errors import EngineError
from workers.engines.robustness import robustness_report


class FragileRegressor(RegressorMixin, BaseEstimator):
    """Linear in x0, raises on finite values beyond 50, returns inf beyond 20 (and for inf), takes NaN."""

    def fit(self, X, y):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        A = np.asarray(X, dtype=np.float64)
        if A.shape[1] != self.n_features_in_:
            raise ValueError("wrong width")
        finite = A[np.isfinite(A)]
        if finite.size and np.abs(finite).max() > 50:
            raise OverflowError("value out of range")
        out = 4.0 * A[:, 0]
        out[np.nanmax(np.abs(A), axis=1, initial=0) > 20] = np.inf
        return out


def test_noise_and_missing_values_on_a_model_without_nan_support(data, gbt):
    X, y = data
    report = robustness_report(gbt, X, y, sample_rows=400, seed=1)
    assert report.metric == "accuracy" and report.baseline > 0.9
    assert report.noise[-1]["delta"] < 0 and report.noise[-1]["changed_share"] > report.noise[0]["changed_share"]
    assert report.model_accepts_nan is False
    first = report.missing_values[0]
    assert first["outcome"] == "raised" and first["error_type"] == "ValueError"
    assert first["mean_imputed"]["outcome"] == "returned" and first["mean_imputed"]["metric"] > 0.5
    outcomes = {c["case"]: c["outcome"] for c in report.malformed}
    assert outcomes["missing_column"] == "raised" and outcomes["text_in_numeric_column"] == "raised"
    assert outcomes["single_row"] == "returned"
    data_out = report.as_dict()
    json.dumps(data_out, allow_nan=False)
    assert "nan_rows" in data_out["summary"]["raised_on"]


def test_a_model_that_takes_nan(data):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = data
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    report = robustness_report(model, X, y, sample_rows=300)
    assert report.model_accepts_nan is True
    assert "mean_imputed" not in report.missing_values[0]
    assert "nan_rows" in report.summary()["accepted_malformed"]


def test_crashes_and_non_finite_outputs_are_reported_not_raised():
    X, y = make_regression(300)
    report = robustness_report(FragileRegressor().fit(X, y), X, y, sample_rows=200)
    assert report.metric == "rmse" and report.higher_is_better is False
    cases = {c["case"]: c for c in report.out_of_range + report.malformed}
    assert cases["all_features_above_range"]["outcome"] == "raised"
    assert cases["all_features_above_range"]["error_type"] == "OverflowError"
    assert cases["huge_values"]["outcome"] == "raised"
    assert cases["infinite_values"]["outcome"] == "returned_non_finite"
    assert cases["extra_column"]["outcome"] == "raised"
    assert report.model_accepts_nan is True  # it answers, with NaN predictions where x0 is blank
    json.dumps(report.as_dict(), allow_nan=False)


def test_a_model_that_always_raises_fails_the_run(data):
    X, y = data
    with pytest.raises(EngineError) as err:
        robustness_report(ExplodingClassifier().fit(X, y), X, y)
    assert err.value.code == "model_failed" and "[" not in err.value.message
