"""Robustness: how the model's quality moves under perturbed inputs, and what it does with bad ones.

On a seeded sample of the evaluation data:

- Gaussian noise: each feature gets noise with standard deviation ``level`` x the feature's own
  standard deviation; the metric (accuracy for classifiers, RMSE for regressors) and the share of
  changed predictions are reported per level.
- missing values: a share of the cells is blanked. A model that cannot take NaN is reported as
  such (with the exception type), then measured again with the blanks filled by column means.
- out-of-range values: every feature, and each feature alone, pushed 10 ranges beyond the
  observed minimum and maximum: does the model answer, are its outputs finite, how many change.
- malformed inputs: NaN rows, infinities, huge values, a missing or extra column, text in a
  numeric column, no rows at all. Each ends as ``raised`` (the model refused it, the good answer),
  ``returned`` (it answered anyway) or ``returned_non_finite``.

The engine itself never fails on what the model does: every model failure is recorded.
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
from workers.engines.loading import LoadedModel, wrap_estimator
from workers.engines.serialize import jsonable

Progress = Callable[[float, str], None]
OUT_OF_RANGE_FACTOR = 10.0
MAX_SINGLE_FEATURE_CASES = 50


@dataclass
class RobustnessReport:
    """What :func:`robustness_report` returns; ``as_dict()`` is the stored evidence."""

    task: str
    metric: str
    higher_is_better: bool
    sample_rows: int
    baseline: float | None
    noise: list[dict[str, Any]]
    missing_values: list[dict[str, Any]]
    model_accepts_nan: bool | None
    out_of_range: list[dict[str, Any]]
    malformed: list[dict[str, Any]]
    parameters: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "raised_on": [c["case"] for c in self.malformed + self.out_of_range if c["outcome"] == "raised"],
            "accepted_malformed": [c["case"] for c in self.malformed if c["outcome"] != "raised" and c["malformed"]],
            "non_finite_outputs": [
                c["case"] for c in self.malformed + self.out_of_range if c["outcome"] == "returned_non_finite"
            ],
            "worst_noise_delta": min((n["delta"] for n in self.noise if n.get("delta") is not None), default=None)
            if self.higher_is_better
            else max((n["delta"] for n in self.noise if n.get("delta") is not None), default=None),
        }

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "task": self.task,
                "metric": self.metric,
                "higher_is_better": self.higher_is_better,
                "sample_rows": self.sample_rows,
                "baseline": self.baseline,
                "noise": self.noise,
                "missing_values": self.missing_values,
                "model_accepts_nan": self.model_accepts_nan,
                "out_of_range": self.out_of_range,
                "malformed": self.malformed,
                "summary": self.summary(),
                "parameters": self.parameters,
                "figures": self.figures,
            }
        )


def robustness_report(
    model: Any,
    X: pd.DataFrame | np.ndarray,
    y: Any,
    *,
    noise_levels: Sequence[float] = (0.05, 0.1, 0.25, 0.5),
    missing_rates: Sequence[float] = (0.05, 0.2),
    sample_rows: int = 2000,
    seed: int = 0,
    progress: Progress | None = None,
) -> RobustnessReport:
    """Perturb a seeded sample of ``X`` and report what the model does (see the module docstring)."""
    model = wrap_estimator(model)
    names, A = _features(model, X)
    y_all = np.asarray(y)
    if A.shape[0] == 0:
        raise EngineError("empty_data", "There are no rows to perturb.")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(A.shape[0], size=min(sample_rows, A.shape[0]), replace=False))
    A, y_true = A[rows], y_all[rows]
    classification = model.task == "classification"
    metric, higher = ("accuracy", True) if classification else ("rmse", False)
    call = _Caller(model, names)

    _tick(progress, 0.0, "Baseline")
    base = call(A)
    if base.error is not None:
        raise EngineError("model_failed", f"The model raised {base.error} on the unperturbed data.")
    baseline = _score(y_true, base.output, classification)

    noise = []
    scale = np.nanstd(A, axis=0)
    for i, level in enumerate(noise_levels):
        noisy = A + rng.normal(size=A.shape) * (level * scale)
        noise.append({"level": float(level), **_compare(call(noisy), base, y_true, baseline, classification)})
        _tick(progress, 0.1 + 0.3 * (i + 1) / max(len(noise_levels), 1), f"Noise level {level}")

    missing = []
    accepts_nan: bool | None = None
    means = np.nanmean(A, axis=0)
    for rate in missing_rates:
        blank = rng.random(A.shape) < rate
        holed = np.where(blank, np.nan, A)
        entry: dict[str, Any] = {"rate": float(rate), **_compare(call(holed), base, y_true, baseline, classification)}
        accepts_nan = (
            entry["outcome"] != "raised" if accepts_nan is None else accepts_nan and entry["outcome"] != "raised"
        )
        if entry["outcome"] == "raised":
            imputed = _compare(call(np.where(blank, means, A)), base, y_true, baseline, classification)
            entry["mean_imputed"] = imputed
        missing.append(entry)
    _tick(progress, 0.55, "Out-of-range inputs")

    low, high = np.nanmin(A, axis=0), np.nanmax(A, axis=0)
    span = np.where(high > low, high - low, np.maximum(np.abs(high), 1.0))
    above, below = high + OUT_OF_RANGE_FACTOR * span, low - OUT_OF_RANGE_FACTOR * span
    probe = A[: min(200, A.shape[0])]
    probe_base = base.output[: probe.shape[0]]
    out_of_range = [
        _case("all_features_above_range", "every feature 10 ranges above its maximum", call(np.tile(above, (probe.shape[0], 1))), probe_base),
        _case("all_features_below_range", "every feature 10 ranges below its minimum", call(np.tile(below, (probe.shape[0], 1))), probe_base),
    ]  # fmt: skip
    for j, name in enumerate(names[:MAX_SINGLE_FEATURE_CASES]):
        for side, value in (("above", above[j]), ("below", below[j])):
            pushed = probe.copy()
            pushed[:, j] = value
            out_of_range.append(
                _case(f"{name}_{side}_range", f"{name} alone 10 ranges {side} its range", call(pushed), probe_base)
                | {"feature": name}
            )
    _tick(progress, 0.8, "Malformed inputs")

    one = probe[:5]
    text = one.astype(object)
    text[:, 0] = "not a number"
    malformed = [
        _case("nan_rows", "every feature missing", call(np.full_like(one, np.nan)), None, malformed=True),
        _case("infinite_values", "every feature +inf", call(np.full_like(one, np.inf)), None, malformed=True),
        _case("huge_values", "every feature 1e300", call(np.full_like(one, 1e300)), None, malformed=True),
        _case("missing_column", "the last feature column left out", call(one[:, :-1], named=False), None, malformed=True),
        _case("extra_column", "one feature column too many", call(np.hstack([one, one[:, :1]]), named=False), None, malformed=True),
        _case("text_in_numeric_column", "text in the first feature column", call(text), None, malformed=True),
        _case("no_rows", "an input with no rows", call(one[:0]), None, malformed=True),
        _case("single_row", "one well-formed row", call(one[:1]), None, malformed=False),
    ]  # fmt: skip

    report = RobustnessReport(
        task=model.task,
        metric=metric,
        higher_is_better=higher,
        sample_rows=int(A.shape[0]),
        baseline=baseline,
        noise=noise,
        missing_values=missing,
        model_accepts_nan=accepts_nan,
        out_of_range=out_of_range,
        malformed=malformed,
        parameters={
            "seed": seed,
            "noise_levels": list(noise_levels),
            "missing_rates": list(missing_rates),
            "noise": "Gaussian, standard deviation = level x the feature's standard deviation",
            "out_of_range_factor": OUT_OF_RANGE_FACTOR,
        },
    )
    report.figures = {
        "noise": figures.lines(
            [{"name": metric, "x": [0.0] + [n["level"] for n in noise], "y": [baseline] + [n.get("metric") for n in noise]}],
            title=f"{metric} under Gaussian feature noise",
            x_title="noise (x feature standard deviation)",
            y_title=metric,
        ),
        "missing_values": figures.lines(
            [
                {"name": "model as is", "x": [0.0] + [m["rate"] for m in missing], "y": [baseline] + [m.get("metric") for m in missing]},
                {"name": "blanks filled with column means", "x": [0.0] + [m["rate"] for m in missing],
                 "y": [baseline] + [m.get("mean_imputed", {}).get("metric", m.get("metric")) for m in missing]},
            ],
            title=f"{metric} with missing values",
            x_title="share of cells missing",
            y_title=metric,
        ),
    }  # fmt: skip
    _tick(progress, 1.0, "Robustness done")
    return report


@dataclass
class _Outcome:
    output: np.ndarray | None
    error: str | None


class _Caller:
    """Calls the model and records, instead of raising, whatever goes wrong."""

    def __init__(self, model: LoadedModel, names: list[str]) -> None:
        self.model = model
        self.names = names

    def __call__(self, A: np.ndarray, *, named: bool = True) -> _Outcome:
        data: Any = A
        if named and self.model.accepts_dataframe:
            data = pd.DataFrame(A, columns=self.names)
        try:
            with warnings.catch_warnings():  # overflow and feature-name warnings are what these probes provoke
                warnings.simplefilter("ignore")
                return _Outcome(np.asarray(self.model.predict(data)), None)
        except EngineError as exc:
            cause = exc.__cause__
            return _Outcome(None, type(cause).__name__ if cause is not None else exc.code)
        except Exception as exc:  # defensive: LoadedModel wraps model errors already
            return _Outcome(None, type(exc).__name__)


def _compare(
    outcome: _Outcome, base: _Outcome, y_true: np.ndarray, baseline: float | None, classification: bool
) -> dict[str, Any]:
    if outcome.error is not None:
        return {"outcome": "raised", "error_type": outcome.error, "metric": None, "delta": None}
    out = outcome.output
    finite = _finite(out)
    score = _score(y_true, out, classification)
    entry = {
        "outcome": "returned" if finite else "returned_non_finite",
        "metric": score,
        "delta": None if score is None or baseline is None else score - baseline,
    }
    if classification:
        entry["changed_share"] = float(np.mean(out != base.output))
    else:
        entry["mean_abs_change"] = float(np.mean(np.abs(out.astype(np.float64) - base.output.astype(np.float64))))
    return entry


def _case(
    case: str, description: str, outcome: _Outcome, reference: np.ndarray | None, *, malformed: bool = False
) -> dict[str, Any]:
    entry: dict[str, Any] = {"case": case, "description": description, "malformed": malformed}
    if outcome.error is not None:
        return entry | {"outcome": "raised", "error_type": outcome.error}
    out = outcome.output
    entry |= {"outcome": "returned" if _finite(out) else "returned_non_finite", "n_outputs": int(out.shape[0])}
    if reference is not None and out.shape == reference.shape:
        entry["changed_share"] = float(np.mean(out != reference))
    return entry


def _finite(out: np.ndarray) -> bool:
    if out.dtype.kind in "fc":
        return bool(np.isfinite(out).all())
    return True


def _score(y_true: np.ndarray, y_pred: np.ndarray, classification: bool) -> float | None:
    if classification:
        return float(np.mean(y_pred == y_true))
    error = y_pred.astype(np.float64).reshape(-1) - y_true.astype(np.float64)
    value = float(np.sqrt(np.mean(error**2)))
    return value if np.isfinite(value) else None


def _features(model: LoadedModel, X: Any) -> tuple[list[str], np.ndarray]:
    if isinstance(X, pd.DataFrame):
        if model.feature_names is not None:
            missing = [c for c in model.feature_names if c not in X.columns]
            if missing:
                raise EngineError("missing_column", f"The data lacks {len(missing)} of the model's features.")
            X = X[model.feature_names]
        names = [str(c) for c in X.columns]
        try:
            A = X.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise EngineError("non_numeric_feature", "Some features are not numeric.") from exc
    else:
        A = np.asarray(X, dtype=np.float64)
        names = list(model.feature_names or [f"x{j}" for j in range(A.shape[1])])
    return names, A


def _tick(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)
