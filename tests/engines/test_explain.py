"""SHAP and LIME on real models: additivity, the driving feature first, determinism, failures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.engines.conftest import ExplodingClassifier, make_regression, write_artifact
from workers.engines.errors import EngineError
from workers.engines.explain import lime_explanations, shap_summary
from workers.engines.loading import load_model, wrap_estimator


def _json(result) -> dict:
    data = result.as_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    return data


def test_tree_shap_on_gradient_boosting_adds_up_to_the_log_odds(data, gbt):
    X, _ = data
    summary = shap_summary(gbt, X, seed=0)
    assert (summary.explainer, summary.output_space, summary.explained_output) == ("tree", "log-odds", "class 1")
    assert summary.rows_explained == len(X)
    np.testing.assert_allclose(summary.base_value + summary.values.sum(axis=1), gbt.decision_function(X), atol=1e-6)
    assert summary.additivity["holds"] and summary.additivity["max_abs_error"] < 1e-6
    assert summary.ranking[0] == "x0" and summary.ranking[1] == "x1"
    data_out = _json(summary)
    assert len(data_out["rows"]) == 10 and len(data_out["figures"]["dependence"]) == 3
    row = data_out["rows"][0]
    assert row["output"] == pytest.approx(row["model_output"], abs=1e-6)
    assert abs(row["contributions"][0]["shap"]) >= abs(row["contributions"][-1]["shap"])
    beeswarm = data_out["figures"]["beeswarm"]["data"][0]
    assert beeswarm["type"] == "scattergl" and len(beeswarm["x"]) == len(X) * 6


@pytest.mark.parametrize("backend", ["xgboost", "lightgbm"])
def test_tree_shap_on_loaded_xgboost_and_lightgbm(tmp_path, data, xgb_model, lgb_model, backend):
    X, _ = data
    if backend == "xgboost":
        xgb_model.save_model(tmp_path / "m.ubj")
        raw = (tmp_path / "m.ubj").read_bytes()
        expected_margin = xgb_model.predict(X, output_margin=True)
    else:
        raw = lgb_model.booster_.model_to_string().encode()
        expected_margin = lgb_model.predict(X, raw_score=True)
    path, digest = write_artifact(tmp_path, "artifact", raw)
    model = load_model(path, artifact_format=backend, expected_sha256=digest)
    summary = shap_summary(model, X, seed=1)
    assert (summary.explainer, summary.output_space) == ("tree", "log-odds")
    np.testing.assert_allclose(summary.base_value + summary.values.sum(axis=1), expected_margin, atol=1e-4)
    assert summary.additivity["holds"]
    assert summary.ranking[0] == "x0"


def test_linear_shap_on_logistic_regression(data, logreg):
    X, _ = data
    summary = shap_summary(logreg, X)
    assert (summary.explainer, summary.output_space) == ("linear", "log-odds")
    np.testing.assert_allclose(summary.base_value + summary.values.sum(axis=1), logreg.decision_function(X), atol=1e-8)
    assert summary.ranking[0] == "x0"
    _json(summary)


def test_tree_and_linear_shap_on_regressors():
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import Ridge

    X, y = make_regression(400)
    for estimator, explainer in (
        (GradientBoostingRegressor(n_estimators=30, random_state=0), "tree"),
        (Ridge(), "linear"),
    ):
        estimator.fit(X, y)
        summary = shap_summary(estimator, X)
        assert (summary.explainer, summary.output_space, summary.explained_output) == (
            explainer,
            "prediction",
            "prediction",
        )
        np.testing.assert_allclose(summary.base_value + summary.values.sum(axis=1), estimator.predict(X), atol=1e-6)
        assert summary.ranking[0] == "x0"


def test_kernel_shap_on_an_onnx_model_is_bounded_and_seeded(tmp_path, data, onnx_bytes):
    X, _ = data
    path, digest = write_artifact(tmp_path, "model.onnx", onnx_bytes)
    model = load_model(path, artifact_format="onnx", expected_sha256=digest)
    seen = []
    summary = shap_summary(
        model, X, seed=3, explain_rows=40, background_size=10, max_evals=100, progress=lambda f, m: seen.append(f)
    )
    assert (summary.explainer, summary.output_space) == ("kernel", "probability")
    assert summary.rows_explained == 40 and summary.parameters["background_size"] == 10
    assert summary.parameters["max_evals"] == 100
    assert summary.additivity["holds"] and summary.additivity["max_abs_error"] < 1e-5
    assert summary.ranking[0] == "x0"
    assert seen == sorted(seen) and seen[-1] == 1.0
    again = shap_summary(model, X, seed=3, explain_rows=40, background_size=10, max_evals=100)
    assert again.as_dict() == summary.as_dict()


def test_sampled_rows_can_leave_feature_values_out(data, gbt):
    X, _ = data
    summary = shap_summary(gbt, X, sample_rows=3, include_feature_values=False).as_dict()
    assert len(summary["rows"]) == 3
    assert all("value" not in c for row in summary["rows"] for c in row["contributions"])


def test_a_model_that_raises_is_model_failed_in_shap_and_lime(data):
    X, y = data
    model = wrap_estimator(ExplodingClassifier().fit(X.to_numpy(), y))
    for run in (
        lambda: shap_summary(model, X.to_numpy(), explain_rows=5, background_size=3),
        lambda: lime_explanations(model, X.to_numpy(), rows=1, num_samples=100),
    ):
        with pytest.raises(EngineError) as err:
            run()
        assert err.value.code == "model_failed" and "[" not in err.value.message


def test_shap_needs_the_model_features(data, gbt):
    X, _ = data
    with pytest.raises(EngineError) as err:
        shap_summary(gbt, X.drop(columns=["x3"]))
    assert err.value.code == "missing_column"


@pytest.mark.parametrize("fixture", ["gbt", "logreg"])
def test_lime_ranks_the_driving_feature_first_with_a_fixed_seed(request, data, fixture):
    X, _ = data
    model = request.getfixturevalue(fixture)
    result = lime_explanations(model, X, rows=4, seed=7, num_samples=1500)
    assert result.ranking[0] == "x0"
    assert result.explained_class == 1 and len(result.rows) == 4
    assert all(row["weights"][0]["feature"] == "x0" for row in result.rows)
    again = lime_explanations(model, X, rows=4, seed=7, num_samples=1500)
    assert _json(again) == _json(result)


def test_lime_on_a_regressor_and_on_chosen_rows():
    from sklearn.linear_model import Ridge

    X, y = make_regression(300)
    result = lime_explanations(Ridge().fit(X, y), X, rows=[0, 5], seed=0, num_samples=1000)
    assert result.mode == "regression" and [r["row"] for r in result.rows] == [0, 5]
    assert result.ranking[0] == "x0"
    with pytest.raises(EngineError) as err:
        lime_explanations(Ridge().fit(X, y), X, rows=[10_000])
    assert err.value.code == "bad_parameter"
