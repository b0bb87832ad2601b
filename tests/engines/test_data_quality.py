"""Data quality: the evaluation data against a profile of the training data."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from workers.engines.data_quality import compare, population_stability_index, profile
from workers.engines.environment import environment


def _table(seed: int, n: int = 2000, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": rng.lognormal(10 + shift, 0.5, n),
            "age": rng.integers(18, 80, n),
            "region": rng.choice(["north", "south", "east", "west"], n),
            "member": rng.random(n) < 0.3,
        }
    )


def test_psi_by_hand():
    # (0.25 - 0.5)·ln(0.25/0.5) + (0.75 - 0.5)·ln(0.75/0.5) = 0.25·ln 2 + 0.25·ln 1.5
    assert population_stability_index([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5)
    )
    assert population_stability_index([0.2, 0.8], [0.2, 0.8]) == 0.0


def test_profile_is_plain_json_with_capped_categories():
    df = _table(0).assign(code=[f"c{i % 80}" for i in range(2000)])
    p = profile(df, max_categories=10)
    assert json.loads(json.dumps(p, allow_nan=False)) == p
    assert p["columns"]["income"]["kind"] == "numeric" and len(p["columns"]["income"]["bins"]["shares"]) == 10
    assert p["columns"]["member"]["kind"] == "boolean"
    code = p["columns"]["code"]
    assert len(code["categories"]) == 10 and code["n_unique"] == 80 and code["categories_complete"] is False
    assert code["other_count"] == 2000 - sum(code["categories"].values())


def test_the_same_distribution_resembles_the_training_data():
    result = compare(profile(_table(0)), _table(1))
    assert result["summary"]["major_shift"] == [] and result["summary"]["moderate_shift"] == []
    assert result["summary"]["unseen_categories"] == [] and not result["summary"]["schema_differs"]
    assert all(c["psi"] < 0.1 for c in result["columns"].values())


def test_shifts_unseen_categories_missing_values_and_schema_changes():
    train = _table(0)
    evaluation = _table(2, n=1000, shift=1.0)
    evaluation.loc[:99, "region"] = "offshore"
    evaluation.loc[:199, "age"] = np.nan
    evaluation = evaluation.drop(columns=["member"]).assign(score=1.0)
    result = compare(profile(train), evaluation)
    assert result["schema"]["missing_columns"] == ["member"] and result["schema"]["extra_columns"] == ["score"]
    income = result["columns"]["income"]
    assert income["psi_level"] == "major shift" and income["above_range_share"] > 0
    region = result["columns"]["region"]
    assert region["unseen_categories"] == ["offshore"] and region["unseen_share"] == pytest.approx(0.1)
    assert result["columns"]["age"]["missing_share_change"] == pytest.approx(0.2)
    assert result["summary"]["more_missing"] == ["age"] and "income" in result["summary"]["major_shift"]
    assert result["figures"]["psi"]["data"][0]["y"][-1] == "income"  # largest PSI on top
    json.dumps(result, allow_nan=False)


def test_environment_lists_the_engine_libraries():
    env = environment()
    assert env["libraries"]["shap"] and env["libraries"]["xgboost"] and env["libraries"]["fairlearn"]
