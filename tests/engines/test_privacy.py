"""Stored results keep aggregates only (issue 12): a table with planted identifiers goes through every
kind of evaluation on a small real model, and no planted value may be found anywhere in what would be
stored, nor in the training-data profile."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from workers.engines import privacy
from workers.engines.data_quality import compare, profile
from workers.engines.loading import wrap_estimator
from workers.engines.runner import KINDS, evaluate

N = 600
FEATURES = ["income", "debt", "age"]
EXTREME_HIGH, EXTREME_LOW = 987654.321, -123456.789
LONE_EMAIL = "solo.person@example.org"  # one of 13 addresses, the only one seen once
RARE_NAMES = ("Zebediah Quackenbush", "Philomena Crumb")  # seen once and three times
RARE_GROUP = "Xanthippe"  # a sensitive group of two rows
RARE_CLASS_DATE = "1901-02-03"
TRAIN_ONLY = ("trainee.only@example.net", 555555.555)


def _planted_values() -> list[str]:
    emails = [f"person{i}@example.com" for i in range(N)]
    return [
        *emails, LONE_EMAIL, *RARE_NAMES, "Quackenbush", "Philomena", RARE_GROUP, "987654.3", "123456.7",
        RARE_CLASS_DATE, TRAIN_ONLY[0], "555555.5",
    ]  # fmt: skip


def _planted_table(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "income": rng.normal(50, 10, N), "debt": rng.normal(10, 3, N), "age": rng.integers(18, 80, N),
        "email": [f"person{i}@example.com" for i in range(N)],  # every row its own address
        "contact": [f"desk{i % 12}@example.com" for i in range(N)],  # 12 addresses, 50 rows each
        "name": rng.choice(["Alice", "Bob", "Carol"], N),
        "group": np.where(np.arange(N) % 2 == 0, "north", "south"),
        "seen": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, N), unit="D"),
    })  # fmt: skip
    frame.loc[7, "contact"] = LONE_EMAIL
    frame.loc[11, "name"] = RARE_NAMES[0]
    frame.loc[[20, 21, 22], "name"] = RARE_NAMES[1]
    frame.loc[[30, 31], "group"] = RARE_GROUP
    frame.loc[40, "income"] = EXTREME_HIGH
    frame.loc[41, "income"] = EXTREME_LOW
    frame.loc[42, "seen"] = pd.Timestamp(RARE_CLASS_DATE)
    frame["default"] = (frame["debt"] * 3 - frame["income"].clip(0, 100) + rng.normal(0, 3, N) > -20).astype(int)
    return frame


@pytest.fixture(scope="module")
def planted():
    frame = _planted_table()
    model = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(
        frame[FEATURES], frame["default"]
    )
    train = _planted_table(seed=4).drop(columns=["email"])
    train.loc[5, "contact"] = TRAIN_ONLY[0]
    train.loc[6, "debt"] = TRAIN_ONLY[1]
    return wrap_estimator(model), frame, profile(train)


RUNS = {
    "explainability": [{"seed": 0, "sample_rows": 20, "lime_rows": 2, "max_evals": 500, "background_size": 10}],
    "fairness": [{"seed": 0, "bootstrap": 20, "min_group_size": 30, "positive_label": 1}],
    "performance": [{"seed": 0, "slice_column": "name"}, {"seed": 0, "slice_column": "income"},
                    {"seed": 0, "slice_column": "group"}],
    "robustness": [{"seed": 0, "noise_levels": [0.1], "missing_share": 0.1}],
    "data_quality": [{"seed": 0}],
    "benchmark": [{"seed": 0, "host": "cpu-1", "batch_sizes": [1, 4], "warmup": 2, "min_calls": 20, "max_calls": 40,
                   "time_budget_seconds": 1.0, "p95_ci_width": 0.05, "device": "cpu"}],
}  # fmt: skip


def _found(document, planted: list[str]) -> list[str]:
    text = json.dumps(document, allow_nan=False)
    return [value for value in planted if value in text]


CASES = [(kind, params, True) for kind in KINDS for params in RUNS[kind]] + [("data_quality", {"seed": 0}, False)]


@pytest.mark.parametrize(
    ("kind", "params", "with_training_profile"), CASES,
    ids=[f"{kind}-{params.get('slice_column', '')}-{'profile' if has else 'alone'}" for kind, params, has in CASES],
)  # fmt: skip
def test_planted_identifiers_are_in_no_stored_result(planted, kind, params, with_training_profile):
    model, frame, training_profile = planted
    result, figures = evaluate(
        kind, model, frame, target="default", sensitive=["group"], parameters=params,
        training_profile=training_profile if with_training_profile else None,
    )  # fmt: skip
    assert _found([result, figures], _planted_values()) == []


def test_the_training_profile_keeps_no_planted_value(planted):
    _, _, training_profile = planted
    assert _found(training_profile, _planted_values()) == []
    income = training_profile["columns"]["income"]
    assert "min" not in income and "max" not in income and set(income["quantiles"]) == {
        "0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99",
    }  # fmt: skip
    contact = training_profile["columns"]["contact"]
    # 12 addresses seen 50 times each; the lone one and the training-only one are counted, not named
    assert len(contact["categories"]) == 12 and contact["withheld_values"] == 2 and contact["other_count"] == 2


def test_an_old_training_profile_with_extremes_is_cleaned_at_registration_and_in_the_comparison(planted):
    """A profile taken before the rule (exact min and max, every category) is what a client may still send."""
    _, frame, _ = planted
    raw = profile(frame, min_count=1)  # the old behaviour: every value, exact extremes
    raw["columns"]["income"]["min"], raw["columns"]["income"]["max"] = EXTREME_LOW, EXTREME_HIGH
    assert _found(raw, _planted_values())  # the test can fail
    assert _found(privacy.profile_aggregates_only(raw), _planted_values()) == []
    comparison = compare(raw, frame)
    assert _found(privacy.aggregates_only(comparison)[0], [LONE_EMAIL, "987654.3", "123456.7"]) == []


def test_a_group_under_k_rows_keeps_its_size_and_nothing_else(planted):
    model, frame, _ = planted
    result, figures = evaluate("fairness", model, frame, target="default", sensitive=["group"],
                               parameters=RUNS["fairness"][0])  # fmt: skip
    groups = result["report"]["analyses"][-1]["groups"]
    small = [g for g in groups if g.get("count", g.get("n")) == 2]
    assert len(small) == 1 and small[0]["label"] == privacy.WITHHELD
    assert not {"confusion", "ci", "selection_rate", "accuracy", "key"} & set(small[0])
    large = [g for g in groups if g.get("count", g.get("n")) >= privacy.MIN_COUNT]
    assert {g["label"] for g in large} == {"group=north", "group=south"}
    assert all("selection_rate" in g and "confusion" in g for g in large)  # aggregates of large groups stay
    table = next(t for t in result["tables"] if t["title"].startswith("Groups of"))
    withheld = [row for row in table["rows"] if row[0] == privacy.WITHHELD]
    assert withheld and all(cell is None for cell in withheld[0][2:-1]) and withheld[0][1] == 2
    bars = [trace for spec in _specs(figures) for trace in spec["data"] if isinstance(trace.get("x"), list)]
    assert bars and all(len(trace["x"]) == 2 for trace in bars)  # the small group's points left the charts


def _specs(node):
    if isinstance(node, dict) and isinstance(node.get("data"), list):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _specs(value)


def test_k_is_a_parameter(planted):
    model, frame, _ = planted
    loose, _ = evaluate("data_quality", model, frame, target="default", sensitive=[], parameters={}, min_count=1)
    strict, _ = evaluate("data_quality", model, frame, target="default", sensitive=[], parameters={}, min_count=60)
    assert RARE_NAMES[0] in loose["profile"]["columns"]["name"]["categories"]
    assert strict["profile"]["columns"]["contact"]["categories"] == {}  # 50 rows each: under 60


def test_quantiles_are_stored_only_with_k_values_on_either_side():
    small = profile(pd.DataFrame({"v": np.arange(120, dtype=float)}))["columns"]["v"]
    assert set(small["quantiles"]) == {"0.05", "0.25", "0.5", "0.75", "0.95"}  # 1.2 values beyond p1/p99: withheld
    tiny = profile(pd.DataFrame({"v": [1.0, 2.0, 3.0]}))["columns"]["v"]
    assert tiny["quantiles"] == {} and tiny["mean"] is None and tiny["bins"] is None
