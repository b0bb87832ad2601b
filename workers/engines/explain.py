"""Explanations: SHAP (global importance, per-row attributions, figures) and LIME (local rules).

``shap_summary`` takes the cheap exact explainer first:

- tree ensembles (scikit-learn gradient boosting / random forests / trees, XGBoost, LightGBM):
  ``shap.TreeExplainer`` with the path-dependent algorithm (no background), on every row. The
  attributions are in the trees' raw output space: log-odds for boosted classifiers, probability
  for random-forest classifiers, the prediction for regressors.
- linear models: ``shap.LinearExplainer`` against the mean of the data (interventional), on
  every row, in the decision-function space (log-odds for a logistic regression).
- anything else (pipelines, ONNX, ...): ``shap.KernelExplainer`` on a seeded sample of at most
  ``explain_rows`` rows, with a k-means summary of ``background_size`` centres (``shap.kmeans``)
  and at most ``max_evals`` coalitions per row; in the probability (classifiers) or prediction
  (regressors) space.

In every case SHAP values add up: base value + sum of a row's values = the model's output in
that space. The result says which space (``output_space``) and reports the largest additivity
error found on the sampled rows. Global importance is the mean |SHAP| per feature over all
explained rows; the beeswarm and dependence figures draw a seeded sample of rows instead of
re-running the explainer. The full attribution matrix stays on the result (``values``) and is not
part of ``as_dict()``: only aggregates and the sampled rows are evidence.

``lime_explanations`` runs ``lime.lime_tabular.LimeTabularExplainer`` with a fixed seed on chosen
rows and reports each row's local rules and weights, plus their mean |weight| per feature.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workers.engines import figures
from workers.engines.errors import EngineError, ModelFailed, model_failed
from workers.engines.loading import LoadedModel, wrap_estimator
from workers.engines.serialize import jsonable

Progress = Callable[[float, str], None]

TOP_FEATURES_IN_FIGURES = 20
DEPENDENCE_PLOTS = 3
ADDITIVITY_ROWS = 100
_OUTPUT_SPACE = {"log_odds": "log-odds", "probability": "probability", "raw_value": "raw"}


@dataclass
class ShapSummary:
    """What :func:`shap_summary` returns; ``as_dict()`` is the stored evidence (aggregates and sampled rows)."""

    explainer: str
    output_space: str
    explained_output: str
    output_names: list[str]
    feature_names: list[str]
    importance: list[dict[str, Any]]
    importance_by_output: dict[str, list[dict[str, Any]]] | None
    base_value: float
    base_values: list[float]
    rows_explained: int
    rows: list[dict[str, Any]]
    additivity: dict[str, Any]
    parameters: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    values: np.ndarray | None = field(default=None, repr=False)  # (rows, features[, outputs]); not evidence

    @property
    def ranking(self) -> list[str]:
        return [item["feature"] for item in self.importance]

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "explainer": self.explainer,
                "output_space": self.output_space,
                "explained_output": self.explained_output,
                "output_names": self.output_names,
                "feature_names": self.feature_names,
                "importance": self.importance,
                "importance_by_output": self.importance_by_output,
                "base_value": self.base_value,
                "base_values": self.base_values,
                "rows_explained": self.rows_explained,
                "rows": self.rows,
                "additivity": self.additivity,
                "parameters": self.parameters,
                "notes": self.notes,
                "figures": self.figures,
            }
        )


def shap_summary(
    model: Any,
    X: pd.DataFrame | np.ndarray,
    *,
    seed: int = 0,
    max_evals: int | None = None,
    background_size: int = 50,
    sample_rows: int = 10,
    explain_rows: int = 200,
    figure_rows: int = 1000,
    class_index: int | None = None,
    include_feature_values: bool = True,
    progress: Progress | None = None,
) -> ShapSummary:
    """SHAP attributions of ``model`` on ``X`` with the explainer that fits the model.

    ``sample_rows``: rows returned with their attributions; ``figure_rows``: rows drawn in the
    beeswarm and dependence plots; ``explain_rows``, ``background_size``, ``max_evals``: the
    budget of the model-agnostic (Kernel) explainer only — tree and linear explainers explain
    every row exactly. ``class_index``: the class a multiclass model's figures and rows show
    (default: the first; binary classifiers show the positive class). With
    ``include_feature_values=False`` the sampled rows carry attributions without the feature values.
    """
    model = wrap_estimator(model)
    Xm, names = _model_frame(model, X)
    n_rows = Xm.shape[0]
    if n_rows == 0:
        raise EngineError("empty_data", "There are no rows to explain.")
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    _tick(progress, 0.0, "Choosing the explainer")

    result: _Attributions | None = None
    if model.kind == "tree_ensemble":
        result = _tree(model, Xm, notes)
    elif model.kind == "linear":
        result = _linear(model, Xm, notes)
    if result is None:
        result = _kernel(
            model,
            Xm,
            rng=rng,
            seed=seed,
            max_evals=max_evals,
            background_size=background_size,
            explain_rows=explain_rows,
            progress=progress,
        )
    _tick(progress, 0.85, "Summarising")

    values = result.values  # (n, d, k)
    n_explained, n_features, n_outputs = values.shape
    if n_outputs == 1:
        out = 0
    elif n_outputs == 2 and model.task == "classification" and class_index is None:
        out = 1
    else:
        out = class_index or 0
        if not 0 <= out < n_outputs:
            raise EngineError("bad_parameter", f"class_index must be between 0 and {n_outputs - 1}.")
    output_names = _output_names(model, n_outputs)
    explained = values[:, :, out]
    mean_abs = np.abs(explained).mean(axis=0)
    by_output = None
    if n_outputs > 2 or (n_outputs == 2 and model.task != "classification"):
        by_output = {
            output_names[k]: _importance(names, np.abs(values[:, :, k]).mean(axis=0)) for k in range(n_outputs)
        }
    importance = _importance(names, mean_abs)
    order = np.argsort(-mean_abs, kind="stable")

    source = result.rows_source  # rows of Xm that ``values`` explain, in order
    picked = np.sort(rng.choice(n_explained, size=min(sample_rows, n_explained), replace=False))
    check = np.sort(rng.choice(n_explained, size=min(ADDITIVITY_ROWS, n_explained), replace=False))
    additivity = _additivity(result, values, check, source, Xm)
    base = result.base_values
    picked_x = _rows(Xm, source[picked])
    picked_output = result.output_on(_take(Xm, source[picked]))
    rows = []
    for i, r in enumerate(picked):
        contributions = [
            {"feature": names[j], "shap": float(explained[r, j])}
            | ({"value": float(picked_x[i, j])} if include_feature_values else {})
            for j in np.argsort(-np.abs(explained[r]), kind="stable")
        ]
        rows.append(
            {
                "row": int(source[r]),
                "base_value": float(base[out]),
                "output": float(base[out] + explained[r].sum()),
                "model_output": float(picked_output[i, out]) if picked_output is not None else None,
                "contributions": contributions,
            }
        )

    summary = ShapSummary(
        explainer=result.explainer,
        output_space=result.output_space,
        explained_output=output_names[out],
        output_names=output_names,
        feature_names=names,
        importance=importance,
        importance_by_output=by_output,
        base_value=float(base[out]),
        base_values=[float(b) for b in base],
        rows_explained=n_explained,
        rows=rows,
        additivity=additivity,
        parameters={
            "seed": seed,
            "sample_rows": len(picked),
            "figure_rows": min(figure_rows, n_explained),
            **result.parameters,
        },
        notes=notes + result.notes,
        values=values if n_outputs > 1 else values[:, :, 0],
    )
    _tick(progress, 0.9, "Drawing figures")
    fig_rows = np.sort(rng.choice(n_explained, size=min(figure_rows, n_explained), replace=False))
    summary.figures = _shap_figures(
        names, order, explained[fig_rows], _rows(Xm, source[fig_rows]), mean_abs, summary, seed=seed
    )
    _tick(progress, 1.0, "SHAP done")
    return summary


@dataclass
class _Attributions:
    explainer: str
    output_space: str
    values: np.ndarray  # (n_explained, n_features, n_outputs)
    base_values: np.ndarray  # (n_outputs,)
    rows_source: np.ndarray  # positions in X of the explained rows
    output_on: Callable[[Any], np.ndarray | None]  # model output in the explained space, (rows, outputs)
    parameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _tree(model: LoadedModel, Xm: Any, notes: list[str]) -> _Attributions | None:
    shap = _shap()

    try:
        explainer = shap.TreeExplainer(model.estimator)
    except Exception as exc:  # a tree type this SHAP version does not read: fall back
        notes.append(f"TreeExplainer does not support this model ({type(exc).__name__}); Kernel SHAP was used.")
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = explainer.shap_values(Xm, check_additivity=False)
    except EngineError:
        raise
    except Exception as exc:
        raise model_failed(exc, during="computing tree SHAP values", n_rows=Xm.shape[0]) from exc
    values = _as_3d(values)
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64)).reshape(-1)
    space = _OUTPUT_SPACE.get(getattr(explainer.model, "tree_output", None) or "", "raw")
    if model.task == "regression":
        space = "prediction"
    return _Attributions(
        explainer="tree",
        output_space=space,
        values=values,
        base_values=base,
        rows_source=np.arange(Xm.shape[0]),
        output_on=lambda rows: _tree_raw_output(model, rows, values.shape[2]),
        parameters={"algorithm": "tree_path_dependent", "background": None},
    )


def _tree_raw_output(model: LoadedModel, rows: Any, n_outputs: int) -> np.ndarray | None:
    est = model.estimator
    module, name = type(est).__module__, type(est).__name__
    A = model.prepare(rows)
    try:
        if module.startswith("xgboost"):
            booster = est if name == "Booster" else est.get_booster()
            out = booster.inplace_predict(
                np.asarray(A, dtype=np.float64), predict_type="margin", validate_features=False
            )
        elif module.startswith("lightgbm"):
            out = est.predict(A, raw_score=True)
        elif model.task == "regression":
            out = est.predict(A)
        elif hasattr(est, "decision_function") and not name.startswith(("RandomForest", "ExtraTrees", "DecisionTree")):
            out = est.decision_function(A)
        else:
            out = est.predict_proba(A)
    except Exception as exc:
        raise model_failed(exc, during="computing raw outputs", n_rows=len(rows)) from exc
    out = np.asarray(out, dtype=np.float64)
    out = out.reshape(len(rows), -1)
    return out if out.shape[1] == n_outputs else None


def _linear(model: LoadedModel, Xm: Any, notes: list[str]) -> _Attributions | None:
    shap = _shap()

    est = model.estimator
    A = _as_float(Xm)
    mean = np.nanmean(A, axis=0, keepdims=True)
    try:
        explainer = shap.LinearExplainer(est, shap.maskers.Independent(mean))
        values = explainer.shap_values(A)
    except Exception as exc:
        notes.append(f"LinearExplainer could not read this model ({type(exc).__name__}); Kernel SHAP was used.")
        return None
    values = _as_3d(values)
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64)).reshape(-1)

    def output_on(rows: Any) -> np.ndarray:
        B = model.prepare(rows)
        try:
            out = est.decision_function(B) if model.task == "classification" else est.predict(B)
        except Exception as exc:
            raise model_failed(exc, during="computing the decision function", n_rows=len(rows)) from exc
        return np.asarray(out, dtype=np.float64).reshape(len(rows), -1)

    return _Attributions(
        explainer="linear",
        output_space=_linear_space(model),
        values=values,
        base_values=base,
        rows_source=np.arange(A.shape[0]),
        output_on=output_on,
        parameters={"feature_perturbation": "interventional", "background": "mean of the data"},
    )


def _linear_space(model: LoadedModel) -> str:
    if model.task == "regression":
        return "prediction"
    return "log-odds" if model.predict_proba_fn is not None else "decision function"


def _kernel(
    model: LoadedModel,
    Xm: Any,
    *,
    rng: np.random.Generator,
    seed: int,
    max_evals: int | None,
    background_size: int,
    explain_rows: int,
    progress: Progress | None,
) -> _Attributions:
    shap = _shap()

    A = _as_float(Xm)
    n, d = A.shape
    rows = np.sort(rng.choice(n, size=min(explain_rows, n), replace=False))
    summary_pool = A[np.sort(rng.choice(n, size=min(n, 2000), replace=False))]
    k = max(1, min(background_size, len(np.unique(summary_pool, axis=0))))
    _tick(progress, 0.05, f"Summarising the background with {k} k-means centres")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        background = shap.kmeans(summary_pool, k)
    f, space, n_out = _model_function(model, A[:1])
    budget = max_evals or 2 * d + 512
    if budget < 2 * d + 2:
        raise EngineError("bad_parameter", f"max_evals must be at least {2 * d + 2} for {d} features.")
    state = np.random.get_state()  # KernelExplainer samples with numpy's global generator
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = shap.KernelExplainer(f, background)
            chunks = np.array_split(np.arange(rows.size), min(10, rows.size))
            parts = []
            for i, chunk in enumerate(chunks):
                parts.append(_as_3d(explainer.shap_values(A[rows[chunk]], nsamples=budget, l1_reg=False, silent=True)))
                _tick(
                    progress, 0.1 + 0.75 * (i + 1) / len(chunks), f"Explained {int(chunk[-1]) + 1} of {rows.size} rows"
                )
    except EngineError:
        raise
    except Exception as exc:
        raise model_failed(exc, during="computing Kernel SHAP values") from exc
    finally:
        np.random.set_state(state)
    values = np.concatenate(parts, axis=0)
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64)).reshape(-1)
    return _Attributions(
        explainer="kernel",
        output_space=space,
        values=values,
        base_values=base,
        rows_source=rows,
        output_on=lambda r: np.asarray(f(_as_float(r)), dtype=np.float64).reshape(len(r), n_out),
        parameters={
            "background": "k-means",
            "background_size": k,
            "max_evals": budget,
            "explain_rows": int(rows.size),
        },
        notes=[f"Kernel SHAP explained a seeded sample of {rows.size} of {n} rows."] if rows.size < n else [],
    )


def _model_function(model: LoadedModel, probe: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], str, int]:
    """The function Kernel SHAP explains: probabilities (classifiers) or predictions, on arrays."""
    to_input = _array_to_input(model)
    if model.task == "classification" and model.predict_proba_fn is not None:
        k = model.predict_proba(to_input(probe)).shape[1]
        if k == 2:
            return (lambda A: model.predict_proba(to_input(A))[:, 1]), "probability", 1
        return (lambda A: model.predict_proba(to_input(A))), "probability", k
    try:
        model.predict(to_input(probe)).astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise EngineError(
            "unsupported_model", "The model's predictions are not numbers; SHAP cannot explain them."
        ) from exc
    return (lambda A: model.predict(to_input(A)).astype(np.float64)), "prediction", 1


def _array_to_input(model: LoadedModel) -> Callable[[np.ndarray], Any]:
    if model.accepts_dataframe and model.feature_names:
        names = model.feature_names
        return lambda A: pd.DataFrame(A, columns=names)
    return lambda A: A


def _additivity(
    result: _Attributions, values: np.ndarray, check: np.ndarray, source: np.ndarray, Xm: Any
) -> dict[str, Any]:
    """Largest |base + sum(SHAP) - model output| on a sample, in the explained space."""
    output = result.output_on(_take(Xm, source[check]))
    if output is None:
        return {"checked_rows": 0, "max_abs_error": None, "holds": None, "space": result.output_space}
    reconstructed = result.base_values[None, :] + values[check].sum(axis=1)
    error = float(np.max(np.abs(reconstructed - output))) if output.size else 0.0
    scale = max(1.0, float(np.max(np.abs(output)))) if output.size else 1.0
    return {
        "checked_rows": int(check.size),
        "max_abs_error": error,
        "holds": bool(error <= 1e-3 * scale),
        "space": result.output_space,
    }


# --- figures ------------------------------------------------------------------------------------


def _shap_figures(
    names: list[str],
    order: np.ndarray,
    shap_sample: np.ndarray,
    x_sample: np.ndarray,
    mean_abs: np.ndarray,
    summary: ShapSummary,
    *,
    seed: int,
) -> dict[str, Any]:
    top = order[:TOP_FEATURES_IN_FIGURES]
    space = summary.output_space
    colour = _rank01(x_sample)
    out = {
        "importance": figures.bar(
            [names[j] for j in top],
            mean_abs[top],
            title="Global importance (mean |SHAP value|)",
            value_title=f"mean |SHAP value| ({space})",
            horizontal=True,
        ),
        "beeswarm": figures.beeswarm(
            [names[j] for j in top],
            shap_sample[:, top],
            colour[:, top],
            title=f"SHAP values of {shap_sample.shape[0]} sampled rows",
            value_title=f"SHAP value ({space})",
            seed=seed,
        ),
        "dependence": [],
    }
    for rank, j in enumerate(order[:DEPENDENCE_PLOTS]):
        other = order[1] if rank == 0 and len(order) > 1 else order[0]
        out["dependence"].append(
            figures.dependence(
                x_sample[:, j],
                shap_sample[:, j],
                feature=names[j],
                value_title=f"SHAP value of {names[j]} ({space})",
                colour=colour[:, other] if other != j else None,
                colour_feature=names[other] if other != j else None,
            )
        )
    return out


def _rank01(x: np.ndarray) -> np.ndarray:
    """Each column's values as ranks scaled to [0, 1] (NaN stays NaN): colours without raw values."""
    out = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        col = x[:, j]
        ok = np.isfinite(col)
        if ok.sum() > 1:
            ranks = pd.Series(col[ok]).rank(method="average").to_numpy()
            out[ok, j] = (ranks - 1) / max(ok.sum() - 1, 1)
        elif ok.sum() == 1:
            out[ok, j] = 0.5
    return out


# --- LIME ---------------------------------------------------------------------------------------


@dataclass
class LimeResult:
    """What :func:`lime_explanations` returns."""

    mode: str
    explained_class: Any
    feature_names: list[str]
    rows: list[dict[str, Any]]
    importance: list[dict[str, Any]]
    parameters: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ranking(self) -> list[str]:
        return [item["feature"] for item in self.importance]

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "mode": self.mode,
                "explained_class": self.explained_class,
                "feature_names": self.feature_names,
                "rows": self.rows,
                "importance": self.importance,
                "parameters": self.parameters,
                "figures": self.figures,
            }
        )


def lime_explanations(
    model: Any,
    X: pd.DataFrame | np.ndarray,
    *,
    rows: Sequence[int] | int = 5,
    seed: int = 0,
    num_features: int = 10,
    num_samples: int = 2000,
    training_rows: int = 5000,
    class_index: int | None = None,
    progress: Progress | None = None,
) -> LimeResult:
    """LIME tabular explanations of ``rows`` (positions in ``X``, or how many to draw with ``seed``).

    The explainer's statistics (quartiles for the discretised rules, scales for the perturbations)
    come from a seeded sample of at most ``training_rows`` rows of ``X``; ``num_samples``
    perturbations per row. Classifiers are explained on the probability of ``class_index``
    (default: the positive class of a binary model, else the first).
    """
    from lime.lime_tabular import LimeTabularExplainer

    model = wrap_estimator(model)
    Xm, names = _model_frame(model, X)
    A = _as_float(Xm)
    n = A.shape[0]
    if n == 0:
        raise EngineError("empty_data", "There are no rows to explain.")
    rng = np.random.default_rng(seed)
    if isinstance(rows, int):
        positions = np.sort(rng.choice(n, size=min(rows, n), replace=False))
    else:
        positions = np.asarray(list(rows), dtype=np.int64)
        if positions.size == 0 or positions.min() < 0 or positions.max() >= n:
            raise EngineError("bad_parameter", f"Rows to explain must be positions between 0 and {n - 1}.")
    training = A[np.sort(rng.choice(n, size=min(training_rows, n), replace=False))]
    to_input = _array_to_input(model)
    classification = model.task == "classification" and model.predict_proba_fn is not None
    if classification:
        k = model.predict_proba(to_input(A[:1])).shape[1]
        label = class_index if class_index is not None else (1 if k == 2 else 0)

        def predict_fn(B: np.ndarray) -> np.ndarray:
            return model.predict_proba(to_input(B))
    else:
        label = None

        def predict_fn(B: np.ndarray) -> np.ndarray:
            return model.predict(to_input(B)).astype(np.float64)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = LimeTabularExplainer(
            training,
            mode="classification" if classification else "regression",
            feature_names=names,
            discretize_continuous=True,
            random_state=seed,
        )
        results = []
        totals = np.zeros(len(names))
        for i, position in enumerate(positions):
            try:
                exp = explainer.explain_instance(
                    A[position],
                    predict_fn,
                    num_features=min(num_features, len(names)),
                    num_samples=num_samples,
                    labels=(label,) if classification else (0,),
                )
            except EngineError:
                raise
            except Exception as exc:
                raise model_failed(exc, during="computing LIME explanations", n_rows=num_samples) from exc
            key = label if classification else 1  # LIME files a regression under label 1
            items = []
            for (j, weight), (rule, _) in zip(exp.as_map()[key], exp.as_list(label=key), strict=True):
                totals[j] += abs(weight)
                items.append({"feature": names[j], "rule": rule, "weight": float(weight)})
            intercept = exp.intercept[key]
            local = exp.local_pred
            results.append(
                {
                    "row": int(position),
                    "prediction": float(exp.predict_proba[key]) if classification else float(exp.predicted_value),
                    "intercept": float(intercept),
                    "local_prediction": float(np.ravel(local)[0]) if local is not None else None,
                    "score": float(exp.score[key] if isinstance(exp.score, dict) else exp.score),
                    "weights": items,
                }
            )
            _tick(progress, (i + 1) / positions.size, f"LIME explained {i + 1} of {positions.size} rows")
    mean_abs = totals / positions.size
    importance = [item for item in _importance(names, mean_abs) if item["mean_abs_shap"] > 0]
    importance = [{"feature": item["feature"], "mean_abs_weight": item["mean_abs_shap"]} for item in importance]
    explained_class = model.classes[label] if classification and model.classes else label
    result = LimeResult(
        mode="classification" if classification else "regression",
        explained_class=explained_class,
        feature_names=names,
        rows=results,
        importance=importance,
        parameters={
            "seed": seed,
            "num_features": num_features,
            "num_samples": num_samples,
            "training_rows": int(training.shape[0]),
            "discretize_continuous": True,
        },
    )
    result.figures = {
        "importance": figures.bar(
            [i["feature"] for i in importance[:TOP_FEATURES_IN_FIGURES]],
            [i["mean_abs_weight"] for i in importance[:TOP_FEATURES_IN_FIGURES]],
            title=f"LIME: mean |weight| over {positions.size} rows",
            value_title="mean |weight|",
            horizontal=True,
        ),
        "rows": [
            figures.bar(
                [w["rule"] for w in row["weights"]],
                [w["weight"] for w in row["weights"]],
                title=f"LIME explanation of row {row['row']}",
                value_title="weight",
                horizontal=True,
            )
            for row in results
        ],
    }
    return result


# --- shared helpers -----------------------------------------------------------------------------


def _model_frame(model: LoadedModel, X: Any) -> tuple[Any, list[str]]:
    """``X`` with the model's columns in the model's order, and the feature names."""
    if isinstance(X, pd.DataFrame):
        if model.feature_names is not None:
            missing = [c for c in model.feature_names if c not in X.columns]
            if missing:
                raise EngineError(
                    "missing_column",
                    f"The data lacks {len(missing)} of the model's features: {', '.join(missing[:10])}.",
                )
            if list(X.columns) != model.feature_names:
                X = X[model.feature_names]
        names = [str(c) for c in X.columns]
    else:
        X = np.asarray(X)
        if X.ndim != 2:
            raise EngineError("bad_input", "Features must be a two-dimensional table.")
        names = list(model.feature_names or [f"x{j}" for j in range(X.shape[1])])
    if model.n_features is not None and X.shape[1] != model.n_features:
        raise EngineError("feature_count", f"The data has {X.shape[1]} features; the model takes {model.n_features}.")
    return X, names


def _as_float(X: Any) -> np.ndarray:
    if isinstance(X, pd.DataFrame):
        A = X.to_numpy()
    else:
        A = np.asarray(X)
    if A.dtype not in (np.float32, np.float64):
        try:
            A = A.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise EngineError("non_numeric_feature", "Some features are not numeric.") from exc
    return A


def _take(X: Any, positions: np.ndarray) -> Any:
    return X.iloc[positions] if isinstance(X, pd.DataFrame) else X[positions]


def _rows(X: Any, positions: np.ndarray) -> np.ndarray:
    return _as_float(_take(X, positions)).astype(np.float64, copy=False)


def _as_3d(values: Any) -> np.ndarray:
    if isinstance(values, list):  # older SHAP: one array per output
        values = np.stack(values, axis=-1)
    values = np.asarray(values)
    return values[:, :, None] if values.ndim == 2 else values


def _importance(names: Sequence[str], mean_abs: np.ndarray) -> list[dict[str, Any]]:
    order = np.argsort(-mean_abs, kind="stable")
    return [{"feature": names[j], "mean_abs_shap": float(mean_abs[j])} for j in order]


def _output_names(model: LoadedModel, n_outputs: int) -> list[str]:
    if model.task == "classification":
        classes = model.classes if model.classes and len(model.classes) == n_outputs else None
        if n_outputs == 1:
            positive = model.classes[-1] if model.classes else 1
            return [f"class {positive}"]
        return [f"class {c}" for c in (classes or range(n_outputs))]
    return ["prediction"] if n_outputs == 1 else [f"output {k}" for k in range(n_outputs)]


def _shap() -> Any:
    """shap, imported quietly (its import emits matplotlib deprecation warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap

    return shap


def _tick(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


__all__ = ["LimeResult", "ModelFailed", "ShapSummary", "lime_explanations", "shap_summary"]
