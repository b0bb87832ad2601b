"""Load a registered model artifact, after checking its sha256, behind one small interface.

The file is read once into memory, hashed, and the model is built from those same bytes: no
window between checking the digest and loading in which the file could change. Pickle-based
formats (``sklearn-joblib``, ``pickle``) run code when they load, so they are refused unless the
caller passes ``allow_pickle=True`` (the policy: artifacts uploaded by an author of the owning
team). skops artifacts load through skops' trusted-types check; ONNX runs in onnxruntime on the
CPU; XGBoost (JSON or UBJSON) and LightGBM (text) load from their native formats.

Every format ends as a :class:`LoadedModel`: ``predict``, ``predict_proba`` (``None`` for a
regressor or a classifier without probabilities), ``kind`` (which SHAP explainer fits),
``task``, ``feature_names`` and the underlying ``estimator``. A model that raises while
predicting surfaces as ``EngineError("model_failed", ...)`` naming the exception type only.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from workers.engines.errors import (
    ArtifactDigestMismatch,
    EngineError,
    ModelFailed,
    PickleNotAllowed,
    UntrustedTypes,
    model_failed,
)

ModelKind = Literal["tree_ensemble", "linear", "other"]
Task = Literal["classification", "regression"]

# The values of governance.registry.models.ArtifactFormat (kept in step by a test).
ARTIFACT_FORMATS = ("sklearn-joblib", "skops", "onnx", "xgboost", "lightgbm", "pickle", "other")
PICKLE_FORMATS = frozenset({"sklearn-joblib", "pickle"})

# Types trusted here on top of skops' own defaults. sklearn's Cython ``Tree`` holds only arrays
# of node values; skops lists it as untrusted because it is not a plain Python type.
SKOPS_TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)

_TREE_TYPES = (
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "XGBClassifier",
    "XGBRegressor",
    "XGBRFClassifier",
    "XGBRFRegressor",
    "LGBMClassifier",
    "LGBMRegressor",
)
_XGB_CLASSIFICATION = ("binary:", "multi:")
_LGB_CLASSIFICATION = ("binary", "multiclass", "multiclassova", "softmax", "ova", "ovr", "multiclass_ova")


@dataclass(eq=False)
class LoadedModel:
    """A model ready to call: one interface over scikit-learn, ONNX, XGBoost and LightGBM.

    ``X`` passed to ``predict``/``predict_proba`` is a DataFrame (columns are reordered to
    ``feature_names`` when the model knows them) or a 2-D array in the model's column order.
    ``classes`` lists the class labels in ``predict_proba``'s column order when known.
    """

    estimator: Any
    artifact_format: str
    kind: ModelKind
    task: Task
    feature_names: list[str] | None
    n_features: int | None
    classes: list[Any] | None
    predict_fn: Callable[[Any], np.ndarray] = field(repr=False)
    predict_proba_fn: Callable[[Any], np.ndarray] | None = field(default=None, repr=False)
    backend: str = "sklearn"
    sha256: str | None = None
    accepts_dataframe: bool = False

    def prepare(self, X: Any) -> Any:
        """``X`` in the form the model takes: reordered DataFrame or a numeric 2-D array."""
        if isinstance(X, pd.DataFrame):
            if self.feature_names is not None and set(self.feature_names) <= set(X.columns):
                X = X[self.feature_names] if list(X.columns) != self.feature_names else X
            if self.accepts_dataframe:
                return X
            return X.to_numpy()
        return X if isinstance(X, np.ndarray) else np.asarray(X)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (classification) or values (regression), one per row."""
        return self._call(self.predict_fn, X, during="predicting")

    def predict_proba(self, X: Any) -> np.ndarray | None:
        """Class probabilities, shape (n_rows, n_classes), or ``None`` when the model has none."""
        if self.predict_proba_fn is None:
            return None
        proba = self._call(self.predict_proba_fn, X, during="predicting probabilities")
        return proba.reshape(-1, 1) if proba.ndim == 1 else proba

    def describe(self) -> dict[str, Any]:
        """What the model is, as plain data (for a run's environment record)."""
        from workers.engines.serialize import jsonable

        return jsonable(
            {
                "artifact_format": self.artifact_format,
                "backend": self.backend,
                "estimator": type(self.estimator).__name__,
                "kind": self.kind,
                "task": self.task,
                "n_features": self.n_features,
                "feature_names": self.feature_names,
                "classes": self.classes,
                "sha256": self.sha256,
                "has_predict_proba": self.predict_proba_fn is not None,
            }
        )

    def _call(self, fn: Callable[[Any], np.ndarray], X: Any, *, during: str) -> np.ndarray:
        n_rows = _n_rows(X)
        try:
            out = np.asarray(fn(self.prepare(X)))
        except EngineError:
            raise
        except Exception as exc:  # the model's own failure, whatever it is
            raise model_failed(exc, during=during, n_rows=n_rows) from exc
        if n_rows is not None and (out.ndim == 0 or out.shape[0] != n_rows):
            raise ModelFailed(f"The model returned {out.shape[0] if out.ndim else 0} outputs for {n_rows} rows.")
        return out


def _n_rows(X: Any) -> int | None:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        return None


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_model(
    path: str | Path,
    *,
    artifact_format: str,
    expected_sha256: str,
    allow_pickle: bool = False,
    trusted_types: Sequence[str] = (),
) -> LoadedModel:
    """Read, verify and load the artifact at ``path``.

    Raises ``ArtifactDigestMismatch`` before anything is deserialised when the bytes do not hash
    to ``expected_sha256``; ``PickleNotAllowed`` for a pickle-based format without
    ``allow_pickle``; ``UntrustedTypes`` for a skops file naming types outside skops' defaults,
    :data:`SKOPS_TRUSTED_TYPES` and ``trusted_types``; ``EngineError`` with code
    ``unsupported_format``, ``artifact_unreadable`` or ``unsupported_model`` otherwise.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise EngineError(
            "artifact_unreadable", f"The artifact file could not be read ({type(exc).__name__})."
        ) from exc
    return load_model_bytes(
        data,
        artifact_format=artifact_format,
        expected_sha256=expected_sha256,
        allow_pickle=allow_pickle,
        trusted_types=trusted_types,
    )


def load_model_bytes(
    data: bytes,
    *,
    artifact_format: str,
    expected_sha256: str,
    allow_pickle: bool = False,
    trusted_types: Sequence[str] = (),
) -> LoadedModel:
    """:func:`load_model` on bytes already in memory (the digest is checked all the same)."""
    actual = sha256_of(data)
    if actual != expected_sha256.strip().lower():
        raise ArtifactDigestMismatch(
            f"The artifact's sha256 is {actual}, not the {expected_sha256.strip().lower()} recorded for the version; "
            "it was not loaded."
        )
    if artifact_format not in ARTIFACT_FORMATS:
        raise EngineError("unsupported_format", f"Unknown artifact format {artifact_format!r}.")
    if artifact_format in PICKLE_FORMATS and not allow_pickle:
        raise PickleNotAllowed(
            f"The {artifact_format} format runs code when it loads; it is loaded only for artifacts that an author "
            "of the owning team uploaded."
        )
    loader = _LOADERS.get(artifact_format)
    if loader is None:
        raise EngineError("unsupported_format", f"Artifacts in the {artifact_format!r} format cannot be evaluated.")
    try:
        model = loader(data, trusted_types)
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(
            "artifact_unreadable", f"The {artifact_format} artifact could not be loaded ({type(exc).__name__})."
        ) from exc
    model.sha256 = actual
    return model


# --- loaders -----------------------------------------------------------------------------------


def _load_joblib(data: bytes, _trusted: Sequence[str]) -> LoadedModel:
    import joblib

    return wrap_estimator(joblib.load(io.BytesIO(data)), artifact_format="sklearn-joblib")


def _load_pickle(data: bytes, _trusted: Sequence[str]) -> LoadedModel:
    return wrap_estimator(pickle.loads(data), artifact_format="pickle")  # noqa: S301 (allow_pickle checked)


def _load_skops(data: bytes, trusted: Sequence[str]) -> LoadedModel:
    import skops.io as sio

    allowed = set(SKOPS_TRUSTED_TYPES) | set(trusted)
    untrusted = sorted(set(sio.get_untrusted_types(data=data)) - allowed)
    if untrusted:
        raise UntrustedTypes(
            f"The skops artifact contains {len(untrusted)} type(s) that are not trusted: {', '.join(untrusted)}. "
            "Review them and pass them as trusted types to load it.",
            types=untrusted,
        )
    estimator = sio.loads(data, trusted=sorted(allowed) or None)
    return wrap_estimator(estimator, artifact_format="skops")


def _load_xgboost(data: bytes, _trusted: Sequence[str]) -> LoadedModel:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(data))  # JSON or UBJSON, told apart by xgboost from the bytes
    return wrap_estimator(booster, artifact_format="xgboost")


def _load_lightgbm(data: bytes, _trusted: Sequence[str]) -> LoadedModel:
    import lightgbm as lgb

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EngineError("artifact_unreadable", "The LightGBM artifact is not a text model file.") from exc
    return wrap_estimator(lgb.Booster(model_str=text), artifact_format="lightgbm")


def _load_onnx(data: bytes, _trusted: Sequence[str]) -> LoadedModel:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    return _wrap_onnx(session, data)


_LOADERS: dict[str, Callable[[bytes, Sequence[str]], LoadedModel]] = {
    "sklearn-joblib": _load_joblib,
    "pickle": _load_pickle,
    "skops": _load_skops,
    "onnx": _load_onnx,
    "xgboost": _load_xgboost,
    "lightgbm": _load_lightgbm,
}


# --- wrapping in-memory models -----------------------------------------------------------------


def wrap_estimator(estimator: Any, *, artifact_format: str = "in-memory") -> LoadedModel:
    """A :class:`LoadedModel` around an estimator already in memory (scikit-learn API, XGBoost or
    LightGBM Booster); a ``LoadedModel`` is returned as it is."""
    if isinstance(estimator, LoadedModel):
        return estimator
    module = type(estimator).__module__
    name = type(estimator).__name__
    if module.startswith("xgboost") and name == "Booster":
        return _wrap_xgb_booster(estimator, artifact_format)
    if module.startswith("lightgbm") and name == "Booster":
        return _wrap_lgb_booster(estimator, artifact_format)
    if not callable(getattr(estimator, "predict", None)):
        raise EngineError("unsupported_model", f"A {name} has no predict method and cannot be evaluated.")
    return _wrap_sklearn(estimator, artifact_format)


def _wrap_sklearn(est: Any, artifact_format: str) -> LoadedModel:
    from sklearn.base import is_classifier, is_regressor

    name = type(est).__name__
    classes = getattr(est, "classes_", None)
    has_proba = callable(getattr(est, "predict_proba", None))
    if is_classifier(est) or (not is_regressor(est) and classes is not None):
        task: Task = "classification"
    else:
        task = "regression"
    feature_names = getattr(est, "feature_names_in_", None)
    n_features = getattr(est, "n_features_in_", None)
    return LoadedModel(
        estimator=est,
        artifact_format=artifact_format,
        kind=_sklearn_kind(est, name),
        task=task,
        feature_names=[str(f) for f in feature_names] if feature_names is not None else None,
        n_features=int(n_features) if n_features is not None else None,
        classes=list(np.asarray(classes).tolist()) if classes is not None else None,
        predict_fn=est.predict,
        predict_proba_fn=est.predict_proba if has_proba and task == "classification" else None,
        backend=type(est).__module__.split(".")[0],
        accepts_dataframe=feature_names is not None,
    )


def _sklearn_kind(est: Any, name: str) -> ModelKind:
    if name in _TREE_TYPES:
        if name.startswith("XGB") and getattr(est, "booster", None) == "gblinear":
            return "other"
        return "tree_ensemble"
    module = type(est).__module__
    if hasattr(est, "coef_") and (
        module.startswith("sklearn.linear_model") or name in ("LinearSVC", "LinearSVR", "LinearDiscriminantAnalysis")
    ):
        return "linear"
    return "other"


def _wrap_xgb_booster(booster: Any, artifact_format: str) -> LoadedModel:
    config = json.loads(booster.save_config())
    learner = config.get("learner", {})
    objective = learner.get("objective", {}).get("name", "")
    gbm = learner.get("gradient_booster", {}).get("name", "gbtree")
    num_class = int(learner.get("learner_model_param", {}).get("num_class", "0") or 0)
    classification = objective.startswith(_XGB_CLASSIFICATION)
    probabilistic = objective in ("binary:logistic", "multi:softprob")
    feature_names = list(booster.feature_names) if booster.feature_names else None

    def raw(X: np.ndarray) -> np.ndarray:
        return booster.inplace_predict(X, validate_features=False)

    def predict(X: np.ndarray) -> np.ndarray:
        out = raw(X)
        if not classification:
            return out
        if out.ndim == 2:
            return out.argmax(axis=1)
        threshold = 0.0 if objective == "binary:logitraw" else 0.5
        return (out > threshold).astype(np.int64) if objective != "multi:softmax" else out.astype(np.int64)

    def predict_proba(X: np.ndarray) -> np.ndarray:
        out = raw(X)
        return out if out.ndim == 2 else np.column_stack([1.0 - out, out])

    return LoadedModel(
        estimator=booster,
        artifact_format=artifact_format,
        kind="tree_ensemble" if gbm in ("gbtree", "dart") else "other",
        task="classification" if classification else "regression",
        feature_names=feature_names,
        n_features=int(booster.num_features()),
        classes=list(range(max(num_class, 2))) if classification else None,
        predict_fn=predict,
        predict_proba_fn=predict_proba if probabilistic else None,
        backend="xgboost",
    )


def _wrap_lgb_booster(booster: Any, artifact_format: str) -> LoadedModel:
    objective = str(booster.params.get("objective", "regression")).split()[0]
    classification = objective in _LGB_CLASSIFICATION
    n_classes = booster.num_model_per_iteration() if objective != "binary" else 2
    names = booster.feature_name()
    generic = names == [f"Column_{i}" for i in range(len(names))]

    def predict(X: np.ndarray) -> np.ndarray:
        out = booster.predict(X)
        if not classification:
            return out
        return out.argmax(axis=1) if out.ndim == 2 else (out > 0.5).astype(np.int64)

    def predict_proba(X: np.ndarray) -> np.ndarray:
        out = booster.predict(X)
        return out if out.ndim == 2 else np.column_stack([1.0 - out, out])

    return LoadedModel(
        estimator=booster,
        artifact_format=artifact_format,
        kind="tree_ensemble",
        task="classification" if classification else "regression",
        feature_names=None if generic else list(names),
        n_features=int(booster.num_feature()),
        classes=list(range(n_classes)) if classification else None,
        predict_fn=predict,
        predict_proba_fn=predict_proba if classification else None,
        backend="lightgbm",
    )


def _wrap_onnx(session: Any, data: bytes) -> LoadedModel:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise EngineError(
            "unsupported_model",
            f"The ONNX model takes {len(inputs)} inputs; only models with one tensor input can be evaluated.",
        )
    tensor = inputs[0]
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64}.get(tensor.type)
    if dtype is None:
        raise EngineError("unsupported_model", f"The ONNX model's input is a {tensor.type}, not a float tensor.")
    shape = tensor.shape
    n_features = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
    outputs = session.get_outputs()
    label_out = outputs[0]
    classification = len(outputs) >= 2 or label_out.type in ("tensor(int64)", "tensor(string)", "tensor(int32)")
    proba_out = next((o for o in outputs[1:] if "map" in o.type or o.type in ("tensor(float)", "tensor(double)")), None)
    classes = _onnx_class_labels(data) if classification else None

    def run(X: np.ndarray, names: list[str]) -> list[Any]:
        return session.run(names, {tensor.name: np.ascontiguousarray(X, dtype=dtype)})

    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(run(X, [label_out.name])[0]).reshape(-1)

    def predict_proba(X: np.ndarray) -> np.ndarray:
        out = run(X, [proba_out.name])[0]
        if isinstance(out, list):  # ZipMap: one {class: probability} per row
            keys = classes if classes is not None else sorted(out[0]) if out else []
            return np.array([[row[k] for k in keys] for row in out], dtype=np.float64)
        return np.asarray(out, dtype=np.float64)

    return LoadedModel(
        estimator=session,
        artifact_format="onnx",
        kind="other",
        task="classification" if classification else "regression",
        feature_names=None,
        n_features=n_features,
        classes=classes,
        predict_fn=predict,
        predict_proba_fn=predict_proba if classification and proba_out is not None else None,
        backend="onnxruntime",
    )


def _onnx_class_labels(data: bytes) -> list[Any] | None:
    """Class labels from the graph (ZipMap, LinearClassifier, TreeEnsembleClassifier, ... attributes)."""
    try:
        import onnx
    except ImportError:  # onnx comes with skl2onnx; without it the labels stay unknown
        return None
    graph = onnx.load_from_string(data).graph
    for node in graph.node:
        for attr in node.attribute:
            if re.fullmatch(r"classlabels_(ints|int64s)", attr.name) and attr.ints:
                return [int(v) for v in attr.ints]
            if re.fullmatch(r"classlabels_strings", attr.name) and attr.strings:
                return [s.decode("utf-8") for s in attr.strings]
    return None
