"""One entry point per evaluation kind: data in, the stored result document and figures out.

The result document is what a run keeps as evidence and what the pages render generically:

- ``summary``: flat numbers worth comparing across versions;
- ``tables``: ``{"title", "columns", "rows"}`` of aggregates;
- ``notes``: sentences (which explainer, which groups are small, what is missing);
- kind-specific keys the deployment gates read (``overall`` for fairness, ``metrics`` for
  performance) and the engine's full report under ``report``.

Only aggregates: SHAP's sampled rows keep their attributions without the feature values, no
engine output that quotes data rows is stored, and every kind's document passes through
``privacy.aggregates_only`` before it leaves :func:`evaluate` (no value seen fewer than k times,
no exact extremes, no numbers of a group under k rows).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from workers.engines import benchmark, data_quality, explain, fairness, performance, privacy, robustness
from workers.engines.data import validate
from workers.engines.errors import EngineError
from workers.engines.serialize import jsonable

Progress = Callable[[float, str], None]
KINDS = ("explainability", "fairness", "performance", "robustness", "data_quality", "benchmark")
# Rows the Kernel explainer explains at least (tree and linear models explain every row).
KERNEL_EXPLAIN_ROWS = 200
# The parameter under which each kind reads the k of the privacy rule (set by ``evaluate``, never by a
# request: the request's parameters are validated against each kind's own list).
MIN_COUNT_PARAM = "min_count"


def evaluate(
    kind: str,
    model: Any,
    frame: pd.DataFrame,
    *,
    target: str | None,
    sensitive: list[str],
    parameters: dict[str, Any],
    progress: Progress | None = None,
    training_profile: dict[str, Any] | None = None,
    max_sensitive_groups: int | None = None,
    min_count: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the ``kind`` engine on ``frame``; ``progress`` receives percent (0-100) and a message.
    ``training_profile``: the version's training-data statistics, which data-quality runs compare with.
    ``max_sensitive_groups``: the most distinct values a sensitive column may have (default: the
    ``EVALUATION_MAX_SENSITIVE_GROUPS`` environment variable the web's settings read, else 50).
    ``min_count``: the k of the privacy rule (default: the ``EVALUATION_MIN_COUNT`` environment
    variable, else ``privacy.MIN_COUNT``). ``parameters["sample_weight_column"]`` names a column of
    non-negative weights: it is no model feature, and fairness and performance weigh their metrics
    by it (``data.sample_weight``)."""
    if kind not in KINDS:
        raise EngineError("invalid_kind", f"Unknown evaluation kind {kind!r}.")
    k = privacy.min_count_setting(min_count)
    refuse_identifier_groups(frame, sensitive, max_groups=max_sensitive_groups)
    report = _percent(progress)
    if kind == "data_quality":  # about the data alone: no model call, any column types
        report(0.02, f"{len(frame):,} rows, {frame.shape[1]} columns")
        result, figures = _data_quality(frame, training_profile or {}, _span(report, 0.05, 0.97), k)
    else:
        data = validate(
            frame, target=target, sensitive=sensitive, feature_names=model.feature_names, max_rows=max(len(frame), 1),
            sample_weight_column=parameters.get("sample_weight_column"),
        )  # fmt: skip
        report(0.02, f"{data.n_rows:,} rows, {len(data.feature_names)} features")
        params = {**parameters, MIN_COUNT_PARAM: k}
        result, figures = _KINDS[kind](model, frame, data, params, _span(report, 0.05, 0.97))
    report(0.99, "Storing the result")
    return privacy.aggregates_only(jsonable(result), jsonable(figures), k=k, frame=frame)


def refuse_identifier_groups(frame: pd.DataFrame, sensitive: list[str], *, max_groups: int | None = None) -> None:
    """The second line of defence behind the request's validation: a sensitive column that holds
    identifiers (or too many groups) never reaches an engine, whatever queued the run, so no
    identifier is stored as a group label (``fairness.sensitive_column_problem`` is the rule)."""
    if max_groups is None:
        max_groups = int(os.environ.get("EVALUATION_MAX_SENSITIVE_GROUPS", fairness.DEFAULT_MAX_SENSITIVE_GROUPS))
    for column in sensitive:
        if column in frame.columns:
            problem = fairness.sensitive_column_problem(frame[column], str(column), max_groups=max_groups)
            if problem is not None:
                raise EngineError(*problem)


# --- kinds -------------------------------------------------------------------------------------


def _explainability(model, frame, data, params, progress):
    lime_rows = params.get("lime_rows", 5)
    shap_progress = _span(progress, 0.0, 0.8 if lime_rows else 1.0)
    # sample_rows is honoured in full (params.py bounds it): the Kernel explainer explains at least
    # that many rows, so every row asked for has attributions (fewer only when the data has fewer)
    sample_rows = params.get("sample_rows", 200)
    summary = explain.shap_summary(
        model, data.X, seed=params.get("seed", 0), max_evals=params.get("max_evals"),
        background_size=params.get("background_size", 50), sample_rows=sample_rows,
        explain_rows=max(KERNEL_EXPLAIN_ROWS, sample_rows), include_feature_values=False, progress=shap_progress,
    )  # fmt: skip
    shap_doc = summary.as_dict()
    shap_doc.pop("figures", None)
    figures = _shap_figures(summary, data.X, min_count=params.get(MIN_COUNT_PARAM, privacy.MIN_COUNT))
    result: dict[str, Any] = {
        "summary": {f"mean_abs_shap.{item['feature']}": item["mean_abs_shap"] for item in _importance(summary)[:10]},
        "tables": [
            {
                "title": "Global importance (mean |SHAP|)",
                "columns": ["feature", "mean |SHAP|"],
                "rows": [[item["feature"], round(item["mean_abs_shap"], 6)] for item in _importance(summary)],
            }
        ],  # fmt: skip
        "notes": [
            f"{summary.explainer} in the {summary.output_space} space; base value {_fmt(summary.base_value)}.",
            *summary.notes,
        ],
        "ranking": summary.ranking,
        "shap": shap_doc,
    }
    if lime_rows:
        lime = explain.lime_explanations(
            model, data.X, rows=lime_rows, seed=params.get("seed", 0), progress=_span(progress, 0.8, 1.0)
        )
        lime_doc = lime.as_dict()
        for name, spec in (lime_doc.pop("figures", {}) or {}).items():
            figures[f"lime_{name}"] = spec
        result["lime"] = lime_doc
        result["tables"].append({
            "title": f"LIME: mean |weight| over {len(lime.rows)} explained rows", "columns": ["feature", "weight"],
            "rows": [[i.get("feature"), _round(i.get("mean_abs_weight", i.get("weight")))] for i in lime.importance],
        })  # fmt: skip
    return result, figures


def _shap_figures(summary, X, *, min_count: int = privacy.MIN_COUNT) -> dict[str, Any]:
    """Figures from aggregates only. The engine's beeswarm and dependence plots draw individual rows'
    feature values; evidence keeps the importance bar, the spread of attributions per feature
    (quartiles) and dependence as the mean attribution per quantile bin of the feature."""
    figures_out = {"importance": summary.figures["importance"]} if "importance" in summary.figures else {}
    values = summary.values
    if values is None:
        return figures_out
    if values.ndim == 3:
        values = values[:, :, -1]
    names = list(summary.feature_names)
    top = [item["feature"] for item in summary.importance[:10]]
    columns = [names.index(f) for f in top]
    quartiles = np.percentile(values[:, columns], [5, 25, 50, 75, 95], axis=0)
    figures_out["attribution_spread"] = {
        "data": [{
            "type": "box", "orientation": "h", "y": top, "name": "SHAP",
            "lowerfence": _rounded(quartiles[0]), "q1": _rounded(quartiles[1]), "median": _rounded(quartiles[2]),
            "q3": _rounded(quartiles[3]), "upperfence": _rounded(quartiles[4]),
        }],
        "layout": {"title": {"text": "Spread of attributions (5th–95th percentile)"},
                   "xaxis": {"title": {"text": "SHAP value"}}, "yaxis": {"autorange": "reversed", "type": "category"},
                   "showlegend": False},
    }  # fmt: skip
    if values.shape[0] != len(X):  # a model-agnostic explainer explained a sample: no per-row alignment here
        return figures_out
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=names)
    for feature in top[:3]:
        column = pd.to_numeric(frame[feature], errors="coerce")
        # deciles, fewer when the data is small: each point is the mean of at least k rows
        bins_wanted = min(10, max(column.nunique(), 1), max(len(column) // min_count, 1))
        bins = pd.qcut(column, q=bins_wanted, duplicates="drop")
        grouped = pd.DataFrame({"x": column, "shap": values[:, names.index(feature)], "bin": bins}).groupby(
            "bin", observed=True
        )
        stats = grouped.agg(x=("x", "mean"), shap=("shap", "mean"), n=("shap", "size"))
        figures_out[f"dependence_{feature}"] = {
            "data": [{"type": "scatter", "mode": "lines+markers", "x": _rounded(stats["x"]), "y": _rounded(stats["shap"]),
                      "text": [f"{int(n)} rows" for n in stats["n"]], "name": feature}],
            "layout": {"title": {"text": f"Dependence on {feature} (mean per decile)"},
                       "xaxis": {"title": {"text": feature}}, "yaxis": {"title": {"text": "mean SHAP value"}}},
        }  # fmt: skip
    return figures_out


def _rounded(values) -> list[float]:
    return [round(float(v), 6) for v in np.asarray(values, dtype=np.float64)]


def _fairness(model, frame, data, params, progress):
    if data.y is None:
        raise EngineError("missing_target", "A fairness evaluation needs the target column.")
    progress(0.0, "Predicting")
    y_pred = model.predict(data.X)
    report = fairness.fairness_report(
        data.y, y_pred, data.sensitive, pos_label=params.get("positive_label", 1),
        min_group_size=params.get("min_group_size", fairness.DEFAULT_MIN_GROUP_SIZE),
        bootstrap_resamples=params.get("bootstrap", 200), seed=params.get("seed", 0),
        sample_weight=data.sample_weight, progress=_span(progress, 0.1, 1.0),
    )  # fmt: skip
    doc = report.as_dict()
    figures = doc.pop("figures", {}) or {}
    primary = report.primary
    disparities = dict(primary.disparities)
    tables = []
    for analysis in report.analyses:
        tables.append({
            "title": f"Groups of {analysis.name}",
            "columns": ["group", "rows", "selection rate", "accuracy", "TPR", "FPR", "small"],
            "rows": [[g.label, g.count, _round(g.metrics.get("selection_rate")), _round(g.metrics.get("accuracy")),
                      _round(g.metrics.get("recall")), _round(g.metrics.get("false_positive_rate")),
                      "yes" if g.small else ""] for g in analysis.groups],
        })  # fmt: skip
    ratio = disparities.get("demographic_parity_ratio")
    notes = [
        f"Demographic-parity ratio {_fmt(ratio)} over {primary.name}; the four-fifths rule (0.8) is shown as a "
        "reference, not a verdict."
    ]
    left_out = primary.comparison.get("left_out") or []
    if left_out:
        notes.append(
            f"Left out of the disparities (fewer than {report.min_group_size} rows): "
            + ", ".join(f"{e['group']} ({e['reason']})" for e in left_out) + "."
        )  # fmt: skip
    for rate, groups in (primary.comparison.get("undefined_left_out") or {}).items():
        what = fairness.RATE_NAMES[rate]
        notes.append(
            f"{what} undefined (no {fairness.DENOMINATOR_NAMES[rate]}), so left out of the {what} comparison: "
            f"{', '.join(groups)}."
        )
    result = {
        "summary": {**disparities, "selection_rate": report.overall.get("selection_rate")},
        "overall": disparities,
        "tables": tables,
        "notes": notes,
        "report": doc,
    }
    return result, figures


def _performance(model, frame, data, params, progress):
    if data.y is None:
        raise EngineError("missing_target", "A performance evaluation needs the target column.")
    slice_column = params.get("slice_column")
    report = performance.performance_report(
        model, data.X, data.y, slice_by=frame[slice_column] if slice_column else None, slice_name=slice_column,
        pos_label=params.get("positive_label"), sample_weight=data.sample_weight,
        min_count=params.get(MIN_COUNT_PARAM, privacy.MIN_COUNT), progress=progress,
    )  # fmt: skip
    doc = report.as_dict()
    figures = doc.pop("figures", {}) or {}
    numbers = {k: v for k, v in report.metrics.items() if _is_number(v) and k not in ("n_rows", "pos_label")}
    tables = [
        {"title": "Metrics", "columns": ["metric", "value"], "rows": [[k, _round(v)] for k, v in numbers.items()]}
    ]
    slices = report.slices or {}
    if slices.get("slices"):
        first = slices["slices"][0].get("metrics") or {}
        keys = [k for k in ("accuracy", "f1", "recall", "roc_auc", "mae", "rmse", "r2") if k in first]
        tables.append({
            "title": f"By {slices.get('column', 'slice')}", "columns": ["slice", "rows", *keys, "small"],
            "rows": [[s.get("value"), s.get("count"), *(_round((s.get("metrics") or {}).get(k)) for k in keys),
                      "yes" if s.get("small") else ""] for s in slices["slices"]],
        })  # fmt: skip
    return {
        "summary": numbers,
        "metrics": numbers,
        "tables": tables,
        "notes": list(report.notes),
        "report": doc,
    }, figures


def _robustness(model, frame, data, params, progress):
    if data.y is None:
        raise EngineError("missing_target", "A robustness evaluation needs the target column.")
    report = robustness.robustness_report(
        model, data.X, data.y, noise_levels=params.get("noise_levels", (0.01, 0.05, 0.1)),
        missing_rates=(params.get("missing_share", 0.1),), seed=params.get("seed", 0), progress=progress,
    )  # fmt: skip
    doc = report.as_dict()
    figures = doc.pop("figures", {}) or {}
    summary = {f"{report.metric}.baseline": _baseline(report.baseline)}
    for item in report.noise:
        if item.get("delta") is not None:
            summary[f"{report.metric}.delta_at_noise_{item.get('level')}"] = item["delta"]
    cases = report.out_of_range + report.malformed
    notes = [f"Metric: {report.metric} on a seeded sample of {report.sample_rows} rows."]
    raised = [c["case"] for c in cases if c.get("outcome") == "raised"]
    if raised:
        notes.append(f"The model raised on: {', '.join(raised)}.")
    if not report.model_accepts_nan:
        notes.append("The model does not accept missing values.")
    tables = [{
        "title": "Unusual inputs", "columns": ["case", "outcome"],
        "rows": [[c.get("case"), c.get("outcome")] for c in cases],
    }]  # fmt: skip
    return {"summary": summary, "tables": tables, "notes": notes, "report": doc}, figures


def _data_quality(frame, training_profile, progress, min_count):
    progress(0.1, "Profiling the evaluation data")
    profile = data_quality.profile(frame, min_count=min_count)
    columns = profile.get("columns") or {}
    rows = []
    for name, col in columns.items():
        quantiles = col.get("quantiles") or {}
        low, high = quantiles.get("0.01"), quantiles.get("0.99")  # the extremes are not stored
        span = f"{_round(low)} – {_round(high)}" if col.get("kind") == "numeric" and low is not None else ""
        rows.append([name, col.get("kind"), col.get("dtype"), _round(col.get("missing_share")), span])
    tables = [{
        "title": "Columns", "columns": ["column", "kind", "type", "missing share", "range (p1 – p99)"], "rows": rows,
    }]  # fmt: skip
    summary: dict[str, Any] = {"rows": profile.get("n_rows", len(frame)), "columns": len(columns)}
    result: dict[str, Any] = {"summary": summary, "tables": tables, "profile": profile}
    if not training_profile:
        result["notes"] = [
            "No training-data profile was registered with this version, so the evaluation data is profiled on its "
            "own (register one with the version: manage.py profile_data train.csv)."
        ]
        return result, {}
    progress(0.5, "Comparing with the training data")
    comparison = data_quality.compare(training_profile, frame, min_count=min_count)
    figures = comparison.pop("figures", None) or {}  # PSI and missing share per column: aggregates
    result["comparison"] = comparison
    schema = comparison.get("schema") or {}
    shifted = {name: c for name, c in (comparison.get("columns") or {}).items() if c.get("psi") is not None}
    summary.update({
        "missing_columns": len(schema.get("missing_columns") or []),
        "extra_columns": len(schema.get("extra_columns") or []),
        "max_psi": max((c["psi"] for c in shifted.values()), default=None),
    })  # fmt: skip
    tables.insert(0, {
        "title": "Against the training data", "columns": ["column", "PSI", "level", "missing share (train → eval)"],
        "rows": [[name, _round(c.get("psi")), c.get("psi_level"),
                  f"{_round(c.get('missing_share_train'))} → {_round(c.get('missing_share_eval'))}"]
                 for name, c in (comparison.get("columns") or {}).items()],
    })  # fmt: skip
    notes = []
    if schema.get("missing_columns"):
        notes.append(f"Columns of the training data missing here: {', '.join(schema['missing_columns'])}.")
    major = [name for name, c in shifted.items() if c.get("psi_level") == "major shift"]
    if major:
        notes.append(f"Major distribution shift (PSI > 0.25) in: {', '.join(major)}.")
    result["notes"] = notes or ["The evaluation data resembles the training data on every compared column."]
    return result, figures


def _benchmark(model, frame, data, params, progress):
    """The hardware benchmark: the data is only the inputs the batches are cycled from (the model's
    features); the document records latency, throughput and memory, never a row."""
    result = benchmark.benchmark(
        model, data.X, batch_sizes=params["batch_sizes"], warmup=params["warmup"], min_calls=params["min_calls"],
        max_calls=params["max_calls"], time_budget_seconds=params["time_budget_seconds"],
        p95_ci_width=params["p95_ci_width"], device=params["device"], progress=progress,
    )  # fmt: skip
    return result, {}


_KINDS = {
    "benchmark": _benchmark,
    "explainability": _explainability,
    "fairness": _fairness,
    "performance": _performance,
    "robustness": _robustness,
}


# --- helpers -----------------------------------------------------------------------------------


def _percent(progress: Progress | None) -> Progress:
    def report(fraction: float, message: str = "") -> None:
        if progress is not None:
            progress(100.0 * max(0.0, min(1.0, fraction)), message)

    return report


def _span(progress: Progress, start: float, end: float) -> Progress:
    """A progress callback for one stretch of the run (engines report 0..1)."""

    def report(fraction: float, message: str = "") -> None:
        progress(start + (end - start) * max(0.0, min(1.0, fraction)), message)

    return report


def _importance(summary) -> list[dict[str, Any]]:
    return [dict(item) for item in summary.importance]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)


def _round(value: Any, digits: int = 4) -> Any:
    return round(float(value), digits) if _is_number(value) else value


def _fmt(value: Any) -> str:
    return f"{float(value):.3f}" if _is_number(value) else "n/a"


def _baseline(baseline: Any) -> Any:
    if isinstance(baseline, dict):
        return baseline.get("value", baseline.get("metric"))
    return baseline
