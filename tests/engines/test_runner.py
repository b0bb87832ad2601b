"""The runner binds each engine to the stored result document: every kind on a real model, JSON-safe,
aggregates only, the fields the deployment gates read, and progress from 0 to 100."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from workers.engines.errors import EngineError
from workers.engines.loading import wrap_estimator
from workers.engines.runner import KINDS, evaluate


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(7)
    n = 600
    frame = pd.DataFrame(
        {"income": rng.normal(50, 10, n), "debt": rng.normal(10, 3, n), "age": rng.integers(18, 80, n)}
    )
    frame["sex"] = rng.choice(["f", "m"], n)
    frame["default"] = (frame["debt"] * 3 - frame["income"] + rng.normal(0, 3, n) > -20).astype(int)
    features = ["income", "debt", "age"]
    model = GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0).fit(
        frame[features], frame["default"]
    )
    return wrap_estimator(model), frame


PARAMS = {
    "explainability": {"seed": 0, "sample_rows": 20, "lime_rows": 2, "max_evals": 500, "background_size": 10},
    "fairness": {"seed": 0, "bootstrap": 50, "min_group_size": 30, "positive_label": 1},
    "performance": {"seed": 0, "slice_column": "sex"},
    "robustness": {"seed": 0, "noise_levels": [0.05, 0.5], "missing_share": 0.1},
    "data_quality": {"seed": 0},
    "benchmark": {
        "seed": 0,
        "host": "cpu-1",
        "batch_sizes": [1, 8],
        "warmup": 2,
        "min_calls": 20,
        "max_calls": 40,
        "time_budget_seconds": 1.0,
        "p95_ci_width": 0.05,
        "device": "cpu",
    },
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_produces_a_stored_document(world, kind):
    model, frame = world
    seen = []
    result, figures = evaluate(kind, model, frame, target="default", sensitive=["sex"], parameters=PARAMS[kind],
                               progress=lambda p, m: seen.append(p))  # fmt: skip
    assert json.loads(json.dumps([result, figures], allow_nan=False)) == [result, figures]  # storable as JSON
    assert {"summary", "tables", "notes"} <= set(result)
    assert all(isinstance(v, int | float) or v is None for v in result["summary"].values()), result["summary"]
    assert seen and seen == sorted(seen) and 0 <= seen[0] and seen[-1] <= 100
    assert "pos_label" not in result["summary"]
    if kind == "explainability":
        assert result["ranking"][0] in ("debt", "income")  # the generated target depends on them
        assert all("value" not in f for row in result["shap"]["rows"] for f in row.get("features", []))
        assert {"importance", "attribution_spread", "dependence_debt"} <= set(figures)
        assert "beeswarm" not in figures  # it draws individual rows' feature values
        dependence = figures["dependence_debt"]["data"][0]
        assert 2 <= len(dependence["x"]) <= 10  # deciles, not rows
    if kind == "fairness":
        assert 0 < result["overall"]["demographic_parity_ratio"] <= 1
        assert {"equalized_odds_difference", "demographic_parity_difference"} <= set(result["overall"])
    if kind == "performance":
        assert 0.5 < result["metrics"]["accuracy"] <= 1 and "roc_auc" in result["metrics"]
        assert any(t["title"] == "By sex" for t in result["tables"])


def test_a_model_that_raises_on_predict_is_an_engine_error(world):
    _, frame = world

    from sklearn.base import BaseEstimator, ClassifierMixin

    class Broken(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            return self

        def predict(self, X):
            raise ValueError(f"cannot score {X.iloc[0].tolist()}")  # the message quotes a row

    with pytest.raises(EngineError) as caught:
        evaluate("performance", wrap_estimator(Broken()), frame.drop(columns=["sex"]), target="default", sensitive=[],
                 parameters={})  # fmt: skip
    assert caught.value.code == "model_failed" and "cannot score" not in caught.value.message


def test_data_quality_keeps_no_identifying_values(world):
    model, frame = world
    frame = frame.assign(email=[f"person{i}@example.com" for i in range(len(frame))])
    result, _ = evaluate("data_quality", model, frame, target="default", sensitive=[], parameters={})
    text = json.dumps(result)
    assert "person1@example.com" not in text and "person0@" not in text
    columns = result["profile"]["columns"]
    assert columns["email"]["categories"] == {} and "values not stored" in columns["email"]["categories_withheld"]
    assert set(columns["sex"]["categories"]) == {"f", "m"}  # two large groups are aggregates
