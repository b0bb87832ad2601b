"""Predictive performance: classification and regression metrics, per-slice metrics, figures.

Classifiers: accuracy, balanced accuracy, precision / recall / F1 (the positive class of a binary
model; macro and weighted averages otherwise), ROC AUC (binary, or one-vs-rest macro for
multiclass), log loss and Brier score from probabilities, the confusion matrix, the calibration
curve with its expected calibration error (binary) and ROC curves. Regressors: MAE, RMSE, R2.
Per-slice metrics for one named column (categories, or quantile bins of a numeric column).

``sample_weight`` (non-negative, one per row) weighs every metric as scikit-learn's ``sample_weight``
does; row counts (slice sizes, calibration bins, the confusion matrix) stay counts of rows, and the
weighted confusion matrix is added beside them. ``pos_label`` names the positive class of a binary
model: one of its classes, or a word that plainly means yes or no for yes/no-like classes (``True``
for boolean labels with ``pos_label="yes"``).

Only aggregates are returned: no row-level predictions or values; slices and calibration bins of
fewer than ``min_count`` rows keep their size only, and bin labels of a numeric slice column name
its interior cut points, not its extremes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workers.engines import figures, privacy
from workers.engines.errors import EngineError
from workers.engines.labels import truth
from workers.engines.loading import wrap_estimator
from workers.engines.serialize import jsonable

Progress = Callable[[float, str], None]

MAX_CONFUSION_LABELS = 50
ROC_POINTS = 200


@dataclass
class PerformanceReport:
    """What :func:`performance_report` returns; ``as_dict()`` is the stored evidence."""

    task: str
    n_rows: int
    metrics: dict[str, Any]
    labels: list[Any] | None = None
    confusion_matrix: list[list[int]] | None = None
    confusion_matrix_weighted: list[list[float]] | None = None
    calibration: dict[str, Any] | None = None
    roc: list[dict[str, Any]] | None = None
    slices: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "task": self.task,
                "n_rows": self.n_rows,
                "metrics": self.metrics,
                "labels": self.labels,
                "confusion_matrix": self.confusion_matrix,
                "confusion_matrix_weighted": self.confusion_matrix_weighted,
                "calibration": self.calibration,
                "roc": self.roc,
                "slices": self.slices,
                "notes": self.notes,
                "figures": self.figures,
            }
        )


def performance_report(
    model: Any,
    X: pd.DataFrame | np.ndarray,
    y: Sequence[Any] | np.ndarray | pd.Series,
    *,
    slice_by: pd.Series | np.ndarray | None = None,
    slice_name: str | None = None,
    pos_label: Any = None,
    calibration_bins: int = 10,
    max_slices: int = 20,
    small_slice_threshold: int = 30,
    sample_weight: Sequence[float] | np.ndarray | pd.Series | None = None,
    min_count: int = privacy.MIN_COUNT,
    progress: Progress | None = None,
) -> PerformanceReport:
    """Predict once on ``X`` and measure against ``y``; ``slice_by`` adds per-slice metrics."""
    model = wrap_estimator(model)
    y_true = _labels(y)
    if y_true.shape[0] == 0:
        raise EngineError("empty_data", "There are no rows to evaluate.")
    weights = sample_weights(sample_weight, y_true.shape[0])
    _tick(progress, 0.0, "Predicting")
    y_pred = model.predict(X)
    proba = model.predict_proba(X) if model.task == "classification" else None
    _tick(progress, 0.5, "Computing metrics")
    if model.task == "classification":
        report = _classification_report(
            y_true, y_pred, proba, classes=model.classes, pos_label=pos_label, calibration_bins=calibration_bins,
            sample_weight=weights, min_count=min_count,
        )  # fmt: skip
    else:
        report = PerformanceReport(
            task="regression", n_rows=len(y_true), metrics=regression_metrics(y_true, y_pred, sample_weight=weights)
        )
        report.figures["predicted_vs_actual"] = _binned_regression_figure(
            y_true, y_pred, sample_weight=weights, min_count=min_count
        )
    if weights is not None:
        report.metrics["sum_of_weights"] = float(weights.sum())
        report.notes.append("Every metric is weighted by the sample weights; counts are rows.")
    if slice_by is not None:
        _tick(progress, 0.8, "Computing per-slice metrics")
        report.slices = slice_metrics(
            y_true,
            y_pred,
            proba,
            slice_by,
            name=slice_name or getattr(slice_by, "name", None) or "slice",
            task=model.task,
            labels=report.labels,
            pos_label=report.metrics.get("pos_label"),
            max_slices=max_slices,
            small_slice_threshold=small_slice_threshold,
            sample_weight=weights,
            min_count=min_count,
        )
        report.figures["slices"] = _slice_figure(report.slices)
    _tick(progress, 1.0, "Performance done")
    return report


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    y_proba: np.ndarray | None = None,
    *,
    labels: Sequence[Any] | None = None,
    pos_label: Any = None,
    sample_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Classifier metrics; ``y_proba`` columns follow ``labels`` (the model's classes). With
    ``sample_weight`` each metric is scikit-learn's with ``sample_weight``."""
    from sklearn import metrics as skm

    y_true, y_pred = _labels(y_true), _labels(y_pred)
    labels = list(labels) if labels is not None else _sorted_union(y_true, y_pred)
    binary = len(labels) == 2
    w = sample_weight
    out: dict[str, Any] = {
        "n_rows": int(y_true.shape[0]),
        "accuracy": _maybe(lambda: skm.accuracy_score(y_true, y_pred, sample_weight=w)),
        "balanced_accuracy": _maybe(lambda: skm.balanced_accuracy_score(y_true, y_pred, sample_weight=w)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if binary:
            pos = positive_class(labels, pos_label)
            out["pos_label"] = pos
            for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
                out[name] = _maybe(
                    lambda fn=fn: fn(y_true, y_pred, pos_label=pos, zero_division=0, labels=labels, sample_weight=w)
                )
        for average in ("macro", "weighted"):
            for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
                out[f"{name}_{average}"] = _maybe(
                    lambda fn=fn, average=average: fn(
                        y_true, y_pred, average=average, zero_division=0, labels=labels, sample_weight=w
                    )
                )
        if y_proba is not None and y_proba.ndim == 2 and y_proba.shape[1] == len(labels):
            present = set(np.unique(y_true).tolist())
            if binary:
                p = y_proba[:, labels.index(out["pos_label"])]
                is_pos = y_true == out["pos_label"]
                out["roc_auc"] = (
                    _maybe(lambda: skm.roc_auc_score(is_pos, p, sample_weight=w)) if len(present) == 2 else None
                )
                out["brier_score"] = _maybe(lambda: np.average((p - is_pos) ** 2, weights=w))
            else:
                out["roc_auc_ovr_macro"] = (
                    _maybe(
                        lambda: skm.roc_auc_score(y_true, y_proba, multi_class="ovr", labels=labels, sample_weight=w)
                    )
                    if present == set(labels)
                    else None
                )
            # scikit-learn clips at the machine epsilon of the probabilities' dtype itself; clipping to
            # [0, 1] first only keeps a rounding error of a model (1 + 1e-9) from being refused
            out["log_loss"] = _maybe(
                lambda: skm.log_loss(y_true, np.clip(y_proba, 0.0, 1.0), labels=labels, sample_weight=w)
            )
    return out


def positive_class(labels: Sequence[Any], pos_label: Any) -> Any:
    """The class of a binary model that is positive: ``labels[1]`` (the larger, as scikit-learn sorts
    classes) when ``pos_label`` is ``None``; else the class equal to ``pos_label``; else, when both
    classes and ``pos_label`` plainly mean yes or no (booleans, 0/1, "yes"/"no", "true"/"false"), the
    class that means what ``pos_label`` means. ``invalid_positive_label`` otherwise."""
    labels = list(labels)
    if pos_label is None:
        return labels[1]
    for label in labels:
        if type(label) is type(pos_label) or not isinstance(label, bool | np.bool_):
            try:
                if bool(label == pos_label):
                    return label
            except (TypeError, ValueError):
                continue
    truths = [truth(label) for label in labels]
    wanted = truth(pos_label)
    if wanted is not None and None not in truths and len(set(truths)) == len(truths):
        return labels[truths.index(wanted)]
    raise EngineError(
        "invalid_positive_label",
        f"The positive label {str(pos_label)[:40]!r} is not one of the model's two classes, and it does not plainly "
        "mean yes or no for them: name one of the classes (positive_label).",
    )


def regression_metrics(y_true: Any, y_pred: Any, *, sample_weight: np.ndarray | None = None) -> dict[str, Any]:
    """MAE, RMSE, R2 (scikit-learn's, weighted with ``sample_weight``) and mean error, target and prediction."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    w = sample_weight
    if w is not None and float(np.sum(w)) <= 0:
        return {"n_rows": int(y_true.shape[0]), "mae": None, "rmse": None, "r2": None, "mean_error": None,
                "mean_target": None, "mean_prediction": None}  # fmt: skip
    error = y_pred - y_true
    mean_true = float(np.average(y_true, weights=w))
    ss_tot = float(np.sum((w if w is not None else 1.0) * (y_true - mean_true) ** 2))
    ss_res = float(np.sum((w if w is not None else 1.0) * error**2))
    return {
        "n_rows": int(y_true.shape[0]),
        "mae": float(np.average(np.abs(error), weights=w)),
        "rmse": float(np.sqrt(np.average(error**2, weights=w))),
        "r2": float(1.0 - ss_res / ss_tot) if ss_tot > 0 else None,
        "mean_error": float(np.average(error, weights=w)),
        "mean_target": mean_true,
        "mean_prediction": float(np.average(y_pred, weights=w)),
    }


def sample_weights(sample_weight: Any, n_rows: int) -> np.ndarray | None:
    """``sample_weight`` as float64, checked: one finite, non-negative number per row, not all 0."""
    if sample_weight is None:
        return None
    values = sample_weight.to_numpy() if isinstance(sample_weight, pd.Series | pd.Index) else sample_weight
    try:
        w = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise EngineError("bad_sample_weight", "The sample weights must be numbers.") from None
    if w.shape[0] != n_rows:
        raise EngineError("bad_sample_weight", f"There are {w.shape[0]} sample weights for {n_rows} rows.")
    if not np.isfinite(w).all():
        raise EngineError("bad_sample_weight", "The sample weights must be finite numbers (no missing values).")
    if (w < 0).any():
        raise EngineError("bad_sample_weight", "The sample weights must not be negative.")
    if not (w > 0).any():
        raise EngineError("bad_sample_weight", "Every sample weight is 0: there is nothing to measure.")
    return w


def slice_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    slice_by: Any,
    *,
    name: str,
    task: str,
    labels: list[Any] | None,
    pos_label: Any,
    max_slices: int = 20,
    small_slice_threshold: int = 30,
    sample_weight: np.ndarray | None = None,
    min_count: int = privacy.MIN_COUNT,
) -> dict[str, Any]:
    """Metrics per value of ``slice_by`` (quantile bins when numeric with many values). A slice of
    fewer than ``min_count`` rows keeps its size only, and takes no part in the spread."""
    values = pd.Series(np.asarray(slice_by)).reset_index(drop=True)
    if len(values) != len(y_true):
        raise EngineError("length_mismatch", f"The slice column {name!r} has {len(values)} rows, not {len(y_true)}.")
    binned = False
    order: list[str] | None = None
    if (
        pd.api.types.is_numeric_dtype(values)
        and not pd.api.types.is_bool_dtype(values)
        and values.nunique() > max_slices
    ):
        codes, edges = pd.qcut(values, q=min(5, max_slices), labels=False, retbins=True, duplicates="drop")
        order = _bin_labels(edges[1:-1])  # the interior cut points: the extremes are no label
        values = pd.Series([order[int(c)] if pd.notna(c) else None for c in codes], dtype=object)
        binned = True
    counts = values.astype(object).where(values.notna(), "(missing)").value_counts()
    keep = list(counts.index[: max_slices - 1]) if len(counts) > max_slices else list(counts.index)
    if order is not None:  # quantile bins in value order
        keep = [c for c in order if c in keep] + [c for c in keep if c not in order]
    keys = values.astype(object).where(values.notna(), "(missing)")
    keys = keys.where(keys.isin(keep), "(other)")
    slices = []
    for key in [*keep, *(["(other)"] if len(counts) > max_slices else [])]:
        mask = (keys == key).to_numpy()
        n = int(mask.sum())
        w = sample_weight[mask] if sample_weight is not None else None
        if n < min_count:  # its rates would be its few rows' labels: the size only
            slices.append({"value": key, "count": n, "small": True, "metrics": {}})
            continue
        if task == "classification":
            m = classification_metrics(
                y_true[mask],
                y_pred[mask],
                proba[mask] if proba is not None else None,
                labels=labels,
                pos_label=pos_label,
                sample_weight=w,
            )
        else:
            m = regression_metrics(y_true[mask], y_pred[mask], sample_weight=w)
        m.pop("n_rows", None)
        slices.append({"value": key, "count": n, "small": n < small_slice_threshold, "metrics": m})
    main = "accuracy" if task == "classification" else "rmse"
    scores = [s["metrics"].get(main) for s in slices if s["metrics"].get(main) is not None]
    return jsonable(
        {
            "column": name,
            "binned": binned,
            "main_metric": main,
            "slices": slices,
            "spread": (max(scores) - min(scores)) if scores else None,
            "small_slice_threshold": small_slice_threshold,
        }
    )


def _bin_labels(cuts: np.ndarray) -> list[str]:
    """``≤ c0``, ``(c0, c1]``, …, ``> c_last`` for the interior cut points of quantile bins."""
    text = [f"{float(c):.4g}" for c in cuts]
    if not text:
        return ["(all)"]
    return [f"≤ {text[0]}", *(f"({a}, {b}]" for a, b in zip(text, text[1:], strict=False)), f"> {text[-1]}"]


def _classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    *,
    classes: list[Any] | None,
    pos_label: Any,
    calibration_bins: int,
    sample_weight: np.ndarray | None = None,
    min_count: int = privacy.MIN_COUNT,
) -> PerformanceReport:
    from sklearn import metrics as skm

    labels = list(classes) if classes else _sorted_union(y_true, y_pred)
    notes = []
    if proba is not None and proba.shape[1] != len(labels):
        notes.append("The model's probabilities do not match its classes; probability metrics were skipped.")
        proba = None
    unknown = set(np.unique(y_true).tolist()) - set(labels)
    if unknown:
        notes.append(f"The target holds {len(unknown)} label(s) the model does not predict.")
        labels = _sorted_union(np.asarray(labels, dtype=object), y_true)
        proba = None
    metrics = classification_metrics(
        y_true, y_pred, proba, labels=labels, pos_label=pos_label, sample_weight=sample_weight
    )
    report = PerformanceReport(task="classification", n_rows=len(y_true), metrics=metrics, labels=labels, notes=notes)
    fig = report.figures
    if len(labels) <= MAX_CONFUSION_LABELS:
        cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
        report.confusion_matrix = cm.tolist()
        if sample_weight is not None:
            weighted = skm.confusion_matrix(y_true, y_pred, labels=labels, sample_weight=sample_weight)
            report.confusion_matrix_weighted = weighted.tolist()
        fig["confusion_matrix"] = figures.heatmap(
            cm,
            x=labels,
            y=labels,
            title="Confusion matrix",
            x_title="predicted",
            y_title="actual",
            text=[[str(v) for v in row] for row in cm],
        )
    if proba is not None:
        report.roc = _roc_curves(y_true, proba, labels, metrics.get("pos_label"), sample_weight=sample_weight)
        if report.roc:
            fig["roc"] = figures.lines(
                [{"name": f"{c['label']} (AUC {c['auc']:.3f})", "x": c["fpr"], "y": c["tpr"], "mode": "lines"} for c in report.roc],
                title="ROC curve",
                x_title="false positive rate",
                y_title="true positive rate",
                diagonal=True,
                square=True,
            )  # fmt: skip
        if len(labels) == 2:
            report.calibration = calibration(
                y_true == metrics["pos_label"], proba[:, labels.index(metrics["pos_label"])], bins=calibration_bins,
                sample_weight=sample_weight, min_count=min_count,
            )  # fmt: skip
            cal = report.calibration
            fig["calibration"] = figures.lines(
                [{"name": "model", "x": cal["mean_predicted"], "y": cal["fraction_positive"],
                  "text": [f"{c} rows" for c in cal["counts"]]}],
                title=f"Calibration (ECE {cal['expected_calibration_error']:.3f})",
                x_title="mean predicted probability",
                y_title="fraction of positives",
                diagonal=True,
                square=True,
            )  # fmt: skip
    return report


def calibration(
    is_positive: np.ndarray,
    p: np.ndarray,
    *,
    bins: int = 10,
    sample_weight: np.ndarray | None = None,
    min_count: int = 1,
) -> dict[str, Any]:
    """Reliability curve on ``bins`` equal-width bins and the expected calibration error (over every
    row). Empty bins are left out, and so are the points of bins of fewer than ``min_count`` rows (a
    one-row bin's fraction of positives is that row's label); ``bins_withheld`` counts them. With
    ``sample_weight`` the means and the error are weighted; ``counts`` stay rows."""
    is_positive = np.asarray(is_positive, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    w = np.ones_like(p) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    mass = np.bincount(which, weights=w, minlength=bins)
    sum_p = np.bincount(which, weights=w * p, minlength=bins)
    sum_y = np.bincount(which, weights=w * is_positive, minlength=bins)
    used = mass > 0
    mean_p = sum_p[used] / mass[used]
    frac = sum_y[used] / mass[used]
    ece = float(np.sum(mass[used] / mass.sum() * np.abs(frac - mean_p)))
    shown = counts[used] >= min_count
    return {
        "bins": bins,
        "strategy": "uniform",
        "bin_edges": edges.tolist(),
        "mean_predicted": mean_p[shown].tolist(),
        "fraction_positive": frac[shown].tolist(),
        "counts": counts[used][shown].tolist(),
        "bins_withheld": int((~shown).sum()),
        "expected_calibration_error": ece,
    }


def _roc_curves(
    y_true: np.ndarray, proba: np.ndarray, labels: list[Any], pos_label: Any, *, sample_weight: np.ndarray | None = None
) -> list[dict[str, Any]]:
    from sklearn.metrics import auc, roc_curve

    targets = [pos_label] if len(labels) == 2 else labels[:10]
    curves = []
    for label in targets:
        is_pos = y_true == label
        if is_pos.all() or not is_pos.any():
            continue
        fpr, tpr, _ = roc_curve(is_pos, proba[:, labels.index(label)], sample_weight=sample_weight)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS + 1)).round().astype(int))
        curves.append(
            {"label": label, "auc": float(auc(fpr, tpr)), "fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}
        )
    return curves


def _binned_regression_figure(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    bins: int = 10,
    *,
    sample_weight: np.ndarray | None = None,
    min_count: int = privacy.MIN_COUNT,
) -> dict[str, Any]:
    """Mean actual value per decile of the prediction (fewer bins for small data: each point is the
    mean of at least ``min_count`` rows): aggregates, not row-level points."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    w = np.ones_like(y_pred) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    bins = max(1, min(bins, y_pred.shape[0] // max(min_count, 1)))
    edges = np.unique(np.quantile(y_pred, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, y_pred, side="right") - 1, 0, max(len(edges) - 2, 0))
    counts = np.bincount(which)
    mass = np.bincount(which, weights=w)
    used = (counts >= min(min_count, y_pred.shape[0])) & (mass > 0)
    mean_pred = np.bincount(which, weights=w * y_pred)[used] / mass[used]
    mean_true = np.bincount(which, weights=w * y_true)[used] / mass[used]
    low, high = float(min(mean_pred.min(), mean_true.min())), float(max(mean_pred.max(), mean_true.max()))
    fig = figures.lines(
        [
            {"name": "mean actual per prediction decile", "x": mean_pred, "y": mean_true, "text": [f"{c} rows" for c in counts[used]]},
            {"name": "reference (actual = predicted)", "x": [low, high], "y": [low, high], "mode": "lines"},
        ],
        title="Predicted against actual (by prediction decile)",
        x_title="mean prediction",
        y_title="mean actual value",
    )  # fmt: skip
    return fig


def _slice_figure(slices: dict[str, Any]) -> dict[str, Any]:
    main = slices["main_metric"]
    return figures.bar(
        [s["value"] for s in slices["slices"]],
        [s["metrics"].get(main) for s in slices["slices"]],
        title=f"{main} by {slices['column']}",
        value_title=main,
        category_title=slices["column"],
    )


def _labels(y: Any) -> np.ndarray:
    values = y.to_numpy() if isinstance(y, (pd.Series, pd.Index)) else np.asarray(y)
    return values.reshape(-1) if values.ndim == 2 and values.shape[1] == 1 else values


def _sorted_union(a: np.ndarray, b: np.ndarray) -> list[Any]:
    values = set(pd.unique(np.asarray(a, dtype=object)).tolist()) | set(pd.unique(np.asarray(b, dtype=object)).tolist())
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _maybe(fn: Callable[[], Any]) -> float | None:
    try:
        value = float(fn())
    except (ValueError, ZeroDivisionError, TypeError):
        return None
    return value if np.isfinite(value) else None


def _tick(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)
