"""Read and validate evaluation data (CSV or Parquet) before any model sees it.

``read_table`` enforces the row limit without loading a file that is over it (Parquet's row
count comes from its footer; a CSV is read up to one row past the limit). ``validate`` checks
what the engines need: the target column, the sensitive columns with at least two non-empty
groups each and no missing values (a category declared but held by no row is dropped, as fairlearn
ignores it), the model's feature columns, numeric, and the sample-weight column when one is named
(finite, non-negative numbers, not all 0; never a model feature unless the model names it). Every
failure is an ``EngineError`` whose message names columns and counts, never values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from workers.engines.errors import EngineError

TableFormat = Literal["csv", "parquet"]
DEFAULT_MAX_ROWS = 1_000_000


@dataclass
class EvaluationData:
    """Validated evaluation data: model features, target and sensitive columns, split apart."""

    X: pd.DataFrame
    y: pd.Series | None
    sensitive: pd.DataFrame
    feature_names: list[str]
    target: str | None
    n_rows: int
    missing_feature_values: dict[str, int]
    sample_weight: np.ndarray | None = None  # one non-negative weight per row (``sample_weight_column``)
    sample_weight_column: str | None = None

    def summary(self) -> dict[str, Any]:
        """Counts only: what a run stores about its data."""
        return {
            "n_rows": self.n_rows,
            "n_features": len(self.feature_names),
            "feature_names": list(self.feature_names),
            "target": self.target,
            "sensitive_features": list(self.sensitive.columns),
            "missing_feature_values": {k: int(v) for k, v in self.missing_feature_values.items() if v},
            "sample_weight_column": self.sample_weight_column,
        }


def table_format(path: str | Path, declared: str | None = None) -> TableFormat:
    """``csv`` or ``parquet``, from the declared format or else the file name."""
    fmt = (declared or Path(path).suffix.lstrip(".")).lower()
    if fmt in ("csv", "txt"):
        return "csv"
    if fmt in ("parquet", "pq"):
        return "parquet"
    raise EngineError("unsupported_data_format", f"Evaluation data must be CSV or Parquet, not {fmt or 'unknown'!r}.")


def read_table(
    path: str | Path,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    file_format: str | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The table at ``path``; ``too_many_rows`` past ``max_rows``, ``empty_data`` without rows."""
    fmt = table_format(path, file_format)
    try:
        if fmt == "parquet":
            df = _read_parquet(path, max_rows=max_rows, columns=columns)
        else:
            df = pd.read_csv(path, nrows=max_rows + 1, usecols=list(columns) if columns else None)
    except EngineError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise EngineError("empty_data", "The evaluation data file is empty.") from exc
    except ValueError as exc:
        if columns and "usecols" in str(exc):
            raise EngineError("missing_column", "Some of the requested columns are not in the file.") from exc
        raise EngineError("unreadable_data", f"The {fmt} file could not be read ({type(exc).__name__}).") from exc
    except Exception as exc:  # parser errors can quote the offending line: keep only the type
        raise EngineError("unreadable_data", f"The {fmt} file could not be read ({type(exc).__name__}).") from exc
    check_row_count(len(df), max_rows=max_rows)
    return df


def _read_parquet(path: str | Path, *, max_rows: int, columns: Sequence[str] | None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    n_rows = pq.ParquetFile(path).metadata.num_rows
    check_row_count(n_rows, max_rows=max_rows)
    return pd.read_parquet(path, columns=list(columns) if columns else None)


def check_row_count(n_rows: int, *, max_rows: int) -> None:
    if n_rows == 0:
        raise EngineError("empty_data", "The evaluation data has no rows.")
    if n_rows > max_rows:
        more = "more than " if n_rows == max_rows + 1 else ""
        raise EngineError("too_many_rows", f"The evaluation data has {more}{n_rows} rows; the limit is {max_rows}.")


def validate(
    df: pd.DataFrame,
    *,
    target: str | None,
    sensitive: Sequence[str] = (),
    feature_names: Sequence[str] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    min_group_size: int = 1,
    sample_weight_column: str | None = None,
) -> EvaluationData:
    """Check ``df`` and split it into features, target and sensitive columns.

    ``feature_names``: the model's features when it knows them; otherwise every column except
    the target, the sensitive ones and the sample-weight column. Boolean features become 0/1.
    Sensitive columns are not model features unless the model names them.
    """
    check_row_count(len(df), max_rows=max_rows)
    extra = [sample_weight_column] if sample_weight_column else []
    wanted = ([target] if target else []) + list(sensitive) + extra + list(feature_names or [])
    missing = [c for c in dict.fromkeys(wanted) if c not in df.columns]
    if missing:
        raise EngineError("missing_column", f"The evaluation data has no column named {_names(missing)}.")
    if target is not None and df[target].isna().any():
        n = int(df[target].isna().sum())
        raise EngineError("missing_target_values", f"The target column {target!r} has {n} missing values.")
    groups = pd.DataFrame({column: _used_groups(df[column]) for column in sensitive}, index=df.index)
    for column in sensitive:
        _check_groups(groups[column], column, min_group_size=min_group_size)
    weights = sample_weights_of(df[sample_weight_column], sample_weight_column) if sample_weight_column else None
    if feature_names is None:
        excluded = {target, *sensitive, *extra}
        feature_names = [c for c in df.columns if c not in excluded]
    feature_names = [str(c) for c in feature_names]
    if not feature_names:
        raise EngineError("no_features", "The evaluation data has no feature columns besides the target.")
    X = df[feature_names]
    non_numeric = [c for c in feature_names if not _numeric_or_bool(X[c])]
    if non_numeric:
        raise EngineError(
            "non_numeric_feature", f"Feature column(s) {_names(non_numeric)} are not numeric; the model takes numbers."
        )
    bools = [c for c in feature_names if pd.api.types.is_bool_dtype(X[c])]
    if bools:
        X = X.astype({c: np.int8 for c in bools})
    return EvaluationData(
        X=X,
        y=df[target] if target is not None else None,
        sensitive=groups,
        feature_names=feature_names,
        target=target,
        n_rows=len(df),
        missing_feature_values=X.isna().sum().to_dict(),
        sample_weight=weights,
        sample_weight_column=sample_weight_column,
    )


def sample_weights_of(values: pd.Series, column: str) -> np.ndarray:
    """The column's values as sample weights: numbers (not booleans), finite, non-negative, not all 0;
    ``bad_sample_weight`` otherwise, naming the column and a count."""
    problem = sample_weight_problem(values, column)
    if problem is not None:
        raise EngineError("bad_sample_weight", problem)
    return values.to_numpy(dtype=np.float64)


def sample_weight_problem(values: pd.Series, column: str) -> str | None:
    """Why ``values`` cannot weigh the rows, as a sentence naming the column and counts; ``None`` when it can.
    The one rule the request's validation and the worker both apply."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return f"The sample-weight column {column!r} must hold numbers."
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = int((~np.isfinite(numbers)).sum())
    if bad:
        return f"The sample-weight column {column!r} has {bad} missing or infinite value(s); every row needs a weight."
    negative = int((numbers < 0).sum())
    if negative:
        return f"The sample-weight column {column!r} has {negative} negative value(s); weights are 0 or more."
    if not (numbers > 0).any():
        return f"Every weight in the sample-weight column {column!r} is 0: there is nothing to measure."
    return None


def _used_groups(values: pd.Series) -> pd.Series:
    """A categorical column without the categories no row holds: fairlearn ignores them too."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.remove_unused_categories()
    return values


def _check_groups(values: pd.Series, column: str, *, min_group_size: int) -> None:
    n_missing = int(values.isna().sum())
    if n_missing:
        raise EngineError(
            "missing_sensitive_values",
            f"The sensitive column {column!r} has {n_missing} missing values; every row needs a group.",
        )
    counts = values.value_counts(sort=False)  # unused categories were dropped (``_used_groups``)
    if len(counts) < 2:
        raise EngineError(
            "single_group", f"The sensitive column {column!r} has a single group; fairness needs at least two."
        )
    if min_group_size > 1 and (counts < min_group_size).any():
        raise EngineError(
            "group_too_small",
            f"The sensitive column {column!r} has {int((counts < min_group_size).sum())} group(s) "
            f"with fewer than {min_group_size} rows.",
        )


def _numeric_or_bool(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _names(columns: Sequence[Any]) -> str:
    return ", ".join(repr(str(c)) for c in columns)
