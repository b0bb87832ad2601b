"""Predictive performance: classification and regression metrics, per-slice metrics, figures.

Classifiers: accuracy, balanced accuracy, precision / recall / F1 (the positive class of a binary
model; macro and weighted averages otherwise), ROC AUC (binary, or one-vs-rest macro for
multiclass), log loss and Brier score from probabilities, the confusion matrix, the calibration
curve with its expected calibration error (binary) and ROC curves. Regressors: MAE, RMSE, R2.
Per-slice metrics for one named column (categories, or quantile bins of a numeric column).

Only aggregates are returned: no row-level predictions or values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workers.engines import figures
from workers.engines.errors import EngineError
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
    progress: Progress | None = None,
) -> PerformanceReport:
    """Predict once on ``X`` and measure against ``y``; ``slice_by`` adds per-slice metrics."""
    model = wrap_estimator(model)
    y_true = _labels(y)
    if y_true.shape[0] == 0:
        raise EngineError("empty_data", "There are no rows to evaluate.")
    _tick(progress, 0.0, "Predicting")
    y_pred = model.predict(X)
    proba = model.predict_proba(X) if model.task == "classification" else None
    _tick(progress, 0.5, "Computing metrics")
    if model.task == "classification":
        report = _classification_report(
            y_true, y_pred, proba, classes=model.classes, pos_label=pos_label, calibration_bins=calibration_bins
        )
    else:
        report = PerformanceReport(task="regression", n_rows=len(y_true), metrics=regression_metrics(y_true, y_pred))
        report.figures["predicted_vs_actual"] = _binned_regression_figure(y_true, y_pred)
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
) -> dict[str, Any]:
    """Classifier metrics; ``y_proba`` columns follow ``labels`` (the model's classes)."""
    from sklearn import metrics as skm

    y_true, y_pred = _labels(y_true), _labels(y_pred)
    labels = list(labels) if labels is not None else _sorted_union(y_true, y_pred)
    binary = len(labels) == 2
    out: dict[str, Any] = {
        "n_rows": int(y_true.shape[0]),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": _maybe(lambda: skm.balanced_accuracy_score(y_true, y_pred)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if binary:
            pos = labels[1] if pos_label is None else pos_label
            out["pos_label"] = pos
            for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
                out[name] = float(fn(y_true, y_pred, pos_label=pos, zero_division=0, labels=labels))
        for average in ("macro", "weighted"):
            for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
                out[f"{name}_{average}"] = float(fn(y_true, y_pred, average=average, zero_division=0, labels=labels))
        if y_proba is not None and y_proba.ndim == 2 and y_proba.shape[1] == len(labels):
            present = set(np.unique(y_true).tolist())
            if binary:
                p = y_proba[:, labels.index(out["pos_label"])]
                is_pos = y_true == out["pos_label"]
                out["roc_auc"] = _maybe(lambda: skm.roc_auc_score(is_pos, p)) if len(present) == 2 else None
                out["brier_score"] = float(np.mean((p - is_pos) ** 2))
            else:
                out["roc_auc_ovr_macro"] = (
                    _maybe(lambda: skm.roc_auc_score(y_true, y_proba, multi_class="ovr", labels=labels))
                    if present == set(labels)
                    else None
                )
            out["log_loss"] = _maybe(lambda: skm.log_loss(y_true, np.clip(y_proba, 1e-15, 1), labels=labels))
    return out


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    error = y_pred - y_true
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "n_rows": int(y_true.shape[0]),
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": float(1.0 - np.sum(error**2) / ss_tot) if ss_tot > 0 else None,
        "mean_error": float(error.mean()),
        "mean_target": float(y_true.mean()),
        "mean_prediction": float(y_pred.mean()),
    }


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
) -> dict[str, Any]:
    """Metrics per value of ``slice_by`` (quantile bins when numeric with many values)."""
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
        bins = pd.qcut(values, q=min(5, max_slices), duplicates="drop")
        order = [str(c) for c in bins.cat.categories]
        values = bins.astype(str).where(bins.notna(), None)
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
        if task == "classification":
            m = classification_metrics(
                y_true[mask],
                y_pred[mask],
                proba[mask] if proba is not None else None,
                labels=labels,
                pos_label=pos_label,
            )
        else:
            m = regression_metrics(y_true[mask], y_pred[mask]) if n > 0 else {}
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


def _classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    *,
    classes: list[Any] | None,
    pos_label: Any,
    calibration_bins: int,
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
    metrics = classification_metrics(y_true, y_pred, proba, labels=labels, pos_label=pos_label)
    report = PerformanceReport(task="classification", n_rows=len(y_true), metrics=metrics, labels=labels, notes=notes)
    fig = report.figures
    if len(labels) <= MAX_CONFUSION_LABELS:
        cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
        report.confusion_matrix = cm.tolist()
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
        report.roc = _roc_curves(y_true, proba, labels, metrics.get("pos_label"))
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
                y_true == metrics["pos_label"], proba[:, labels.index(metrics["pos_label"])], bins=calibration_bins
            )
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


def calibration(is_positive: np.ndarray, p: np.ndarray, *, bins: int = 10) -> dict[str, Any]:
    """Reliability curve on ``bins`` equal-width bins (empty bins left out) and the expected calibration error."""
    is_positive = np.asarray(is_positive, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    sum_p = np.bincount(which, weights=p, minlength=bins)
    sum_y = np.bincount(which, weights=is_positive, minlength=bins)
    used = counts > 0
    mean_p = sum_p[used] / counts[used]
    frac = sum_y[used] / counts[used]
    ece = float(np.sum(counts[used] / counts.sum() * np.abs(frac - mean_p)))
    return {
        "bins": bins,
        "strategy": "uniform",
        "bin_edges": edges.tolist(),
        "mean_predicted": mean_p.tolist(),
        "fraction_positive": frac.tolist(),
        "counts": counts[used].tolist(),
        "expected_calibration_error": ece,
    }


def _roc_curves(y_true: np.ndarray, proba: np.ndarray, labels: list[Any], pos_label: Any) -> list[dict[str, Any]]:
    from sklearn.metrics import auc, roc_curve

    targets = [pos_label] if len(labels) == 2 else labels[:10]
    curves = []
    for label in targets:
        is_pos = y_true == label
        if is_pos.all() or not is_pos.any():
            continue
        fpr, tpr, _ = roc_curve(is_pos, proba[:, labels.index(label)])
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS + 1)).round().astype(int))
        curves.append(
            {"label": label, "auc": float(auc(fpr, tpr)), "fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}
        )
    return curves


def _binned_regression_figure(y_true: np.ndarray, y_pred: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Mean actual value per decile of the prediction: aggregates, not row-level points."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    edges = np.unique(np.quantile(y_pred, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, y_pred, side="right") - 1, 0, max(len(edges) - 2, 0))
    counts = np.bincount(which)
    used = counts > 0
    mean_pred = np.bincount(which, weights=y_pred)[used] / counts[used]
    mean_true = np.bincount(which, weights=y_true)[used] / counts[used]
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
    except (ValueError, ZeroDivisionError):
        return None
    return value if np.isfinite(value) else None


def _tick(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)
