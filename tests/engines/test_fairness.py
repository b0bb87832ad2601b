"""Fairness from per-group confusion counts, checked against fairlearn and against a hand count."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

from workers.engines.errors import EngineError
from workers.engines.fairness import fairness_report

FAIRLEARN_METRICS = {
    "selection_rate": selection_rate,
    "accuracy": accuracy_score,
    "precision": precision_score,
    "recall": recall_score,
    "false_positive_rate": false_positive_rate,
    "false_negative_rate": false_negative_rate,
    "count": count,
}
FAIRLEARN_DISPARITIES = {
    "demographic_parity_difference": demographic_parity_difference,
    "demographic_parity_ratio": demographic_parity_ratio,
    "equalized_odds_difference": equalized_odds_difference,
    "equalized_odds_ratio": equalized_odds_ratio,
    "equal_opportunity_difference": equal_opportunity_difference,
}


def random_table(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Uneven groups (one tiny, one without positives in some cells), group effects on y and decisions."""
    rng = np.random.default_rng(seed)
    race = rng.choice(["a", "b", "c", "d"], size=n, p=[0.55, 0.3, 0.13, 0.02])
    age = pd.Categorical(rng.choice(["<30", "30-50", ">50"], size=n), categories=["<30", "30-50", ">50", "unused"])
    sex = rng.integers(0, 2, size=n)
    base = 0.2 + 0.15 * (race == "a") + 0.1 * sex
    y_true = (rng.random(n) < base).astype(np.int64)
    y_pred = (rng.random(n) < np.where(y_true == 1, 0.7, 0.2) + 0.1 * (race == "b")).astype(np.int64)
    y_true[(race == "d") & (sex == 1)] = 0  # a cell without actual positives: TPR undefined there
    return y_true, y_pred, pd.DataFrame({"race": race, "age": age, "sex": sex})


def fairlearn_over_supported(y_true, y_pred, sf: pd.DataFrame, *, min_group_size: int, sample_weight=None) -> dict:
    """The disparities fairlearn gives on the rows of the groups of at least ``min_group_size`` rows, each
    rate over the groups where it is defined (a group without actual positives takes no part in TPR)."""
    key = sf.astype(str).agg("|".join, axis=1).to_numpy()
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    weight = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    frame = pd.DataFrame({"key": key, "t": y_true, "w": weight})
    size = frame.groupby("key")["t"].transform("size").to_numpy()
    positives = frame.assign(v=weight * y_true).groupby("key")["v"].transform("sum").to_numpy()
    negatives = frame.assign(v=weight * (1 - y_true)).groupby("key")["v"].transform("sum").to_numpy()
    supported = size >= min_group_size
    out = {}
    for rate, metric, rows in (
        ("selection_rate", selection_rate, supported),
        ("recall", true_positive_rate, supported & (positives > 0)),
        ("false_positive_rate", false_positive_rate, supported & (negatives > 0)),
    ):
        if len(np.unique(key[rows])) < 2:
            out[rate] = (np.nan, np.nan)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame_ = MetricFrame(
                metrics={rate: metric}, y_true=y_true[rows], y_pred=y_pred[rows],
                sensitive_features=sf[rows].astype(object),
                sample_params={rate: {"sample_weight": weight[rows]}},
            )  # fmt: skip
        out[rate] = (float(frame_.difference()[rate]), float(frame_.ratio()[rate]))
    return {
        "demographic_parity_difference": out["selection_rate"][0],
        "demographic_parity_ratio": out["selection_rate"][1],
        "equal_opportunity_difference": out["recall"][0],
        "equal_opportunity_ratio": out["recall"][1],
        "equalized_odds_difference": np.nanmax([out["recall"][0], out["false_positive_rate"][0]]),
        "equalized_odds_ratio": np.nanmin([out["recall"][1], out["false_positive_rate"][1]]),
    }


def _nan(value):
    return np.nan if value is None else value


def _by_key(frame: MetricFrame, features: list[str]) -> dict[tuple, pd.Series]:
    rows = {}
    for key, row in frame.by_group.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        if not np.isnan(row["count"]):
            rows[tuple(key)] = row
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("features", [["race"], ["age"], ["race", "sex"], ["race", "age"]])
def test_equals_fairlearn_on_random_tables(seed, features):
    y_true, y_pred, sensitive = random_table(seed)
    sf = sensitive[features]
    report = fairness_report(y_true, y_pred, sf, bootstrap_resamples=0, with_figures=False)
    analysis = report.primary
    assert analysis.features == features
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's zero-division warnings
        frame = MetricFrame(
            metrics=FAIRLEARN_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=sf.astype(object)
        )
        expected_rows = _by_key(frame, features)
        assert len(analysis.groups) == len(expected_rows)
        for group in analysis.groups:
            row = expected_rows[tuple(group.key[f] for f in features)]
            assert group.count == row["count"]
            for metric in FAIRLEARN_METRICS:
                if metric != "count":
                    assert group.metrics[metric] == pytest.approx(row[metric], abs=1e-9), metric
        for name, fn in FAIRLEARN_DISPARITIES.items():  # fairlearn's convention: every group, undefined as 0
            expected = fn(y_true, y_pred, sensitive_features=sf.astype(object))
            assert analysis.disparities_all_groups[name] == pytest.approx(expected, abs=1e-9, nan_ok=True), name
        # what a gate reads: the groups of at least 30 rows, each rate where it is defined
        expected = fairlearn_over_supported(y_true, y_pred, sf, min_group_size=30)
        for name, value in expected.items():
            assert _nan(analysis.disparities[name]) == pytest.approx(value, abs=1e-9, nan_ok=True), name
        for metric in ("selection_rate", "accuracy", "recall"):
            assert report.overall[metric] == pytest.approx(frame.overall[metric], abs=1e-9)


def test_marginals_of_an_intersection_equal_fairlearn_per_feature():
    y_true, y_pred, sensitive = random_table(7)
    report = fairness_report(y_true, y_pred, sensitive[["race", "age"]], bootstrap_resamples=0)
    assert [a.name for a in report.analyses] == ["race", "age", "race × age"]
    for feature in ("race", "age"):
        expected = demographic_parity_difference(y_true, y_pred, sensitive_features=sensitive[feature].astype(object))
        got = report.analysis(feature).disparities["demographic_parity_difference"]
        assert got == pytest.approx(expected, abs=1e-9)
    assert "unused" not in [g.key["age"] for g in report.analysis("age").groups]


def test_a_hand_computed_table():
    # group A: y_true 1 1 0 0 / y_pred 1 0 1 0 -> tp 1, fn 1, fp 1, tn 1
    # group B: y_true 1 1 1 0 0 0 / y_pred 1 1 0 0 0 0 -> tp 2, fn 1, fp 0, tn 3
    group = ["A"] * 4 + ["B"] * 6
    y_true = [1, 1, 0, 0, 1, 1, 1, 0, 0, 0]
    y_pred = [1, 0, 1, 0, 1, 1, 0, 0, 0, 0]
    report = fairness_report(y_true, y_pred, pd.Series(group, name="group"), bootstrap_resamples=0, min_group_size=1)
    a, b = report.primary.group(group="A"), report.primary.group(group="B")
    assert (a.tp, a.fn, a.fp, a.tn, a.count) == (1, 1, 1, 1, 4)
    assert (b.tp, b.fn, b.fp, b.tn, b.count) == (2, 1, 0, 3, 6)
    assert a.metrics == pytest.approx(
        {"selection_rate": 0.5, "accuracy": 0.5, "precision": 0.5, "recall": 0.5,
         "false_positive_rate": 0.5, "false_negative_rate": 0.5, "base_rate": 0.5}
    )  # fmt: skip
    assert b.metrics == pytest.approx(
        {"selection_rate": 2 / 6, "accuracy": 5 / 6, "precision": 1.0, "recall": 2 / 3,
         "false_positive_rate": 0.0, "false_negative_rate": 1 / 3, "base_rate": 3 / 6}
    )  # fmt: skip
    d = report.primary.disparities
    assert d["demographic_parity_difference"] == pytest.approx(0.5 - 1 / 3)  # 1/6
    assert d["demographic_parity_ratio"] == pytest.approx((1 / 3) / 0.5)  # 2/3
    assert d["equal_opportunity_difference"] == pytest.approx(2 / 3 - 1 / 2)  # 1/6
    assert d["equalized_odds_difference"] == pytest.approx(0.5)  # the FPR gap, 0.5 - 0
    assert d["equalized_odds_ratio"] == pytest.approx(0.0)  # min(TPR ratio 0.75, FPR ratio 0)
    assert report.overall["selection_rate"] == pytest.approx(4 / 10)
    # and fairlearn agrees with the hand count
    assert demographic_parity_ratio(y_true, y_pred, sensitive_features=group) == pytest.approx(2 / 3)
    assert equalized_odds_difference(y_true, y_pred, sensitive_features=group) == pytest.approx(0.5)


def test_a_biased_dataset_falls_below_four_fifths():
    rng = np.random.default_rng(11)
    n = 20_000
    group = rng.choice(["majority", "minority"], size=n, p=[0.7, 0.3])
    y_true = (rng.random(n) < 0.4).astype(int)  # same base rate in both groups
    score = 0.6 * y_true + rng.normal(0, 0.25, n) - 0.25 * (group == "minority")  # the model penalises one group
    y_pred = (score > 0.35).astype(int)
    report = fairness_report(y_true, y_pred, pd.Series(group, name="group"), bootstrap_resamples=50)
    analysis = report.as_dict()["analyses"][0]
    assert analysis["disparities"]["demographic_parity_ratio"] < 0.8
    assert analysis["four_fifths_reference"]["below_threshold"] is True
    assert analysis["extremes"]["selection_rate"]["lowest"] == "group=minority"
    assert analysis["disparity_ci"]["demographic_parity_ratio"][1] < 0.8


def test_bootstrap_intervals_contain_the_estimate_and_widen_for_a_small_group():
    rng = np.random.default_rng(5)
    n = 20_000
    group = np.where(rng.random(n) < 0.01, "small", "large")
    y_true = (rng.random(n) < 0.5).astype(int)
    y_pred = np.where(rng.random(n) < 0.8, y_true, 1 - y_true)
    report = fairness_report(y_true, y_pred, {"group": group}, bootstrap_resamples=200, min_group_size=500)
    large, small = report.primary.group(group="large"), report.primary.group(group="small")
    assert small.small and not large.small
    for g in (large, small):
        for metric in ("selection_rate", "accuracy", "recall", "false_positive_rate"):
            low, high = g.ci[metric]
            assert low <= g.metrics[metric] <= high, (g.label, metric)
    width = {g.label: g.ci["selection_rate"][1] - g.ci["selection_rate"][0] for g in (large, small)}
    assert width["group=small"] > 3 * width["group=large"]
    assert report.as_dict()["analyses"][0]["small_groups"] == ["group=small"]


def test_bootstrap_is_seeded():
    y_true, y_pred, sensitive = random_table(2)
    first = fairness_report(y_true, y_pred, sensitive[["race", "sex"]], seed=3).as_dict()
    again = fairness_report(y_true, y_pred, sensitive[["race", "sex"]], seed=3).as_dict()
    other = fairness_report(y_true, y_pred, sensitive[["race", "sex"]], seed=4).as_dict()
    assert first == again
    assert first["analyses"][2]["groups"][0]["ci"] != other["analyses"][2]["groups"][0]["ci"]


def test_empty_intersections_are_listed_and_skipped():
    sensitive = pd.DataFrame({"a": ["x", "x", "y", "y", "y"], "b": ["p", "q", "p", "p", "p"]})
    report = fairness_report([1, 0, 1, 0, 1], [1, 0, 0, 0, 1], sensitive, bootstrap_resamples=0)
    assert report.primary.empty_groups == [{"a": "y", "b": "q"}]
    assert len(report.primary.groups) == 3


def test_undefined_rates_are_zero_as_in_fairlearn_and_listed():
    report = fairness_report([0, 0, 1, 1], [0, 0, 1, 0], {"g": ["a", "a", "b", "b"]}, bootstrap_resamples=0)
    a = report.primary.group(g="a")
    assert a.metrics["recall"] == 0.0 and a.metrics["precision"] == 0.0
    assert set(a.undefined) == {"precision", "recall", "false_negative_rate"}


def test_no_selection_at_all_gives_no_ratio_and_stays_json_safe():
    report = fairness_report([0, 1, 0, 1], [0, 0, 0, 0], {"g": ["a", "a", "b", "b"]}, min_group_size=1)
    data = report.as_dict()
    assert data["analyses"][0]["disparities"]["demographic_parity_ratio"] is None
    json.dumps(data, allow_nan=False)


def test_other_labels_with_pos_label():
    report = fairness_report(["yes", "no"] * 3, ["yes"] * 6, {"g": list("aabbcc")}, pos_label="yes")
    assert report.overall["selection_rate"] == 1.0 and report.overall["recall"] == 1.0


def test_metrics_without_a_count_form_come_from_fairlearn():
    y_true, y_pred, sensitive = random_table(1, n=600)
    score = np.clip(y_pred * 0.6 + np.random.default_rng(0).random(600) * 0.4, 0, 1)
    report = fairness_report(
        y_true, y_pred, sensitive[["sex"]], y_score=score, extra_metrics={"f1": _f1}, bootstrap_resamples=0
    )
    auc = report.fairlearn_metrics["roc_auc"]
    for item in auc["by_group"]:
        mask = sensitive["sex"].to_numpy() == item["key"]["sex"]
        assert item["value"] == pytest.approx(roc_auc_score(y_true[mask], score[mask]))
    assert auc["overall"] == pytest.approx(roc_auc_score(y_true, score))
    assert report.fairlearn_metrics["f1"]["difference"] >= 0


def _f1(y_true, y_pred):
    p, r = precision_score(y_true, y_pred, zero_division=0), recall_score(y_true, y_pred, zero_division=0)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"sensitive": {"g": ["a"] * 6}}, "single_group"),
        ({"sensitive": {"g": ["a", "b", None, "a", "b", "a"]}}, "missing_sensitive_values"),
        ({"sensitive": {"g": ["a", "b"]}}, "length_mismatch"),
        ({"y_pred": [0, 1, 2, 0, 1, 0]}, "not_binary"),
        ({"y_pred": [0.1, 0.9, 0.4, 0.2, 0.7, 0.3]}, "not_binary"),
        ({"y_true": [], "y_pred": [], "sensitive": {"g": []}}, "empty_data"),
    ],
)
def test_bad_input(kwargs, code):
    args = {"y_true": [0, 1, 0, 1, 1, 0], "y_pred": [0, 1, 1, 1, 0, 0], "sensitive": {"g": list("aabbab")}} | kwargs
    with pytest.raises(EngineError) as err:
        fairness_report(args["y_true"], args["y_pred"], args["sensitive"])
    assert err.value.code == code


def test_progress_and_figures():
    y_true, y_pred, sensitive = random_table(0, n=500)
    seen = []
    report = fairness_report(y_true, y_pred, sensitive[["race", "sex"]], progress=lambda f, m: seen.append((f, m)))
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0
    figure = report.figures["race × sex"]["selection_rate"]
    assert figure["data"][0]["type"] == "bar" and len(figure["data"][0]["x"]) == len(report.primary.groups)
    assert "error_y" in figure["data"][0] and figure["layout"]["shapes"]
    json.dumps(report.as_dict(), allow_nan=False)
