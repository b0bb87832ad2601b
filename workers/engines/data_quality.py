"""Data quality: does the evaluation data resemble the data the model was trained on?

``profile(df)`` records, per column, the schema (dtype and kind), missing values, numeric
statistics (mean, std, quantiles p1 to p99 and decile bins with their shares) and category sets
with counts (capped at ``max_categories``; ``categories_complete`` says whether the cap was hit).
It keeps aggregates only (``privacy.column_aggregates_only``): no exact minimum or maximum, a
quantile only with ``min_count`` values on either side of it, a category value only when
``min_count`` rows hold it (the others are counted in ``other_count``). It is plain JSON: record
it at registration when training-data statistics are given, and compare evaluation data against
it later without the training data.

``compare(profile_train, df_eval)`` reports schema differences, missing-value changes, the share
of numeric values outside the training range (its p1 to p99: the extremes are not stored), unseen
categories (named when seen ``min_count`` times), and a population stability index (PSI) per
column over the training bins. PSI levels follow the usual reading (< 0.1
stable, < 0.25 moderate shift, otherwise major shift); they describe, they do not decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from workers.engines import figures, privacy
from workers.engines.errors import EngineError
from workers.engines.serialize import jsonable

PROFILE_VERSION = 1
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
PSI_FLOOR = 1e-4
PSI_LEVELS = ((0.1, "stable"), (0.25, "moderate shift"), (float("inf"), "major shift"))
MAX_LISTED = 20


def profile(
    df: pd.DataFrame, *, max_categories: int = 50, bins: int = 10, min_count: int = privacy.MIN_COUNT
) -> dict[str, Any]:
    """Per-column statistics of ``df`` as JSON-safe data (see the module docstring)."""
    if not isinstance(df, pd.DataFrame):
        raise EngineError("bad_input", "A profile is taken of a table.")
    columns: dict[str, Any] = {}
    for name in df.columns:
        s = df[name]
        entry: dict[str, Any] = {
            "dtype": str(s.dtype),
            "kind": _kind(s),
            "count": int(s.notna().sum()),
            "missing": int(s.isna().sum()),
            "missing_share": float(s.isna().mean()) if len(s) else 0.0,
        }
        if entry["kind"] == "numeric":
            entry |= _numeric_profile(s.to_numpy(dtype=np.float64, na_value=np.nan), bins=bins)
        elif entry["kind"] == "datetime":
            entry |= _datetime_profile(s)
        else:
            entry |= _categorical_profile(s, max_categories=max_categories)
        columns[str(name)] = privacy.column_aggregates_only(jsonable(entry), k=min_count)
    return jsonable({"version": PROFILE_VERSION, "n_rows": len(df), "columns": columns})


def compare(
    profile_train: Mapping[str, Any],
    df_eval: pd.DataFrame,
    *,
    max_categories: int = 50,
    min_count: int = privacy.MIN_COUNT,
) -> dict[str, Any]:
    """How ``df_eval`` differs from the profiled training data."""
    train_cols: Mapping[str, Any] = profile_train.get("columns", {})
    if not train_cols:
        raise EngineError("bad_profile", "The training profile lists no columns.")
    eval_profile = profile(df_eval, max_categories=max_categories, min_count=min_count)
    eval_cols = eval_profile["columns"]
    schema = {
        "missing_columns": [c for c in train_cols if c not in eval_cols],
        "extra_columns": [c for c in eval_cols if c not in train_cols],
        "kind_changes": [
            {"column": c, "train": train_cols[c]["kind"], "eval": eval_cols[c]["kind"]}
            for c in train_cols
            if c in eval_cols and train_cols[c]["kind"] != eval_cols[c]["kind"]
        ],
        "dtype_changes": [
            {"column": c, "train": train_cols[c]["dtype"], "eval": eval_cols[c]["dtype"]}
            for c in train_cols
            if c in eval_cols and train_cols[c]["dtype"] != eval_cols[c]["dtype"]
        ],
    }
    result: dict[str, Any] = {}
    for name, train in train_cols.items():
        if name not in eval_cols:
            continue
        current = eval_cols[name]
        entry: dict[str, Any] = {
            "kind": train["kind"],
            "missing_share_train": train["missing_share"],
            "missing_share_eval": current["missing_share"],
            "missing_share_change": current["missing_share"] - train["missing_share"],
        }
        if train["kind"] == "numeric" and current["kind"] == "numeric":
            entry |= _numeric_compare(train, df_eval[name].to_numpy(dtype=np.float64, na_value=np.nan))
        elif train["kind"] in ("categorical", "boolean") and current["kind"] in ("categorical", "boolean", "numeric"):
            entry |= _categorical_compare(train, df_eval[name], min_count=min_count)
        if entry.get("psi") is not None:
            entry["psi_level"] = _psi_level(entry["psi"])
        result[name] = entry
    summary = {
        "columns_compared": len(result),
        "major_shift": [c for c, e in result.items() if e.get("psi_level") == "major shift"],
        "moderate_shift": [c for c, e in result.items() if e.get("psi_level") == "moderate shift"],
        "out_of_training_range": [c for c, e in result.items() if e.get("outside_range_exceeds_expected")],
        "unseen_categories": [c for c, e in result.items() if e.get("unseen_count")],
        "more_missing": [c for c, e in result.items() if e["missing_share_change"] > 0.01],
        "schema_differs": bool(schema["missing_columns"] or schema["extra_columns"] or schema["kind_changes"]),
    }
    out = {
        "n_rows_train": profile_train.get("n_rows"),
        "n_rows_eval": len(df_eval),
        "schema": schema,
        "columns": result,
        "summary": summary,
        "psi_levels": {"stable": "< 0.1", "moderate shift": "0.1 to 0.25", "major shift": ">= 0.25"},
        "eval_profile": eval_profile,
    }
    out["figures"] = _figures(result)
    return jsonable(out)


def population_stability_index(expected_shares: Sequence[float], actual_shares: Sequence[float]) -> float:
    """PSI = sum((a - e) * ln(a / e)), shares floored at 1e-4 so that empty bins stay finite."""
    e = np.maximum(np.asarray(expected_shares, dtype=np.float64), PSI_FLOOR)
    a = np.maximum(np.asarray(actual_shares, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


# --- numeric ------------------------------------------------------------------------------------


def _numeric_profile(values: np.ndarray, *, bins: int) -> dict[str, Any]:
    valid = values[np.isfinite(values)]
    if valid.size == 0:
        return {"mean": None, "std": None, "quantiles": {}, "bins": None}
    edges = np.unique(np.quantile(valid, np.linspace(0, 1, bins + 1))[1:-1])  # interior cut points
    shares = _bin_shares(valid, edges)
    return {
        "mean": float(valid.mean()),
        "std": float(valid.std()),
        "n_infinite": int(np.isinf(values).sum()),
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, np.quantile(valid, QUANTILES), strict=True)},
        "bins": {"edges": edges.tolist(), "shares": shares.tolist()},
    }


def _datetime_profile(s: pd.Series) -> dict[str, Any]:
    valid = s.dropna().sort_values()
    if valid.empty:
        return {"quantiles": {}}
    points = valid.quantile(list(QUANTILES))
    return {"quantiles": {str(q): pd.Timestamp(v).isoformat() for q, v in zip(QUANTILES, points, strict=True)}}


def _bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of ``values`` in (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    which = np.searchsorted(edges, values, side="left")
    counts = np.bincount(which, minlength=len(edges) + 1)
    return counts / max(values.size, 1)


def _training_range(train: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """The widest quantiles of the training profile that stand for its range: (q_low, low, q_high, high)."""
    stored = {float(q): v for q, v in (train.get("quantiles") or {}).items() if isinstance(v, int | float)}
    lows, highs = sorted(q for q in stored if q < 0.5), sorted(q for q in stored if q > 0.5)
    if not lows or not highs:
        return None
    return lows[0], float(stored[lows[0]]), highs[-1], float(stored[highs[-1]])


def _numeric_compare(train: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    valid = values[np.isfinite(values)]
    entry: dict[str, Any] = {}
    training_range = _training_range(train)
    if valid.size and training_range is not None:
        q_low, low, q_high, high = training_range
        below, above = float(np.mean(valid < low)), float(np.mean(valid > high))
        expected = q_low + (1.0 - q_high)  # the share of the training data itself outside that range
        # more outside than the training data by more than sampling noise (3 standard errors) and 1 point
        tolerance = 0.01 + 3.0 * float(np.sqrt(expected * (1.0 - expected) / valid.size))
        entry |= {
            "training_range_quantiles": [q_low, q_high],
            "below_range_share": below,
            "above_range_share": above,
            "outside_range_share": below + above,
            "outside_range_share_expected": expected,
            "outside_range_exceeds_expected": bool(below + above > expected + tolerance),
        }
    if valid.size == 0 or train.get("mean") is None:
        return entry | {"psi": None}
    std = train.get("std") or 0.0
    entry["mean_shift_in_train_std"] = (float(valid.mean()) - train["mean"]) / std if std > 0 else None
    bins = train.get("bins")
    if bins:
        shares = _bin_shares(valid, np.asarray(bins["edges"], dtype=np.float64))
        entry["psi"] = population_stability_index(bins["shares"], shares)
        entry["bin_shares_eval"] = shares.tolist()
    return entry


# --- categorical --------------------------------------------------------------------------------


def _categorical_profile(s: pd.Series, *, max_categories: int) -> dict[str, Any]:
    counts = s.dropna().astype(str).value_counts()
    top = counts.iloc[:max_categories]
    return {
        "n_unique": int(counts.size),
        "categories": {str(k): int(v) for k, v in top.items()},
        "other_count": int(counts.iloc[max_categories:].sum()),
        "categories_complete": bool(counts.size <= max_categories),
    }


def _categorical_compare(train: Mapping[str, Any], values: pd.Series, *, min_count: int) -> dict[str, Any]:
    known: Mapping[str, int] = train.get("categories", {})
    complete = bool(train.get("categories_complete", True))
    counts = values.dropna().astype(str).value_counts()
    total = int(counts.sum())
    unseen = [str(c) for c in counts.index if c not in known]
    unseen_count = int(counts[unseen].sum()) if unseen and complete else 0
    named = [c for c in unseen if counts[c] >= min_count]  # a value fewer rows hold is counted, not named
    entry: dict[str, Any] = {
        "unseen_count": unseen_count,
        "unseen_share": unseen_count / total if total and complete else 0.0,
        "unseen_categories": named[:MAX_LISTED] if complete else [],
        "unseen_values": len(unseen) if complete else 0,
        "unseen_listed_all": len(named) <= MAX_LISTED and len(named) == len(unseen),
        "categories_complete_in_training": complete,
    }
    if not complete:
        entry["note"] = (
            "The training profile lists only the most frequent categories; unseen ones cannot be told apart."
        )
    elif train.get("withheld_values"):
        entry["note"] = (
            f"{train['withheld_values']} value(s) of the training data were too rare to be stored; "
            "they count as unseen here."
        )
    train_total = sum(known.values()) + int(train.get("other_count", 0))
    if total and train_total:
        keys = list(known)
        expected = [known[k] / train_total for k in keys] + [int(train.get("other_count", 0)) / train_total]
        in_known = counts.reindex(keys).fillna(0).to_numpy()
        actual = list(in_known / total) + [(total - in_known.sum()) / total]
        entry["psi"] = population_stability_index(expected, actual)
    else:
        entry["psi"] = None
    return entry


# --- helpers -------------------------------------------------------------------------------------


def _kind(s: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_numeric_dtype(s):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime"
    return "categorical"


def _psi_level(psi: float) -> str:
    for limit, level in PSI_LEVELS:
        if psi < limit:
            return level
    return PSI_LEVELS[-1][1]


def _figures(columns: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    with_psi = [(c, e["psi"]) for c, e in columns.items() if e.get("psi") is not None]
    with_psi.sort(key=lambda item: -item[1])
    psi = figures.bar(
        [c for c, _ in with_psi],
        [v for _, v in with_psi],
        title="Population stability index per column (training bins)",
        value_title="PSI",
        horizontal=True,
        reference=(0.25, "0.25: major shift (reference)"),
    )
    names = list(columns)
    missing = figures.grouped_bars(
        names,
        {
            "training": [columns[c]["missing_share_train"] for c in names],
            "evaluation": [columns[c]["missing_share_eval"] for c in names],
        },
        title="Share of missing values",
        value_title="share missing",
    )
    return {"psi": psi, "missing": missing}
