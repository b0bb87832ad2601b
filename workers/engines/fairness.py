"""Group fairness of a binary classifier's decisions from per-group confusion counts.

One vectorised pass (``np.bincount`` over a combined index of group x y_true x y_pred) gives the
confusion counts of every intersectional group (and, with ``sample_weight``, their weighted sums);
every metric below is arithmetic on those few numbers, and per-feature (marginal) groups are sums
of the intersectional ones. The definitions and zero-division conventions are fairlearn's (checked
by tests against ``MetricFrame`` and its disparity functions, to 1e-9, weighted or not):

- per group: selection rate (share predicted positive), accuracy, precision, recall (= TPR),
  false positive rate, false negative rate, base rate (share truly positive), counts. A rate
  whose denominator is zero is 0, as in scikit-learn / fairlearn, and the group lists it under
  ``undefined``.
- disparities, ``between_groups``: demographic-parity difference (max - min selection rate) and
  ratio (min / max, the disparate impact; the four-fifths rule's 0.8 is shown as a reference,
  not a verdict), equalized-odds difference (the larger of the TPR and FPR differences) and
  ratio (the smaller of the two ratios), equal-opportunity (TPR) difference and ratio.

What a gate may act on. Every group is reported, but the disparities (``disparities``) compare
only the groups of at least ``min_group_size`` rows, and on each rate only the groups where that
rate is defined: an undefined rate is never counted as 0. ``left_out`` and ``undefined_left_out``
say which groups were left out and why. ``disparities_all_groups`` keeps fairlearn's own numbers
(every group, undefined rates as 0) for comparison. :func:`disparities_from_stored` recomputes
the same from a stored analysis with another minimum size (the deployment gate uses the policy's).

Disparity intervals are simultaneous: a Wilson score interval per group at the Bonferroni-adjusted
level, combined per pair of groups (Newcombe's hybrid score interval for a difference, MOVER-R for
a ratio); the range's interval is [max(0, largest lower bound), largest upper bound] over the pairs
and the ratio's is [smallest lower bound, min(1, smallest upper bound)]. When every pairwise
interval covers, these cover the true max - min and min / max, so their coverage is at least the
nominal level, including the no-disparity boundary (a percentile bootstrap of max - min never
covers 0 there). With ``sample_weight`` the per-group sizes are Kish's effective sizes.

Per-group bootstrap intervals are stratified by intersectional group: the confusion counts of a
group of ``n`` rows are redrawn as Multinomial(n, observed cell shares), which is exactly the
distribution of the counts after resampling that group's rows with replacement, so 200 resamples
cost microseconds whatever the number of rows. With sample weights the per-group intervals are
Wilson score intervals on Kish's effective size instead.

Metrics without a confusion-count form (per-group ROC AUC from scores, or any
``metric(y_true, y_pred)``) are delegated to fairlearn's ``MetricFrame``: pass ``y_score`` or
``extra_metrics``. They cost what MetricFrame costs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from workers.engines import figures
from workers.engines.errors import EngineError
from workers.engines.labels import truth
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
# metric: (numerator cells, denominator cells) of the confusion counts (tn, fp, fn, tp)
_PARTS = {
    "selection_rate": ((1, 3), (0, 1, 2, 3)),
    "accuracy": ((0, 3), (0, 1, 2, 3)),
    "precision": ((3,), (1, 3)),
    "recall": ((3,), (2, 3)),
    "false_positive_rate": ((1,), (0, 1)),
    "false_negative_rate": ((2,), (2, 3)),
    "base_rate": ((2, 3), (0, 1, 2, 3)),
}
# The rates the disparities compare, and how a sentence names them.
DISPARITY_RATES = ("selection_rate", "recall", "false_positive_rate")
RATE_NAMES = {"selection_rate": "selection rate", "recall": "TPR", "false_positive_rate": "FPR"}
DENOMINATOR_NAMES = {"selection_rate": "rows", "recall": "actual positives", "false_positive_rate": "actual negatives"}
DEFAULT_MIN_GROUP_SIZE = 30
INTERVAL_METHOD = (
    "simultaneous: Wilson score interval per group at the Bonferroni-adjusted level over every pair of groups "
    "compared; Newcombe's hybrid score interval for each pairwise difference, MOVER-R (Wilson) for each pairwise "
    "ratio; range [max(0, largest lower bound), largest upper bound], ratio [smallest lower bound, "
    "min(1, smallest upper bound)]; equalized odds adjusts over the TPR and FPR pairs together"
)
_PAIR_BLOCK = 1_000_000  # pairwise bounds are reduced in blocks of at most this many pairs


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
    weight: float | None = None  # the sum of the sample weights, when weighted
    effective_n: dict[str, float] | None = None  # Kish's effective size behind each compared rate, when weighted

    def as_dict(self) -> dict[str, Any]:
        weighted = {"weight": self.weight, "effective_n": self.effective_n} if self.weight is not None else {}
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
                **weighted,
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
    # how the disparities were formed: ``comparison`` (see :func:`_compare`) and fairlearn's own numbers
    comparison: dict[str, Any] = field(default_factory=dict)
    disparities_all_groups: dict[str, float | None] = field(default_factory=dict)

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
                "min_group_size": self.comparison.get("min_group_size"),
                "left_out": self.comparison.get("left_out", []),
                "undefined_left_out": self.comparison.get("undefined_left_out", {}),
                "compared": self.comparison.get("compared", {}),
                "interval_method": self.comparison.get("interval_method"),
                "confidence": self.comparison.get("confidence"),
                "disparities_all_groups": self.disparities_all_groups,
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
    min_group_size: int
    bootstrap: dict[str, Any] | None
    fairlearn_metrics: dict[str, Any] | None = None
    intervals: dict[str, Any] = field(default_factory=dict)
    sample_weighted: bool = False
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
                "min_group_size": self.min_group_size,
                "sample_weighted": self.sample_weighted,
                "bootstrap": self.bootstrap,
                "intervals": self.intervals,
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
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    bootstrap_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    sample_weight: Any = None,
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
    Booleans read naturally (``True`` is positive unless ``pos_label`` means no: ``False``, 0,
    "false", "no"), and so do yes/no-like values when ``pos_label`` is not among them but means yes
    or no itself ("yes"/"no" with ``pos_label=1``).

    Groups under ``min_group_size`` rows are flagged ``small`` and left out of the disparities.
    ``sample_weight``: non-negative weights, one per row; rates and disparities are then weighted
    as fairlearn's with ``sample_weight`` (group sizes stay row counts). ``bootstrap_resamples=0``
    skips the per-group intervals; the disparity intervals are closed-form and always computed.
    ``extra_metrics`` receive ``sample_weight`` when weights are given.
    """
    _tick(progress, 0.0, "Counting outcomes per group")
    yt = _binary(y_true, pos_label, "y_true")
    yp = _binary(y_pred, pos_label, "y_pred")
    if yt.shape[0] != yp.shape[0]:
        raise EngineError("length_mismatch", f"y_true has {yt.shape[0]} rows but y_pred has {yp.shape[0]}.")
    n_rows = int(yt.shape[0])
    if n_rows == 0:
        raise EngineError("empty_data", "There are no rows to assess.")
    weights = _weights(sample_weight, n_rows)
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
    n_cells = int(np.prod(sizes)) * 4
    cells = np.bincount(index, minlength=n_cells).reshape(*sizes, 4)
    weighted = None
    if weights is not None:  # the weighted counts, and the sums of squared weights for Kish's effective sizes
        weighted = (
            np.bincount(index, weights=weights, minlength=n_cells).reshape(*sizes, 4),
            np.bincount(index, weights=weights * weights, minlength=n_cells).reshape(*sizes, 4),
        )
    del index
    for axis, name in enumerate(names):
        others = tuple(i for i in range(len(names) + 1) if i != axis)
        if np.count_nonzero(cells.sum(axis=others)) < 2:
            raise EngineError(
                "single_group", f"The sensitive feature {name!r} has a single group; fairness needs at least two."
            )

    resampled = None
    if bootstrap_resamples and weighted is None:
        _tick(progress, 0.4, f"Bootstrapping {bootstrap_resamples} resamples")
        resampled = _bootstrap_cells(cells, bootstrap_resamples, np.random.default_rng(seed))

    _tick(progress, 0.6, "Computing metrics")
    views: list[tuple[int, ...]] = [(i,) for i in range(len(names))]
    if len(names) > 1:
        views.append(tuple(range(len(names))))
    analyses = [
        _analyse(
            cells, resampled, weighted, axes, names, encoded, min_group_size=min_group_size, confidence=confidence,
            group_intervals=bool(bootstrap_resamples),
        )
        for axes in views
    ]  # fmt: skip
    overall_counts = cells.reshape(-1, 4).sum(axis=0)
    overall_basis = weighted[0].reshape(-1, 4).sum(axis=0) if weighted is not None else overall_counts
    overall = {
        "count": n_rows,
        **_counts_dict(overall_counts),
        **{m: float(v) for m, v in _rates(overall_basis.astype(np.float64)).items()},
    }
    if weights is not None:
        overall["weight"] = float(weights.sum())
    group_method = None
    if bootstrap_resamples:
        group_method = (
            "Wilson score interval on Kish's effective sample size (weighted rows)"
            if weighted is not None
            else "stratified bootstrap: confusion counts redrawn as Multinomial(n_group, observed shares); "
            "percentile intervals"
        )
    report = FairnessReport(
        sensitive_features=names,
        pos_label=pos_label,
        n_rows=n_rows,
        overall=overall,
        analyses=analyses,
        min_group_size=min_group_size,
        sample_weighted=weights is not None,
        bootstrap=(
            {
                "resamples": bootstrap_resamples,
                "confidence": confidence,
                "seed": seed,
                "method": "stratified by intersectional group: confusion counts redrawn as Multinomial(n_group, "
                "observed shares); percentile intervals per group",
            }
            if resampled is not None
            else None
        ),
        intervals={"confidence": confidence, "groups": group_method, "disparities": INTERVAL_METHOD},
    )
    if y_score is not None or extra_metrics:
        _tick(progress, 0.75, "Computing metrics without a confusion-count form (fairlearn)")
        report.fairlearn_metrics = _fairlearn_metrics(
            yt, yp, columns, y_score=y_score, extra=extra_metrics or {}, sample_weight=weights
        )
    if with_figures:
        report.figures = {a.name: fairness_figures(a) for a in analyses}
    _tick(progress, 1.0, "Fairness metrics done")
    return report


def _weights(sample_weight: Any, n_rows: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    values = sample_weight.to_numpy() if isinstance(sample_weight, (pd.Series, pd.Index)) else sample_weight
    try:
        weights = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise EngineError("bad_sample_weight", "The sample weights must be numbers.") from None
    if weights.ndim == 2 and 1 in weights.shape:
        weights = weights.reshape(-1)
    if weights.ndim != 1:
        raise EngineError("bad_sample_weight", "The sample weights must be one number per row.")
    if weights.shape[0] != n_rows:
        raise EngineError("length_mismatch", f"There are {weights.shape[0]} sample weights for {n_rows} rows.")
    if not np.isfinite(weights).all():
        raise EngineError("bad_sample_weight", "The sample weights must be finite numbers (no missing values).")
    if (weights < 0).any():
        raise EngineError("bad_sample_weight", "The sample weights must not be negative.")
    if not weights.sum() > 0:
        raise EngineError("bad_sample_weight", "Every sample weight is 0: there is nothing to assess.")
    return weights


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


# --- disparities a gate may act on ----------------------------------------------------------------


def _z(confidence: float, comparisons: int = 1) -> float:
    """The normal quantile of a two-sided interval at ``confidence``, Bonferroni-adjusted over ``comparisons``."""
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / (2.0 * max(comparisons, 1)))


def _wilson(p: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of proportions ``p`` out of ``n`` (> 0; Kish's effective size when weighted)."""
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * np.sqrt(np.maximum(p * (1.0 - p), 0.0) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _range_bounds(p: np.ndarray, n: np.ndarray, z: float) -> tuple[float, float, float, float]:
    """Bounds on max - min and min / max of the true rates behind ``p`` (two or more groups), from every
    ordered pair's interval at ``z``: Newcombe's hybrid score interval for p_i - p_j (method 10 of
    Newcombe 1998) and MOVER-R with Wilson limits for p_i / p_j (Donner & Zou 2012). When every pairwise
    interval covers, the true max - min lies in [max of the lower bounds, max of the upper bounds] and
    the true min / max in [min of the lower bounds, min of the upper bounds]."""
    low, high = _wilson(p, n, z)
    g = p.size
    diff_lo, diff_hi, ratio_lo, ratio_hi = -np.inf, -np.inf, np.inf, np.inf
    step = max(1, _PAIR_BLOCK // g)
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, g, step):
            rows = np.arange(start, min(start + step, g))
            pi, li, ui = p[rows, None], low[rows, None], high[rows, None]
            pj, lj, uj = p[None, :], low[None, :], high[None, :]
            others = rows[:, None] != np.arange(g)[None, :]
            d = pi - pj
            diff_lo = max(diff_lo, float((d - np.sqrt((pi - li) ** 2 + (uj - pj) ** 2))[others].max()))
            diff_hi = max(diff_hi, float((d + np.sqrt((ui - pi) ** 2 + (pj - lj) ** 2))[others].max()))
            # MOVER-R: the ratios t where 0 is an end of the MOVER interval of p_i - t p_j. Lower end
            # (rationalised, stable when p_i p_j is 0): C / (p_i p_j + sqrt((p_i p_j)^2 - A C)).
            prod = pi * pj
            a, c = uj * (2.0 * pj - uj), li * (2.0 * pi - li)
            root = prod + np.sqrt(np.maximum(prod * prod - a * c, 0.0))
            lower = np.where(c > 0, c / np.where(root > 0, root, 1.0), 0.0)
            a2, c2 = lj * (2.0 * pj - lj), ui * (2.0 * pi - ui)
            upper = np.where(
                a2 > 0, (prod + np.sqrt(np.maximum(prod * prod - a2 * c2, 0.0))) / np.where(a2 > 0, a2, 1.0), np.inf
            )
            ratio_lo = min(ratio_lo, float(lower[others].min()))
            ratio_hi = min(ratio_hi, float(upper[others].min()))
    return max(0.0, diff_lo), min(1.0, diff_hi), max(0.0, ratio_lo), min(1.0, ratio_hi)


def _compare(
    labels: list[str],
    counts: np.ndarray,
    rates: Mapping[str, np.ndarray],
    sizes: Mapping[str, np.ndarray],
    *,
    min_group_size: int,
    confidence: float,
) -> dict[str, Any]:
    """The disparities over the groups of at least ``min_group_size`` rows, on each rate only where it is
    defined (its denominator, ``sizes``, is above 0), with their simultaneous intervals.

    ``rates`` and ``sizes`` hold, per rate of :data:`DISPARITY_RATES`, one value per group (sizes are
    the rate's denominator: rows, actual positives, actual negatives, or Kish's effective sizes).
    Returns ``disparities``, ``disparity_ci``, ``left_out`` (groups under the minimum size, with the
    reason), ``undefined_left_out`` (per rate, the supported groups where it has no denominator),
    ``compared`` (per rate, how many groups were compared) and the method.
    """
    counts = np.asarray(counts)
    supported = counts >= min_group_size
    left_out = [
        {"group": labels[i], "count": int(counts[i]), "reason": f"n={int(counts[i])} < {min_group_size}"}
        for i in np.flatnonzero(~supported)
    ]
    usable = {m: supported & (np.asarray(sizes[m]) > 0) for m in DISPARITY_RATES}
    undefined = {
        m: [labels[i] for i in np.flatnonzero(supported & ~usable[m])] for m in DISPARITY_RATES if (supported & ~usable[m]).any()
    }  # fmt: skip
    compared = {m: int(usable[m].sum()) for m in DISPARITY_RATES}
    pairs = {m: compared[m] * (compared[m] - 1) // 2 for m in DISPARITY_RATES}

    def point(m: str) -> tuple[float | None, float | None]:
        values = np.asarray(rates[m])[usable[m]]
        if values.size < 2:
            return None, None
        top = float(values.max())
        return top - float(values.min()), (float(values.min()) / top if top > 0 else None)

    def bounds(m: str, comparisons: int) -> tuple[float, float, float | None, float | None] | None:
        if compared[m] < 2:
            return None
        p, n = np.asarray(rates[m], dtype=np.float64)[usable[m]], np.asarray(sizes[m], dtype=np.float64)[usable[m]]
        d_lo, d_hi, r_lo, r_hi = _range_bounds(p, n, _z(confidence, comparisons))
        if not p.max() > 0:  # no group has any: the ratio is undefined
            return d_lo, d_hi, None, None
        return d_lo, d_hi, r_lo, r_hi

    dp_d, dp_r = point("selection_rate")
    tpr_d, tpr_r = point("recall")
    fpr_d, fpr_r = point("false_positive_rate")
    disparities = {
        "demographic_parity_difference": dp_d,
        "demographic_parity_ratio": dp_r,
        "equalized_odds_difference": _extreme(max, tpr_d, fpr_d),
        "equalized_odds_ratio": _extreme(min, tpr_r, fpr_r),
        "equal_opportunity_difference": tpr_d,
        "equal_opportunity_ratio": tpr_r,
    }
    dp = bounds("selection_rate", pairs["selection_rate"])
    eop = bounds("recall", pairs["recall"])
    eo_pairs = pairs["recall"] + pairs["false_positive_rate"]  # one family: both rates' pairs
    eo_t, eo_f = bounds("recall", eo_pairs), bounds("false_positive_rate", eo_pairs)

    def ends(b, i: int) -> list[float | None]:
        return [None, None] if b is None or b[i] is None else [b[i], b[i + 1]]

    def combined(i: int, pick) -> list[float | None]:
        parts = [ends(b, i) for b in (eo_t, eo_f) if b is not None and b[i] is not None]
        return [pick(e[0] for e in parts), pick(e[1] for e in parts)] if parts else [None, None]

    disparity_ci = {
        "demographic_parity_difference": ends(dp, 0),
        "demographic_parity_ratio": ends(dp, 2),
        "equalized_odds_difference": combined(0, max),
        "equalized_odds_ratio": combined(2, min),
        "equal_opportunity_difference": ends(eop, 0),
        "equal_opportunity_ratio": ends(eop, 2),
    }
    return {
        "disparities": disparities,
        "disparity_ci": disparity_ci,
        "min_group_size": min_group_size,
        "left_out": left_out,
        "undefined_left_out": undefined,
        "compared": compared,
        "confidence": confidence,
        "interval_method": INTERVAL_METHOD,
    }


def _extreme(pick, *values: float | None) -> float | None:
    """``pick`` (max or min) of the values that are defined; ``None`` when none is."""
    defined = [v for v in values if v is not None]
    return pick(defined) if defined else None


def disparities_from_stored(
    analysis: Mapping[str, Any], *, min_group_size: int, confidence: float = 0.95
) -> dict[str, Any] | None:
    """:func:`_compare` over a stored analysis (``GroupAnalysis.as_dict()``) with another minimum group
    size: what the deployment gate judges. Needs per group its ``count`` and rates; the rates'
    denominators come from ``effective_n`` (weighted runs), else the confusion counts, else the count
    and base rate. A group whose numbers were withheld is left out and says so. ``None`` when the
    analysis holds no groups (a result stored before per-group numbers were kept)."""
    groups = [g for g in analysis.get("groups") or [] if isinstance(g, Mapping)]
    if not groups:
        return None
    labels, counts, withheld = [], [], []
    rates: dict[str, list[float]] = {m: [] for m in DISPARITY_RATES}
    sizes: dict[str, list[float]] = {m: [] for m in DISPARITY_RATES}
    for g in groups:
        label = str(g.get("label", ""))
        known = _stored_sizes(g)
        if known is None:  # withheld by the privacy rule (a group under k rows keeps only its size)
            count = g.get("count")
            small = isinstance(count, int | float) and not isinstance(count, bool) and count < min_group_size
            reason = f"n={int(count)} < {min_group_size}" if small else "its numbers are withheld"
            withheld.append({"group": label, "count": count, "reason": reason})
            continue
        labels.append(label)
        counts.append(int(g["count"]))
        for m in DISPARITY_RATES:
            rates[m].append(float(g[m]))
            sizes[m].append(known[m])
    out = _compare(
        labels, np.asarray(counts, dtype=np.int64), {m: np.asarray(v, dtype=np.float64) for m, v in rates.items()},
        {m: np.asarray(v, dtype=np.float64) for m, v in sizes.items()}, min_group_size=min_group_size,
        confidence=confidence,
    )  # fmt: skip
    out["left_out"] = out["left_out"] + withheld
    return out


def _stored_sizes(group: Mapping[str, Any]) -> dict[str, float] | None:
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if not number(group.get("count")) or not all(number(group.get(m)) for m in (*DISPARITY_RATES, "base_rate")):
        return None
    effective = group.get("effective_n")
    if isinstance(effective, Mapping) and all(number(effective.get(m)) for m in DISPARITY_RATES):
        return {m: float(effective[m]) for m in DISPARITY_RATES}
    undefined = set(group.get("undefined") or ())
    confusion = group.get("confusion")
    if isinstance(confusion, Mapping) and all(number(confusion.get(k)) for k in ("tn", "fp", "fn", "tp")):
        tn, fp, fn, tp = (float(confusion[k]) for k in ("tn", "fp", "fn", "tp"))
        positives, negatives = fn + tp, tn + fp
    else:  # counts withheld: the base rate times the count gives them back for an unweighted run
        positives = round(float(group["base_rate"]) * float(group["count"]))
        negatives = float(group["count"]) - positives
    return {
        "selection_rate": float(group["count"]),
        "recall": 0.0 if "recall" in undefined else float(positives),
        "false_positive_rate": 0.0 if "false_positive_rate" in undefined else float(negatives),
    }


def _analyse(
    cells: np.ndarray,
    resampled: np.ndarray | None,
    weighted: tuple[np.ndarray, np.ndarray] | None,
    axes: tuple[int, ...],
    names: list[str],
    encoded: list[tuple[np.ndarray, list[Any]]],
    *,
    min_group_size: int,
    confidence: float,
    group_intervals: bool,
) -> GroupAnalysis:
    k = len(names)
    drop = tuple(i for i in range(k) if i not in axes)
    counts = cells.sum(axis=drop) if drop else cells
    shape = counts.shape[:-1]
    flat = counts.reshape(-1, 4)
    totals = flat.sum(axis=1)
    present = np.flatnonzero(totals)
    if weighted is not None:
        basis, squares = ((w.sum(axis=drop) if drop else w).reshape(-1, 4)[present] for w in weighted)
    else:
        basis, squares = flat[present].astype(np.float64), None
    rates = _rates(basis)
    denominators = {m: basis[:, list(_PARTS[m][1])].sum(axis=1) for m in GROUP_METRICS}
    if squares is not None:  # Kish's effective size of each rate's denominator: (sum w)^2 / sum w^2
        effective = {m: _div(denominators[m] ** 2, squares[:, list(_PARTS[m][1])].sum(axis=1)) for m in GROUP_METRICS}
    else:
        effective = denominators
    disparities_all_groups = {m: _scalar(v) for m, v in _disparities(rates).items()}

    ci_rates: dict[str, np.ndarray] | None = None
    if resampled is not None:
        boot = resampled.sum(axis=tuple(d + 1 for d in drop)) if drop else resampled
        boot = boot.reshape(boot.shape[0], -1, 4)[:, present, :].astype(np.float64)
        q = (50.0 * (1.0 - confidence), 100.0 - 50.0 * (1.0 - confidence))
        ci_rates = {m: np.percentile(v, q, axis=0) for m, v in _rates(boot).items()}
    elif group_intervals and weighted is not None:
        z = _z(confidence)
        ci_rates = {}
        for m in GROUP_METRICS:
            n = effective[m]
            safe = np.where(n > 0, n, 1.0)
            low, high = _wilson(rates[m], safe, z)
            ci_rates[m] = np.vstack([np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)])

    labels_per_axis = [encoded[i][1] for i in axes]
    groups = []
    for j, flat_index in enumerate(present):
        position = np.unravel_index(flat_index, shape)
        key = {names[a]: labels_per_axis[i][position[i]] for i, a in enumerate(axes)}
        tn, fp, fn, tp = (int(v) for v in flat[flat_index])
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
                undefined=[m for m in _UNDEFINED_WHEN if not denominators[m][j] > 0],
                small=bool(totals[flat_index] < min_group_size),
                ci={m: _interval(ci_rates[m][:, j]) for m in GROUP_METRICS} if ci_rates is not None else None,
                weight=float(basis[j].sum()) if weighted is not None else None,
                effective_n={m: float(effective[m][j]) for m in DISPARITY_RATES} if weighted is not None else None,
            )
        )
    comparison = _compare(
        [g.label for g in groups], totals[present], {m: rates[m] for m in DISPARITY_RATES},
        {m: effective[m] for m in DISPARITY_RATES}, min_group_size=min_group_size, confidence=confidence,
    )  # fmt: skip
    empty = []
    if len(axes) > 1:  # intersections of groups that exist on their own but not together
        marginal_present = [
            counts.sum(axis=tuple(j for j in range(len(axes) + 1) if j != i)) > 0 for i in range(len(axes))
        ]
        for flat_index in np.flatnonzero(totals == 0):
            position = np.unravel_index(flat_index, shape)
            if all(marginal_present[i][position[i]] for i in range(len(axes))):
                empty.append({names[a]: labels_per_axis[i][position[i]] for i, a in enumerate(axes)})
    # the highest and lowest of the groups the disparities compare (of every group when none is)
    supported = totals[present] >= min_group_size
    extremes = {}
    for metric in DISPARITY_RATES:
        values = rates[metric]
        among = np.flatnonzero(supported & (effective[metric] > 0))
        if among.size == 0:
            among = np.arange(len(groups))
        extremes[metric] = {
            "highest": groups[int(among[values[among].argmax()])].label,
            "lowest": groups[int(among[values[among].argmin()])].label,
        }
    return GroupAnalysis(
        features=[names[a] for a in axes],
        groups=groups,
        disparities=comparison["disparities"],
        disparity_ci=comparison["disparity_ci"],
        extremes=extremes,
        empty_groups=jsonable(empty),
        comparison={k: v for k, v in comparison.items() if k not in ("disparities", "disparity_ci")},
        disparities_all_groups=disparities_all_groups,
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
    """Which rows hold the positive label, as a bool array.

    Booleans read naturally: ``True`` is positive unless the positive label means no (``False``, 0,
    "false", "no"). When the positive label is not among the values but both it and every value
    plainly mean yes or no ("yes"/"no" with the default label 1), yes is yes. Otherwise every value
    other than the positive label must be one negative label; ``not_binary`` says what was found."""
    values = y.to_numpy() if isinstance(y, (pd.Series, pd.Index)) else np.asarray(y)
    if values.ndim != 1:
        values = values.reshape(-1) if values.ndim == 2 and 1 in values.shape else values
        if values.ndim != 1:
            raise EngineError("not_binary", f"{name} must be one label per row.")
    if values.dtype == np.bool_:
        return ~values if truth(pos_label) is False else values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's warnings on comparing unlike types
        try:
            positive = values == pos_label
        except (TypeError, ValueError):
            positive = None
    if not isinstance(positive, np.ndarray) or positive.shape != values.shape:
        positive = np.zeros(values.shape, dtype=bool)  # nothing compares equal to the positive label
    try:
        positive = positive.astype(bool, copy=False)
    except (TypeError, ValueError):  # a missing value (pd.NA) compared as neither equal nor unequal
        raise EngineError(
            "not_binary", f"{name} has missing values; fairness metrics need a label for every row."
        ) from None
    negative = values[~positive]
    if positive.any():
        if negative.size and not (negative == negative[0]).all():
            raise EngineError("not_binary", _not_binary(values, pos_label, name))
        return positive
    distinct = list(pd.unique(values)) if values.size else []
    if len(distinct) <= 2:
        truths = [truth(v) for v in distinct]
        wanted = truth(pos_label)
        if wanted is not None and None not in truths and len(set(truths)) == len(truths):
            positive_value = [v for v, t in zip(distinct, truths, strict=True) if t == wanted]
            return values == positive_value[0] if positive_value else np.zeros(values.shape, dtype=bool)
    if len(distinct) <= 1:  # one label, not the positive one: no row is positive (a model that never selects)
        return positive
    raise EngineError("not_binary", _not_binary(values, pos_label, name))


def _not_binary(values: np.ndarray, pos_label: Any, name: str) -> str:
    """A sentence saying what ``values`` holds instead of binary labels (it names values only when there are
    two: labels, not data)."""
    distinct = pd.unique(values)
    if pd.isna(distinct).any():
        return f"{name} has missing values; fairness metrics need a label for every row."
    if len(distinct) == 2:
        first, second = sorted((_plain(v) for v in distinct), key=str)
        return (
            f"{name} holds two values, {first!r} and {second!r}, and neither is the positive label {pos_label!r}. "
            "Name the favourable one as the positive label (positive_label)."
        )
    return (
        f"{name} holds {len(distinct)} distinct values; fairness metrics need binary decisions and labels "
        f"(two values, one of them the positive label {pos_label!r})."
    )


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
    sample_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    from fairlearn.metrics import MetricFrame

    sensitive = pd.DataFrame({name: np.asarray(values) for name, values in columns})
    out: dict[str, Any] = {}
    frames = []

    def weighted(metrics: Mapping[str, Any]) -> dict[str, Any]:
        if sample_weight is None:
            return {}
        return {"sample_params": {m: {"sample_weight": sample_weight} for m in metrics}}

    if y_score is not None:
        frames.append(
            MetricFrame(
                metrics={"roc_auc": _safe_roc_auc}, y_true=yt, y_pred=np.asarray(y_score), sensitive_features=sensitive,
                **weighted({"roc_auc": None}),
            )
        )  # fmt: skip
    if extra:
        frames.append(
            MetricFrame(metrics=dict(extra), y_true=yt, y_pred=yp, sensitive_features=sensitive, **weighted(extra))
        )
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


def _safe_roc_auc(y_true: Any, y_score: Any, sample_weight: Any = None) -> float:
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true)
    if y_true.min() == y_true.max():
        return float("nan")  # one class only: undefined
    return float(roc_auc_score(y_true, y_score, sample_weight=sample_weight))


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
