"""What the numbers of an evaluation's summary are called and which way is better.

Every engine's summary keys (``workers/engines/runner.py``) are named here once: ``label(key)`` is
what a person reads ("ROC AUC", "Mean |SHAP|: debt_ratio"), ``direction(key)`` says whether a
higher or a lower value is better (``None``: neither, so a change is shown without a colour), and
``change(key, delta)`` turns a difference between two runs into "better", "worse" or "".
"""

from __future__ import annotations

from typing import Literal

Direction = Literal["higher", "lower"] | None

LABELS = {
    # performance (classification)
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "roc_auc_ovr_macro": "ROC AUC (one-vs-rest, macro)",
    "log_loss": "Log loss",
    "brier_score": "Brier score",
    "expected_calibration_error": "Expected calibration error (ECE)",
    # performance (regression)
    "mae": "MAE (mean absolute error)",
    "rmse": "RMSE (root mean squared error)",
    "mse": "MSE (mean squared error)",
    "r2": "R²",
    "mean_error": "Mean error (prediction − actual)",
    "mean_target": "Mean actual value",
    "mean_prediction": "Mean prediction",
    "n_rows": "Rows",
    # fairness
    "demographic_parity_difference": "Demographic parity difference",
    "demographic_parity_ratio": "Demographic parity ratio",
    "equalized_odds_difference": "Equalized odds difference",
    "equalized_odds_ratio": "Equalized odds ratio",
    "equal_opportunity_difference": "Equal opportunity difference",
    "equal_opportunity_ratio": "Equal opportunity ratio",
    "selection_rate": "Selection rate (all rows)",
    # data quality
    "rows": "Rows",
    "columns": "Columns",
    "missing_columns": "Training columns missing here",
    "extra_columns": "Columns not in the training data",
    "max_psi": "Largest PSI (population stability index)",
    "psi": "PSI (population stability index)",
}
AVERAGES = {"macro": "macro average", "weighted": "weighted average"}

HIGHER_IS_BETTER = {
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "roc_auc_ovr_macro", "r2",
}  # fmt: skip
LOWER_IS_BETTER = {
    "log_loss", "brier_score", "expected_calibration_error", "mae", "rmse", "mse",
    "max_psi", "psi", "missing_columns", "extra_columns",
}  # fmt: skip


def _split(key: str) -> tuple[str, str]:
    """``"accuracy.delta_at_noise_0.05"`` -> ("accuracy", "delta_at_noise_0.05"); no dot: (key, "")."""
    head, _, tail = key.partition(".")
    return head, tail


def _average(key: str) -> tuple[str, str]:
    """``"f1_macro"`` -> ("f1", "macro"); otherwise (key, "")."""
    for suffix in AVERAGES:
        if key.endswith(f"_{suffix}") and key[: -len(suffix) - 1] in LABELS:
            return key[: -len(suffix) - 1], suffix
    return key, ""


def _humane(text: str) -> str:
    text = text.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def label(key: str) -> str:
    """The name a person reads for a summary key."""
    head, tail = _split(key)
    if head == "mean_abs_shap" and tail:
        return f"Mean |SHAP|: {tail}"
    if tail:  # robustness: "<metric>.baseline", "<metric>.delta_at_noise_<level>"
        if tail == "baseline":
            return f"{label(head)}: unperturbed"
        if tail.startswith("delta_at_noise_"):
            return f"{label(head)}: change under noise {tail.removeprefix('delta_at_noise_')}×σ"
        return f"{label(head)}: {_humane(tail).lower()}"
    if key in LABELS:
        return LABELS[key]
    base, average = _average(key)
    if average:
        return f"{LABELS[base]} ({AVERAGES[average]})"
    return _humane(key)


def known(key: str) -> bool:
    """Whether ``label`` names ``key`` from this module's tables rather than by spelling the key out."""
    head, tail = _split(key)
    if tail:
        return (head == "mean_abs_shap") or (known(head) and (tail == "baseline" or tail.startswith("delta_at_noise_")))
    return key in LABELS or bool(_average(key)[1])


def direction(key: str) -> Direction:
    """``"higher"`` or ``"lower"`` when that way is better for this measure, ``None`` when neither is."""
    head, tail = _split(key)
    if head == "mean_abs_shap":
        return None  # a feature mattering more or less is neither better nor worse
    if tail:
        return direction(head) if tail == "baseline" or tail.startswith("delta_at_") else None
    key, _ = _average(key)
    if key in HIGHER_IS_BETTER:
        return "higher"
    if key in LOWER_IS_BETTER:
        return "lower"
    if key.endswith("_difference"):  # fairness disparities: 0 is parity
        return "lower"
    if key.endswith("_ratio"):  # fairness ratios: 1 is parity
        return "higher"
    return None


def change(key: str, delta: float | None) -> str:
    """``"better"``, ``"worse"`` or ``""`` (no change, no number, or a measure with no better way)."""
    way = direction(key)
    if delta is None or way is None or delta == 0:
        return ""
    return "better" if (delta > 0) == (way == "higher") else "worse"


def _sort_key(key: str, value: object) -> tuple[int, float, str]:
    """The order measures are read in: the order of ``LABELS``, a metric's unperturbed value before its
    changes under rising noise, features by how much they matter; anything unknown last, by name."""
    order = list(LABELS)
    head, tail = _split(key)
    if head == "mean_abs_shap":
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        return len(order), -float(number), key
    base, _ = _average(head)
    rank = order.index(base) if base in order else len(order) + 1
    sub = 0.0
    if tail.startswith("delta_at_noise_"):
        try:
            sub = float(tail.removeprefix("delta_at_noise_"))
        except ValueError:
            sub = float("inf")
    elif tail:
        sub = -1.0 if tail == "baseline" else float("inf")
    return rank, sub, key


def ordered(summary: dict[str, object]) -> list[str]:
    """The keys of a summary in reading order (stored JSON keeps no key order)."""
    return sorted(summary, key=lambda k: _sort_key(k, summary[k]))
