"""Artifact loading: digest first, then each format's own loader; pickle only when allowed."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pytest
import skops.io as sio

from tests.engines.conftest import ExplodingClassifier, make_data, shift, write_artifact
from workers.engines import loading
from workers.engines.errors import EngineError
from workers.engines.loading import load_model


def _joblib_bytes(estimator) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def test_formats_are_the_registry_formats():
    from governance.registry.models import PICKLE_FORMATS, ArtifactFormat

    assert set(loading.ARTIFACT_FORMATS) == set(ArtifactFormat.values)
    assert loading.PICKLE_FORMATS == {str(f) for f in PICKLE_FORMATS}


def test_joblib_round_trip_when_pickle_is_allowed(tmp_path, data, gbt):
    X, _ = data
    path, digest = write_artifact(tmp_path, "model.joblib", _joblib_bytes(gbt))
    model = load_model(path, artifact_format="sklearn-joblib", expected_sha256=digest, allow_pickle=True)
    assert (model.kind, model.task, model.feature_names, model.sha256) == (
        "tree_ensemble", "classification", list(X.columns), digest
    )  # fmt: skip
    np.testing.assert_array_equal(model.predict(X), gbt.predict(X))
    np.testing.assert_allclose(model.predict_proba(X), gbt.predict_proba(X))


@pytest.mark.parametrize("artifact_format", ["sklearn-joblib", "pickle"])
def test_pickle_based_formats_are_refused_unless_allowed(tmp_path, gbt, artifact_format):
    payload = _joblib_bytes(gbt) if artifact_format == "sklearn-joblib" else pickle.dumps(gbt)
    path, digest = write_artifact(tmp_path, "model.bin", payload)
    with pytest.raises(EngineError) as err:
        load_model(path, artifact_format=artifact_format, expected_sha256=digest)
    assert err.value.code == "pickle_not_allowed"
    assert isinstance(err.value, loading.PickleNotAllowed)


class _WritesWhenUnpickled:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_digest_is_checked_before_anything_is_deserialised(tmp_path):
    bomb = _WritesWhenUnpickled()
    bomb.marker = tmp_path / "unpickled"
    path, digest = write_artifact(tmp_path, "model.pkl", pickle.dumps(bomb))
    with pytest.raises(loading.ArtifactDigestMismatch) as err:
        load_model(path, artifact_format="pickle", expected_sha256="0" * 64, allow_pickle=True)
    assert err.value.code == "digest_mismatch"
    assert digest in err.value.message and "0" * 64 in err.value.message
    assert not bomb.marker.exists()


def test_skops_loads_a_gradient_boosted_tree(tmp_path, data, gbt):
    X, _ = data
    path, digest = write_artifact(tmp_path, "model.skops", sio.dumps(gbt))
    model = load_model(path, artifact_format="skops", expected_sha256=digest)
    assert model.kind == "tree_ensemble"
    np.testing.assert_allclose(model.predict_proba(X), gbt.predict_proba(X))


def test_skops_refuses_untrusted_types_until_they_are_trusted(tmp_path, data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = data
    pipeline = make_pipeline(FunctionTransformer(shift), LogisticRegression()).fit(X.to_numpy(), y)
    path, digest = write_artifact(tmp_path, "model.skops", sio.dumps(pipeline))
    with pytest.raises(loading.UntrustedTypes) as err:
        load_model(path, artifact_format="skops", expected_sha256=digest)
    assert err.value.code == "untrusted_types"
    assert err.value.types == ["tests.engines.conftest.shift"]
    assert "tests.engines.conftest.shift" in err.value.message
    model = load_model(path, artifact_format="skops", expected_sha256=digest, trusted_types=err.value.types)
    assert model.kind == "other"
    np.testing.assert_array_equal(model.predict(X.to_numpy()), pipeline.predict(X.to_numpy()))


@pytest.mark.parametrize("suffix", ["json", "ubj"])
def test_xgboost_native_round_trip(tmp_path, data, xgb_model, suffix):
    X, _ = data
    xgb_model.save_model(tmp_path / f"saved.{suffix}")
    path = tmp_path / f"saved.{suffix}"
    renamed = path.rename(tmp_path / "content-addressed")  # stored without an extension
    model = load_model(renamed, artifact_format="xgboost", expected_sha256=loading.sha256_of(renamed.read_bytes()))
    assert (model.kind, model.task, model.classes, model.feature_names) == (
        "tree_ensemble", "classification", [0, 1], list(X.columns)
    )  # fmt: skip
    np.testing.assert_allclose(model.predict_proba(X), xgb_model.predict_proba(X), rtol=1e-6)
    np.testing.assert_array_equal(model.predict(X), xgb_model.predict(X))


def test_lightgbm_text_round_trip(tmp_path, data, lgb_model):
    X, _ = data
    path, digest = write_artifact(tmp_path, "model.txt", lgb_model.booster_.model_to_string().encode())
    model = load_model(path, artifact_format="lightgbm", expected_sha256=digest)
    assert (model.kind, model.task, model.feature_names) == ("tree_ensemble", "classification", list(X.columns))
    np.testing.assert_allclose(model.predict_proba(X), lgb_model.predict_proba(X), rtol=1e-9)
    np.testing.assert_array_equal(model.predict(X), lgb_model.predict(X))


def test_lightgbm_regressor_is_a_regression(tmp_path):
    import lightgbm as lgb

    from tests.engines.conftest import make_regression

    X, y = make_regression(300)
    reg = lgb.LGBMRegressor(n_estimators=10, verbose=-1, n_jobs=1).fit(X, y)
    path, digest = write_artifact(tmp_path, "model.txt", reg.booster_.model_to_string().encode())
    model = load_model(path, artifact_format="lightgbm", expected_sha256=digest)
    assert model.task == "regression" and model.predict_proba(X) is None
    np.testing.assert_allclose(model.predict(X), reg.predict(X))


def test_onnx_logistic_regression_runs_in_onnxruntime(tmp_path, data, onnx_bytes):
    from sklearn.linear_model import LogisticRegression

    X, y = data
    path, digest = write_artifact(tmp_path, "model.onnx", onnx_bytes)
    model = load_model(path, artifact_format="onnx", expected_sha256=digest)
    assert (model.kind, model.task, model.classes, model.n_features, model.backend) == (
        "other", "classification", [0, 1], 6, "onnxruntime"
    )  # fmt: skip
    reference = LogisticRegression(max_iter=500).fit(X.to_numpy(np.float32), y)
    np.testing.assert_allclose(model.predict_proba(X), reference.predict_proba(X.to_numpy(np.float32)), atol=1e-5)
    assert (model.predict(X) == reference.predict(X.to_numpy(np.float32))).mean() > 0.99


def test_a_model_that_raises_on_predict_is_model_failed(tmp_path, data):
    X, y = data
    path, digest = write_artifact(tmp_path, "model.joblib", _joblib_bytes(ExplodingClassifier().fit(X, y)))
    model = load_model(path, artifact_format="sklearn-joblib", expected_sha256=digest, allow_pickle=True)
    with pytest.raises(EngineError) as err:
        model.predict(X)
    assert err.value.code == "model_failed"
    assert "ValueError" in err.value.message
    assert str(round(X.iloc[0, 0], 3))[:5] not in err.value.message and "[" not in err.value.message


def test_unreadable_and_unsupported_artifacts(tmp_path):
    path, digest = write_artifact(tmp_path, "model.onnx", b"not a model")
    with pytest.raises(EngineError) as err:
        load_model(path, artifact_format="onnx", expected_sha256=digest)
    assert err.value.code == "artifact_unreadable"
    with pytest.raises(EngineError) as err:
        load_model(path, artifact_format="other", expected_sha256=digest)
    assert err.value.code == "unsupported_format"
    with pytest.raises(EngineError) as err:
        load_model(tmp_path / "absent", artifact_format="onnx", expected_sha256=digest)
    assert err.value.code == "artifact_unreadable"


def test_describe_is_plain_data(data, gbt):
    import json

    described = loading.wrap_estimator(gbt).describe()
    assert json.loads(json.dumps(described)) == described
    assert described["estimator"] == "GradientBoostingClassifier" and described["classes"] == [0, 1]


def test_make_data_drives_the_target_with_x0():
    X, y = make_data(400, seed=3)
    assert np.corrcoef(X["x0"], y)[0, 1] > 0.7
