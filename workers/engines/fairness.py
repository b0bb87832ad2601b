"""Group fairness of a binary classifier's decisions from per-group confusion counts.

One vectorised pass (``np.bincount`` over a combined index of group x y_true x y_pred) gives the
confusion counts of every intersectional group; every metric below is arithmetic on those few
numbers, and per-feature (marginal) groups are sums of the intersectional ones. The definitions
and zero-division conventions are fairlearn's (checked by tests against ``MetricFrame`` and its
disparity functions, to 1e-9):

- per group: selection rate (share predicted positive), accuracy, precision, recall (= TPR),
  false positive rate, false negative rate, base rate (share truly positive), counts. A rate
  whose denominator is zero is 0, as in scikit-learn / fairlearn, and the group lists it under
  ``undefined``.
- disparities, ``between_groups``: demographic-parity difference (max - min selection rate) and
  ratio (min / max, the disparate impact; the four-fifths rule's 0.8 is shown as a reference,
  not a verdict), equalized-odds difference (the larger of the TPR and FPR differences) and
  ratio (the smaller of the two ratios), equal-opportunity (TPR) difference and ratio.

Groups are those present in the data: an intersection with no rows is listed under
``empty_groups`` and takes no part in the disparities (fairlearn leaves it NaN and skips it).

Bootstrap intervals are stratified by intersectional group: the confusion counts of a group of
``n`` rows are redrawn as Multinomial(n, observed cell shares), which is exactly the distribution
of the counts after resampling that group's rows with replacement, so 200 resamples cost
microseconds whatever the number of rows. Marginal groups and disparities use the same draws.

Metrics without a confusion-count form (per-group ROC AUC from scores, or any
``metric(y_true, y_pred)``) are delegated to fairlearn's ``MetricFrame``: pass ``y_score`` or
``extra_metrics``. They cost what MetricFrame costs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workers.engines import figures
from workers.engines.errors import EngineError
from workers.engines.serialize import jsonable

Progress = Callable[[float, str], None]

FOUR_FIFTHS = 0.8
MAX_GROUP_CELLS = 100_000
GROUP_METRICS = (
    "selection_rate",
    "accuracy",
    "precision",
    "recall",
    "false_positive_rate",
    "false_negative_rate",
    "base_rate",
)
DISPARITIES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
)
_UNDEFINED_WHEN = {  # metric: the count that is its denominator
    "precision": "predicted_positive",
    "recall": "actual_positive",
    "false_positive_rate": "actual_negative",
    "false_negative_rate": "actual_positive",
}


@dataclass
class GroupResult:
    """One group: its key ({feature: value}), confusion counts, rates and intervals."""

    key: dict[str, Any]
    label: str
    count: int
    tn: int
    fp: int
    fn: int
    tp: int
    metrics: dict[str, float]
    undefined: list[str]
    small: bool
    ci: dict[str, list[float]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "key": self.key,
                "label": self.label,
                "count": self.count,
                "confusion": {"tn": self.tn, "fp": self.fp, "fn": self.fn, "tp": self.tp},
                **self.metrics,
                "undefined": self.undefined,
                "small": self.small,
                "ci": self.ci,
            }
        )


@dataclass
class GroupAnalysis:
    """The groups of one sensitive feature, or the intersection of several, and their disparities."""

    features: list[str]
    groups: list[GroupResult]
    disparities: dict[str, float | None]
    disparity_ci: dict[str, list[float]] | None
    extremes: dict[str, dict[str, str]]
    empty_groups: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " × ".join(self.features)

    @property
    def intersectional(self) -> bool:
        return len(self.features) > 1

    def group(self, **key: Any) -> GroupResult:
        """The group with this key, e.g. ``analysis.group(sex="F", age="18-25")``."""
        for g in self.groups:
            if all(g.key.get(k) == v for k, v in key.items()):
                return g
        raise KeyError(key)

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "name": self.name,
                "features": self.features,
                "intersectional": self.intersectional,
                "groups": [g.as_dict() for g in self.groups],
                "disparities": self.disparities,
                "disparity_ci": self.disparity_ci,
                "extremes": self.extremes,
                "four_fifths_reference": _four_fifths(self.disparities.get("demographic_parity_ratio")),
                "empty_groups": self.empty_groups,
                "small_groups": [g.label for g in self.groups if g.small],
            }
        )


@dataclass
class FairnessReport:
    """What :func:`fairness_report` returns; ``as_dict()`` is the stored evidence."""

    sensitive_features: list[str]
    pos_label: Any
    n_rows: int
    overall: dict[str, Any]
    analyses: list[GroupAnalysis]
    small_group_threshold: int
    bootstrap: dict[str, Any] | None
    fairlearn_metrics: dict[str, Any] | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def primary(self) -> GroupAnalysis:
        """The intersection of all sensitive features (the single feature's analysis when only one)."""
        return self.analyses[-1]

    def analysis(self, *features: str) -> GroupAnalysis:
        for a in self.analyses:
            if a.features == list(features):
                return a
        raise KeyError(features)

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "sensitive_features": self.sensitive_features,
                "pos_label": self.pos_label,
                "n_rows": self.n_rows,
                "overall": self.overall,
                "primary": self.primary.name,
                "analyses": [a.as_dict() for a in self.analyses],
                "small_group_threshold": self.small_group_threshold,
                "bootstrap": self.bootstrap,
                "four_fifths_threshold": FOUR_FIFTHS,
                "method": "between_groups",
                "fairlearn_metrics": self.fairlearn_metrics,
                "figures": self.figures,
            }
        )


def fairness_report(
    y_true: Any,
    y_pred: Any,
    sensitive: Any,
    *,
    pos_label: Any = 1,
    small_group_threshold: int = 30,
    bootstrap_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    y_score: Any = None,
    extra_metrics: Mapping[str, Callable[[Any, Any], float]] | None = None,
    with_figures: bool = True,
    progress: Progress | None = None,
) -> FairnessReport:
    """Per-group metrics and disparities of binary decisions ``y_pred`` against ``y_true``.

    ``sensitive``: a DataFrame (one column per sensitive feature), a Series, a mapping of name to
    values, or a 1-D array. With two or more features the report has one analysis per feature and
    one for their intersection (the ``primary`` one). Labels other than ``pos_label`` are the
    negative class; each of ``y_true`` and ``y_pred`` must hold at most two distinct values.
    ``bootstrap_resamples=0`` skips the intervals. Groups under ``small_group_threshold`` rows are
    flagged ``small``.
    """
    _tick(progress, 0.0, "Counting outcomes per group")
    yt = _binary(y_true, pos_label, "y_true")
    yp = _binary(y_pred, pos_label, "y_pred")
    if yt.shape[0] != yp.shape[0]:
        raise EngineError("length_mismatch", f"y_true has {yt.shape[0]} rows but y_pred has {yp.shape[0]}.")
    n_rows = int(yt.shape[0])
    if n_rows == 0:
        raise EngineError("empty_data", "There are no rows to assess.")
    columns = _sensitive_columns(sensitive, n_rows)
    names = [name for name, _ in columns]
    encoded = [_encode(values, name) for name, values in columns]
    sizes = [len(labels) for _, labels in encoded]
    if int(np.prod(sizes)) > MAX_GROUP_CELLS:
        raise EngineError(
            "too_many_groups",
            f"The sensitive features form {int(np.prod(sizes))} possible groups; the limit is {MAX_GROUP_CELLS}.",
        )

    # One pass: ((g1 * n2 + g2) * 2 + y_true) * 2 + y_pred, counted by bincount.
    index = encoded[0][0].astype(np.int64)
    for (codes, _), size in zip(encoded[1:], sizes[1:], strict=True):
        index *= size
        index += codes
    index *= 2
    index += yt
    index *= 2
    index += yp
    cells = np.bincount(index, minlength=int(np.prod(sizes)) * 4).reshape(*sizes, 4)
    del index
    for axis, name in enumerate(names):
        others = tuple(i for i in range(len(names) + 1) if i != axis)
        if np.count_nonzero(cells.sum(axis=others)) < 2:
            raise EngineError(
                "single_group", f"The sensitive feature {name!r} has a single group; fairness needs at least two."
            )

    resampled = None
    if bootstrap_resamples:
        _tick(progress, 0.4, f"Bootstrapping {bootstrap_resamples} resamples")
        resampled = _bootstrap_cells(cells, bootstrap_resamples, np.random.default_rng(seed))

    _tick(progress, 0.6, "Computing metrics")
    lo, hi = 50.0 * (1.0 - confidence), 100.0 - 50.0 * (1.0 - confidence)
    views: list[tuple[int, ...]] = [(i,) for i in range(len(names))]
    if len(names) > 1:
        views.append(tuple(range(len(names))))
    analyses = [
        _analyse(cells, resampled, axes, names, encoded, small_group_threshold=small_group_threshold, q=(lo, hi))
        for axes in views
    ]
    overall_counts = cells.reshape(-1, 4).sum(axis=0)
    overall = {
        "count": n_rows,
        **_counts_dict(overall_counts),
        **{m: float(v) for m, v in _rates(overall_counts.astype(np.float64)).items()},
    }
    report = FairnessReport(
        sensitive_features=names,
        pos_label=pos_label,
        n_rows=n_rows,
        overall=overall,
        analyses=analyses,
        small_group_threshold=small_group_threshold,
        bootstrap=(
            {
                "resamples": bootstrap_resamples,
                "confidence": confidence,
                "seed": seed,
                "method": "stratified by intersectional group: confusion counts redrawn as Multinomial(n_group, "
                "observed shares); percentile intervals",
            }
            if bootstrap_resamples
            else None
        ),
    )
    if y_score is not None or extra_metrics:
        _tick(progress, 0.75, "Computing metrics without a confusion-count form (fairlearn)")
        report.fairlearn_metrics = _fairlearn_metrics(yt, yp, columns, y_score=y_score, extra=extra_metrics or {})
    if with_figures:
        report.figures = {a.name: fairness_figures(a) for a in analyses}
    _tick(progress, 1.0, "Fairness metrics done")
    return report


# --- what may be a group --------------------------------------------------------------------------

DEFAULT_MAX_SENSITIVE_GROUPS = 50
MIN_ROWS_FOR_UNIQUE_RULE = 3
_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
_UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_PHONE = r"\+?[0-9(][0-9 ()./-]*[0-9]"
_SHAPES_CHECKED = 10_000  # distinct values whose shape is looked at; beyond, too many groups anyway
_RANGE = r"[0-9]+(?:[.,][0-9]+)?\s*[-–/]\s*[0-9]+(?:[.,][0-9]+)?"  # a band such as 10000-20000 or 1990-1999


def sensitive_column_problem(values: Any, name: str, *, max_groups: int = DEFAULT_MAX_SENSITIVE_GROUPS):
    """Why the column cannot be a sensitive feature, as ``(code, sentence)``, or ``None`` when it can.

    Every distinct value of a sensitive feature is stored as a group label, so a column that holds
    identifiers would put personal data into the evidence. The rule, checked before a run is queued
    and again by the worker:

    - ``sensitive_feature_identifier``: a value shaped like an e-mail address, a UUID (or 32 hex
      digits), or a phone number (digits with optional spaces, dots, dashes, slashes, brackets:
      9 to 15 digits, or 7 or more after a leading ``+``; a band of two numbers such as
      ``10000-20000`` is not one), or no value shared by two rows (3 rows or more): a key, not a
      group;
    - ``too_many_groups``: more distinct values than ``max_groups``.

    The sentence names the column and counts, never a value.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
    series = series.dropna()
    distinct = series.unique()
    n_groups = len(distinct)
    if not pd.api.types.is_float_dtype(series.dtype):  # numbers with decimals are no e-mail, UUID or phone
        text = pd.Series([str(v).strip() for v in distinct[:_SHAPES_CHECKED]], dtype=object)
        digits = text.str.count(r"[0-9]")
        plus = text.str.startswith("+")
        phone = text.str.fullmatch(_PHONE) & ~text.str.fullmatch(_RANGE)
        phone &= (digits <= 15) & ((digits >= 9) | (plus & (digits >= 7)))
        shapes = {
            "e-mail addresses": text.str.fullmatch(_EMAIL),
            "UUIDs": text.str.fullmatch(_UUID),
            "phone numbers": phone,
        }
        for what, matched in shapes.items():
            if bool(matched.any()):
                return (
                    "sensitive_feature_identifier",
                    f"The sensitive column '{name}' holds values shaped like {what}: an identifier, not a group. "
                    "Use a grouping column instead; identifiers are never stored as group labels.",
                )
    if len(series) >= MIN_ROWS_FOR_UNIQUE_RULE and n_groups == len(series):
        return (
            "sensitive_feature_identifier",
            f"Every one of the {len(series)} rows has its own value in the sensitive column '{name}': an "
            "identifier, not a group. Use a grouping column instead; identifiers are never stored as group labels.",
        )
    if n_groups > max_groups:
        return (
            "too_many_groups",
            f"The sensitive column '{name}' has {n_groups} distinct values; the limit is {max_groups}. A sensitive "
            "feature names groups (sex, age band, region), and each value is stored as a group label.",
        )
    return None


# --- the arithmetic ------------------------------------------------------------------------------


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _rates(c: np.ndarray) -> dict[str, np.ndarray]:
    """fairlearn / scikit-learn rates from counts ``c[..., (tn, fp, fn, tp)]``; 0 where undefined."""
    tn, fp, fn, tp = (c[..., i] for i in range(4))
    n = tn + fp + fn + tp
    actual_pos, actual_neg, pred_pos = fn + tp, tn + fp, tp + fp
    return {
        "selection_rate": _div(pred_pos, n),
        "accuracy": _div(tp + tn, n),
        "precision": _div(tp, pred_pos),
        "recall": _div(tp, actual_pos),
        "false_positive_rate": _div(fp, actual_neg),
        "false_negative_rate": _div(fn, actual_pos),
        "base_rate": _div(actual_pos, n),
    }


def _disparities(rates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Differences and ratios over the last axis (groups), as fairlearn's ``between_groups``."""

    def diff(m: np.ndarray) -> np.ndarray:
        return m.max(axis=-1) - m.min(axis=-1)

    def ratio(m: np.ndarray) -> np.ndarray:
        top = m.max(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(top > 0, m.min(axis=-1) / np.where(top > 0, top, 1.0), np.nan)

    tpr_d, fpr_d = diff(rates["recall"]), diff(rates["false_positive_rate"])
    tpr_r, fpr_r = ratio(rates["recall"]), ratio(rates["false_positive_rate"])
    return {
        "demographic_parity_difference": diff(rates["selection_rate"]),
        "demographic_parity_ratio": ratio(rates["selection_rate"]),
        "equalized_odds_difference": np.maximum(tpr_d, fpr_d),
        # fairlearn takes Python's min(tpr_ratio, fpr_ratio): NaN only when the TPR ratio is NaN.
        "equalized_odds_ratio": np.where(fpr_r < tpr_r, fpr_r, tpr_r),
        "equal_opportunity_difference": tpr_d,
        "equal_opportunity_ratio": tpr_r,
    }


def _bootstrap_cells(cells: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples`` redraws of every intersectional group's confusion counts, shape (B, *cells.shape)."""
    flat = cells.reshape(-1, 4)
    present = np.flatnonzero(flat.sum(axis=1))
    n = flat[present].sum(axis=1)
    shares = flat[present] / n[:, None]
    draws = rng.multinomial(n, shares, size=(resamples, present.size))
    out = np.zeros((resamples, flat.shape[0], 4), dtype=np.int64)
    out[:, present, :] = draws
    return out.reshape(resamples, *cells.shape)


def _analyse(
    cells: np.ndarray,
    resampled: np.ndarray | None,
    axes: tuple[int, ...],
    names: list[str],
    encoded: list[tuple[np.ndarray, list[Any]]],
    *,
    small_group_threshold: int,
    q: tuple[float, float],
) -> GroupAnalysis:
    k = len(names)
    drop = tuple(i for i in range(k) if i not in axes)
    counts = cells.sum(axis=drop) if drop else cells
    shape = counts.shape[:-1]
    flat = counts.reshape(-1, 4)
    totals = flat.sum(axis=1)
    present = np.flatnonzero(totals)
    group_counts = flat[present].astype(np.float64)
    rates = _rates(group_counts)
    disparities = {m: _scalar(v) for m, v in _disparities(rates).items()}

    ci_rates: dict[str, np.ndarray] | None = None
    disparity_ci = None
    if resampled is not None:
        boot = resampled.sum(axis=tuple(d + 1 for d in drop)) if drop else resampled
        boot = boot.reshape(boot.shape[0], -1, 4)[:, present, :].astype(np.float64)
        boot_rates = _rates(boot)
        ci_rates = {m: np.percentile(v, q, axis=0) for m, v in boot_rates.items()}
        disparity_ci = {m: _interval(np.percentile(v, q)) for m, v in _disparities(boot_rates).items()}

    labels_per_axis = [encoded[i][1] for i in axes]
    groups = []
    for j, flat_index in enumerate(present):
        position = np.unravel_index(flat_index, shape)
        key = {names[a]: labels_per_axis[i][position[i]] for i, a in enumerate(axes)}
        c = flat[flat_index]
        tn, fp, fn, tp = (int(v) for v in c)
        denominators = {"predicted_positive": tp + fp, "actual_positive": tp + fn, "actual_negative": tn + fp}
        groups.append(
            GroupResult(
                key=key,
                label=_label(key),
                count=int(totals[flat_index]),
                tn=tn,
                fp=fp,
                fn=fn,
                tp=tp,
                metrics={m: float(rates[m][j]) for m in GROUP_METRICS},
                undefined=[m for m, d in _UNDEFINED_WHEN.items() if denominators[d] == 0],
                small=bool(totals[flat_index] < small_group_threshold),
                ci={m: _interval(ci_rates[m][:, j]) for m in GROUP_METRICS} if ci_rates is not None else None,
            )
        )
    empty = []
    if len(axes) > 1:  # intersections of groups that exist on their own but not together
        marginal_present = [
            counts.sum(axis=tuple(j for j in range(len(axes) + 1) if j != i)) > 0 for i in range(len(axes))
        ]
        for flat_index in np.flatnonzero(totals == 0):
            position = np.unravel_index(flat_index, shape)
            if all(marginal_present[i][position[i]] for i in range(len(axes))):
                empty.append({names[a]: labels_per_axis[i][position[i]] for i, a in enumerate(axes)})
    extremes = {}
    for metric in ("selection_rate", "recall", "false_positive_rate"):
        values = rates[metric]
        extremes[metric] = {"highest": groups[int(values.argmax())].label, "lowest": groups[int(values.argmin())].label}
    return GroupAnalysis(
        features=[names[a] for a in axes],
        groups=groups,
        disparities=disparities,
        disparity_ci=disparity_ci,
        extremes=extremes,
        empty_groups=jsonable(empty),
    )


def _four_fifths(ratio: float | None) -> dict[str, Any]:
    return {
        "threshold": FOUR_FIFTHS,
        "demographic_parity_ratio": ratio,
        "below_threshold": None if ratio is None else bool(ratio < FOUR_FIFTHS),
        "note": "The four-fifths rule is a screening reference from US employment guidance, not a verdict.",
    }


def _scalar(v: np.ndarray) -> float | None:
    value = float(v)
    return value if np.isfinite(value) else None


def _interval(v: np.ndarray) -> list[float | None]:
    return [_scalar(v[0]), _scalar(v[1])]


def _counts_dict(c: np.ndarray) -> dict[str, int]:
    return {"tn": int(c[0]), "fp": int(c[1]), "fn": int(c[2]), "tp": int(c[3])}


def _label(key: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items())


# --- inputs --------------------------------------------------------------------------------------


def _binary(y: Any, pos_label: Any, name: str) -> np.ndarray:
    """``y == pos_label`` as a bool array; ``not_binary`` when the other values are not one label."""
    values = y.to_numpy() if isinstance(y, (pd.Series, pd.Index)) else np.asarray(y)
    if values.ndim != 1:
        values = values.reshape(-1) if values.ndim == 2 and 1 in values.shape else values
        if values.ndim != 1:
            raise EngineError("not_binary", f"{name} must be one label per row.")
    if values.dtype == np.bool_:
        return values if pos_label in (1, True) else ~values
    positive = values == pos_label
    if not isinstance(positive, np.ndarray):  # comparison not elementwise (e.g. mismatched types)
        raise EngineError("not_binary", f"{name} cannot be compared with the positive label.")
    negative = values[~positive]
    if negative.size and not (negative == negative[0]).all():
        raise EngineError(
            "not_binary",
            f"{name} holds more than two distinct values; fairness metrics need binary decisions and labels.",
        )
    return positive


def _sensitive_columns(sensitive: Any, n_rows: int) -> list[tuple[str, Any]]:
    if isinstance(sensitive, pd.DataFrame):
        columns = [(str(c), sensitive[c]) for c in sensitive.columns]
    elif isinstance(sensitive, pd.Series):
        columns = [(str(sensitive.name) if sensitive.name is not None else "sensitive_feature_0", sensitive)]
    elif isinstance(sensitive, Mapping):
        columns = [(str(k), v) for k, v in sensitive.items()]
    else:
        array = np.asarray(sensitive)
        if array.ndim == 1:
            columns = [("sensitive_feature_0", array)]
        elif array.ndim == 2:
            columns = [(f"sensitive_feature_{i}", array[:, i]) for i in range(array.shape[1])]
        else:
            raise EngineError("bad_sensitive_features", "Sensitive features must be one or more columns.")
    if not columns:
        raise EngineError("missing_column", "No sensitive feature was named.")
    for name, values in columns:
        if len(values) != n_rows:
            raise EngineError(
                "length_mismatch", f"The sensitive feature {name!r} has {len(values)} rows, not {n_rows}."
            )
    return columns


def _encode(values: Any, name: str) -> tuple[np.ndarray, list[Any]]:
    """Group codes 0..k-1 and the group labels (category order, else sorted values).

    Unused categories stay in the code space; groups without rows are dropped after counting.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        labels = list(values.cat.categories)
    else:
        if not isinstance(values, (pd.Series, pd.Index, pd.Categorical, np.ndarray)):
            values = np.asarray(values, dtype=object)
        codes, uniques = pd.factorize(values, sort=True)
        labels = list(uniques)
    if codes.size and codes.min() < 0:
        raise EngineError("missing_sensitive_values", f"The sensitive feature {name!r} has missing values.")
    return codes, [_plain(v) for v in labels]


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


# --- fairlearn for the rest ----------------------------------------------------------------------


def _fairlearn_metrics(
    yt: np.ndarray,
    yp: np.ndarray,
    columns: list[tuple[str, Any]],
    *,
    y_score: Any,
    extra: Mapping[str, Callable[[Any, Any], float]],
) -> dict[str, Any]:
    from fairlearn.metrics import MetricFrame

    sensitive = pd.DataFrame({name: np.asarray(values) for name, values in columns})
    out: dict[str, Any] = {}
    frames = []
    if y_score is not None:
        frames.append(
            MetricFrame(
                metrics={"roc_auc": _safe_roc_auc}, y_true=yt, y_pred=np.asarray(y_score), sensitive_features=sensitive
            )
        )
    if extra:
        frames.append(MetricFrame(metrics=dict(extra), y_true=yt, y_pred=yp, sensitive_features=sensitive))
    for frame in frames:
        by_group = frame.by_group.reset_index()
        for metric in frame.overall.index:
            out[metric] = {
                "overall": _scalar(np.asarray(frame.overall[metric], dtype=float)),
                "by_group": [
                    {"key": {n: _plain(row[n]) for n in sensitive.columns}, "value": _scalar(np.asarray(row[metric], dtype=float))}
                    for _, row in by_group.iterrows()
                ],
                "difference": _scalar(np.asarray(frame.difference()[metric], dtype=float)),
                "ratio": _scalar(np.asarray(frame.ratio()[metric], dtype=float)),
            }  # fmt: skip
    return jsonable(out)


def _safe_roc_auc(y_true: Any, y_score: Any) -> float:
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true)
    if y_true.min() == y_true.max():
        return float("nan")  # one class only: undefined
    return float(roc_auc_score(y_true, y_score))


# --- figures -------------------------------------------------------------------------------------


def fairness_figures(analysis: GroupAnalysis) -> dict[str, Any]:
    """Selection rate per group (with the four-fifths reference) and TPR / FPR per group."""
    labels = [g.label for g in analysis.groups]
    rates = [g.metrics["selection_rate"] for g in analysis.groups]
    has_ci = all(g.ci is not None for g in analysis.groups)
    ci = [g.ci["selection_rate"] for g in analysis.groups] if has_ci else None
    top = max(rates) if rates else 0.0
    selection = figures.bar(
        labels,
        rates,
        title=f"Selection rate by {analysis.name}",
        value_title="selection rate",
        category_title=analysis.name,
        ci=ci,
        reference=(FOUR_FIFTHS * top, "four-fifths of the highest rate (reference)"),
    )
    odds = figures.grouped_bars(
        labels,
        {
            "true positive rate": [g.metrics["recall"] for g in analysis.groups],
            "false positive rate": [g.metrics["false_positive_rate"] for g in analysis.groups],
        },
        title=f"Error rates by {analysis.name}",
        value_title="rate",
        category_title=analysis.name,
        ci=(
            {
                "true positive rate": [g.ci["recall"] for g in analysis.groups],
                "false positive rate": [g.ci["false_positive_rate"] for g in analysis.groups],
            }
            if has_ci
            else None
        ),
    )
    return {"selection_rate": selection, "error_rates": odds}


def _tick(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)
