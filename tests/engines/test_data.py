"""Evaluation data: limits, columns and groups checked before any model runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workers.engines.data import read_table, validate
from workers.engines.errors import EngineError

SECRET = "Zyxwv-4471"  # a value that must never reach an error message


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "x0": rng.normal(size=60),
            "x1": rng.integers(0, 5, 60),
            "flag": rng.integers(0, 2, 60).astype(bool),
            "sex": np.where(np.arange(60) % 3 == 0, "F", "M"),
            "label": rng.integers(0, 2, 60),
        }
    )


def _code(fn, *args, **kwargs) -> EngineError:
    with pytest.raises(EngineError) as err:
        fn(*args, **kwargs)
    assert SECRET not in err.value.message
    return err.value


def test_valid_data_splits_into_features_target_and_groups(frame):
    data = validate(frame, target="label", sensitive=["sex"])
    assert data.feature_names == ["x0", "x1", "flag"]
    assert data.X["flag"].dtype == np.int8
    assert list(data.sensitive.columns) == ["sex"] and data.n_rows == 60
    assert data.summary()["sensitive_features"] == ["sex"]


def test_model_feature_names_pick_the_columns(frame):
    assert validate(frame, target="label", feature_names=["x1", "x0"]).feature_names == ["x1", "x0"]


def test_missing_target_column(frame):
    err = _code(validate, frame, target="default", sensitive=["sex"])
    assert err.code == "missing_column" and "'default'" in err.message


def test_missing_sensitive_and_feature_columns(frame):
    assert _code(validate, frame, target="label", sensitive=["race"]).code == "missing_column"
    assert _code(validate, frame, target="label", feature_names=["x9"]).code == "missing_column"


def test_a_sensitive_column_with_one_group(frame):
    frame["sex"] = SECRET
    err = _code(validate, frame, target="label", sensitive=["sex"])
    assert err.code == "single_group" and "'sex'" in err.message


def test_an_unused_category_is_ignored_as_fairlearn_does(frame):
    """Issue 12: a categorical column declaring a category no row holds was accepted at upload, then
    failed in the worker with ``empty_group``; fairlearn ignores unused categories, and so does Charter."""
    from fairlearn.metrics import MetricFrame, selection_rate

    frame["sex"] = pd.Categorical(frame["sex"], categories=["F", "M", SECRET])
    data = validate(frame, target="label", sensitive=["sex"])
    assert list(data.sensitive["sex"].cat.categories) == ["F", "M"]
    reference = MetricFrame(metrics=selection_rate, y_true=frame["label"], y_pred=frame["label"],
                            sensitive_features=frame["sex"])  # fmt: skip
    assert list(reference.by_group.index) == ["F", "M"]  # fairlearn's groups: the same two
    assert _code(validate, frame.assign(sex=pd.Categorical(["F"] * 60, categories=["F", "M"])), target="label",
                 sensitive=["sex"]).code == "single_group"  # fmt: skip


def test_missing_group_and_target_values(frame):
    frame.loc[3, "sex"] = None
    assert _code(validate, frame, target="label", sensitive=["sex"]).code == "missing_sensitive_values"
    frame2 = frame.assign(label=frame["label"].astype(float))
    frame2.loc[5, "label"] = np.nan
    assert _code(validate, frame2, target="label").code == "missing_target_values"


def test_non_numeric_feature(frame):
    frame["comment"] = SECRET
    err = _code(validate, frame, target="label", sensitive=["sex"])
    assert err.code == "non_numeric_feature" and "'comment'" in err.message


def test_zero_row_files(tmp_path, frame):
    header_only = tmp_path / "empty.csv"
    frame.head(0).to_csv(header_only, index=False)
    assert _code(read_table, header_only).code == "empty_data"
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    assert _code(read_table, blank).code == "empty_data"
    parquet = tmp_path / "empty.parquet"
    frame.head(0).to_parquet(parquet)
    assert _code(read_table, parquet).code == "empty_data"
    assert _code(validate, frame.head(0), target="label").code == "empty_data"


def test_files_over_the_row_limit(tmp_path, frame):
    csv, parquet = tmp_path / "data.csv", tmp_path / "data.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet)
    for path in (csv, parquet):
        err = _code(read_table, path, max_rows=50)
        assert err.code == "too_many_rows" and "50" in err.message
        assert len(read_table(path, max_rows=60)) == 60


def test_unreadable_and_unsupported_files(tmp_path):
    bad = tmp_path / "data.parquet"
    bad.write_text(f"{SECRET},1,2\n")
    assert _code(read_table, bad).code == "unreadable_data"
    assert _code(read_table, tmp_path / "data.xlsx").code == "unsupported_data_format"
