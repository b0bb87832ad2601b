"""The MLServer backend against a real MLServer 1.7.1 process (one for the module, on free ports).

Each test uses its own release names, so tests do not see each other's models; a test that needs a
restart starts its own server on its own repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests

from workers.serving.backend import Release, ServingError, Unreachable, Unsupported
from workers.serving.mlserver import MLServerBackend
from workers.serving.mlserver_process import PROJECT_ROOT, MLServerProcess, MLServerStartError, free_port

N_FEATURES = 4


def _data(seed: int = 0, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    return X, (2.0 * X[:, 0] - X[:, 1] + rng.normal(scale=0.3, size=n) > 0).astype(np.int64)


def _oip(X: np.ndarray, *outputs: str) -> dict:
    payload = {"inputs": [{"name": "input-0", "shape": list(X.shape), "datatype": "FP64", "data": X.ravel().tolist()}]}
    if outputs:
        payload["outputs"] = [{"name": name} for name in outputs]
    return payload


def _output(response: dict, name: str = "predict") -> np.ndarray:
    out = next(o for o in response["outputs"] if o["name"] == name)
    return np.asarray(out["data"]).reshape(out["shape"])


def _release(tmp: Path, name: str, data: bytes, fmt: str = "sklearn-joblib", *, endpoint: str | None = None) -> Release:
    path = tmp / f"{name}.artifact"
    path.write_bytes(data)
    return Release(
        endpoint=endpoint or name.rsplit("-v", 1)[0],
        name=name,
        artifact_path=str(path),
        artifact_format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _joblib_bytes(model, tmp: Path) -> bytes:
    path = tmp / "dump.joblib"
    joblib.dump(model, path)
    return path.read_bytes()


def _server_requests(server: MLServerProcess, path: str, status: int = 200) -> float:
    """MLServer's own count of HTTP requests to ``path`` (its REST metrics), to tell whether a call was made."""
    text = requests.get(server.metrics_url, timeout=5).text
    prefix = "rest_server_requests_total{"
    for line in text.splitlines():
        if line.startswith(prefix) and f'path="{path}"' in line and f'status_code="{status}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mlserver") / "repository"
    process = MLServerProcess(
        name="test", directory=directory, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def backend(server) -> MLServerBackend:
    return server.backend(timeout=10.0, load_timeout=60.0)


@pytest.fixture(scope="module")
def models():
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    X, y = _data()
    return X, LogisticRegression().fit(X, y), DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)


def _names(backend: MLServerBackend) -> dict[str, tuple[bool, str]]:
    return {m.name: (m.ready, m.endpoint) for m in backend.status()}


# --- deploy, predict, rollback -------------------------------------------------------------------


def test_deployed_model_answers_with_its_own_predictions(backend, models, tmp_path):
    X, logreg, _ = models
    v1 = _release(tmp_path, "credit-v1", _joblib_bytes(logreg, tmp_path))

    backend.deploy(v1)

    response = backend.predict("credit-v1", _oip(X[:25], "predict", "predict_proba"))
    np.testing.assert_array_equal(_output(response).ravel(), logreg.predict(X[:25]))
    np.testing.assert_allclose(_output(response, "predict_proba"), logreg.predict_proba(X[:25]), rtol=1e-9)
    assert _names(backend)["credit-v1"] == (True, "credit")
    folder = backend.repository / "credit-v1"
    assert json.loads((folder / "charter.json").read_text())["sha256"] == v1.sha256
    assert json.loads((folder / "model-settings.json").read_text())["implementation"] == "mlserver_sklearn.SKLearnModel"


def test_second_version_loads_beside_the_first_and_rollback_unloads_it(backend, models, tmp_path):
    X, logreg, tree = models
    v1 = _release(tmp_path, "scoring-v1", _joblib_bytes(logreg, tmp_path))
    v2 = _release(tmp_path, "scoring-v2", _joblib_bytes(tree, tmp_path))
    backend.deploy(v1)
    backend.deploy(v2)
    assert {k: v for k, v in _names(backend).items() if k.startswith("scoring-")} == {
        "scoring-v1": (True, "scoring"),
        "scoring-v2": (True, "scoring"),
    }
    np.testing.assert_array_equal(_output(backend.predict("scoring-v2", _oip(X[:40]))).ravel(), tree.predict(X[:40]))

    Path(v1.artifact_path).unlink()  # a rollback loads from the repository: the upload is not needed
    backend.rollback(v1, current=v2)

    names = _names(backend)
    assert names["scoring-v1"] == (True, "scoring") and "scoring-v2" not in names
    np.testing.assert_array_equal(_output(backend.predict("scoring-v1", _oip(X[:40]))).ravel(), logreg.predict(X[:40]))
    with pytest.raises(ServingError) as err:
        backend.predict("scoring-v2", _oip(X[:1]))
    assert err.value.code == "predict_failed" and "scoring-v2" in err.value.message
    assert (backend.repository / "scoring-v2" / "charter.json").is_file()  # kept for a later rollback


def test_rollback_to_a_release_that_does_not_load_keeps_the_current_one(backend, models, tmp_path):
    X, logreg, _ = models
    current = _release(tmp_path, "keep-v2", _joblib_bytes(logreg, tmp_path))
    backend.deploy(current)
    broken = _release(tmp_path, "keep-v1", b"not a joblib file at all")

    with pytest.raises(ServingError) as err:
        backend.rollback(broken, current=current)

    assert err.value.code == "load_failed"
    names = _names(backend)
    assert names["keep-v2"] == (True, "keep") and "keep-v1" not in names


def test_deploying_a_loaded_release_again_is_a_no_op(server, backend, models, tmp_path):
    X, logreg, _ = models
    release = _release(tmp_path, "again-v1", _joblib_bytes(logreg, tmp_path))
    backend.deploy(release)
    artifact = backend.repository / "again-v1" / "model.joblib"
    before = (artifact.stat().st_ino, artifact.stat().st_mtime_ns)
    loads = _server_requests(server, "/v2/repository/models/{model_name}/load")

    Path(release.artifact_path).unlink()  # nothing is copied either
    backend.deploy(release)

    assert _server_requests(server, "/v2/repository/models/{model_name}/load") == loads
    assert (artifact.stat().st_ino, artifact.stat().st_mtime_ns) == before
    assert _names(backend)["again-v1"] == (True, "again")


def test_a_folder_left_by_an_interrupted_copy_is_replaced(backend, models, tmp_path):
    X, logreg, _ = models
    release = _release(tmp_path, "torn-v1", _joblib_bytes(logreg, tmp_path))
    folder = backend.repository / "torn-v1"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(Path(release.artifact_path).read_bytes()[:100])  # half a copy
    (folder / ".model.joblib.tmp-1234").write_bytes(b"partial")
    (folder / "charter.json").write_text(json.dumps({"sha256": release.sha256, "file": "model.joblib"}))

    backend.deploy(release)

    np.testing.assert_array_equal(_output(backend.predict("torn-v1", _oip(X[:5]))).ravel(), logreg.predict(X[:5]))
    assert sorted(p.name for p in folder.iterdir()) == ["charter.json", "model-settings.json", "model.joblib"]
    assert hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest() == release.sha256
    assert not list(backend.repository.glob(".staging-*")) and not list(backend.repository.glob(".trash-*"))


# --- failures ---------------------------------------------------------------------------------------


def test_a_model_charter_did_not_put_there_is_left_alone(backend, models, tmp_path):
    X, logreg, _ = models
    folder = backend.repository / "theirs-v1"
    folder.mkdir()
    (folder / "model-settings.json").write_text('{"name": "theirs-v1", "implementation": "their.Runtime"}')

    with pytest.raises(ServingError) as err:
        backend.deploy(_release(tmp_path, "theirs-v1", _joblib_bytes(logreg, tmp_path)))

    assert err.value.code == "name_taken"
    assert sorted(p.name for p in folder.iterdir()) == ["model-settings.json"]
    backend.undeploy(_release(tmp_path, "theirs-v1", b"x"))  # unloads (nothing loaded) but keeps their settings
    assert (folder / "model-settings.json").is_file()


def test_corrupt_artifact_is_load_failed_and_leaves_nothing_loaded(backend, tmp_path):
    release = _release(tmp_path, "corrupt-v1", b"\x80\x04garbage that is no pickle" * 20)

    with pytest.raises(ServingError) as err:
        backend.deploy(release)

    assert err.value.code == "load_failed"
    assert "corrupt-v1" in err.value.message and "Nothing is loaded" in err.value.message
    assert "corrupt-v1" not in _names(backend)
    assert requests.get(f"{backend.url}/v2/models/corrupt-v1/ready", timeout=5).status_code == 404
    assert not (backend.repository / "corrupt-v1" / "model-settings.json").exists()  # a restart does not try it


def test_artifact_not_matching_its_digest_is_not_deployed(backend, models, tmp_path):
    X, logreg, _ = models
    good = _release(tmp_path, "digest-v1", _joblib_bytes(logreg, tmp_path))
    tampered = Release(**{**good.__dict__, "sha256": "0" * 64})

    with pytest.raises(ServingError) as err:
        backend.deploy(tampered)

    assert err.value.code == "artifact_digest_mismatch"
    assert "digest-v1" not in _names(backend) and not (backend.repository / "digest-v1").exists()


def test_prediction_errors_carry_the_servers_message_not_the_payload(backend, models, tmp_path):
    X, logreg, _ = models
    backend.deploy(_release(tmp_path, "errors-v1", _joblib_bytes(logreg, tmp_path)))
    secret = 123456.789

    with pytest.raises(ServingError) as wrong_shape:
        backend.predict("errors-v1", _oip(np.array([[secret, 1.0, 2.0]])))  # 3 features, not 4
    with pytest.raises(ServingError) as malformed:
        backend.predict("errors-v1", {"inputs": [{"name": "x", "shape": [1], "data": [secret]}]})  # no datatype
    with pytest.raises(ServingError) as unknown:
        backend.predict("nobody-v9", _oip(X[:1]))

    for err in (wrong_shape, malformed, unknown):
        assert err.value.code == "predict_failed" and "123456" not in err.value.message
    assert "HTTP 500" in wrong_shape.value.message
    assert "HTTP 422" in malformed.value.message and "datatype" in malformed.value.message
    assert "HTTP 404" in unknown.value.message and "nobody-v9 not found" in unknown.value.message


def test_metrics_count_each_request_of_a_model(backend, models, tmp_path):
    X, logreg, _ = models
    backend.deploy(_release(tmp_path, "counted-v1", _joblib_bytes(logreg, tmp_path)))
    for i in range(5):
        backend.predict("counted-v1", _oip(X[i : i + 3]))
    with pytest.raises(ServingError):
        backend.predict("counted-v1", _oip(X[:2, :3]))

    stats = backend.metrics()["counted-v1"]

    assert (stats.requests, stats.errors) == (6, 1)
    assert 0 < stats.duration_seconds_sum < 5
    assert stats.buckets == {} and stats.p95_seconds() is None  # MLServer keeps no per-model histogram
    assert backend.capabilities().metrics is True


def test_undeploy_unloads_keeps_the_files_and_is_idempotent(backend, models, tmp_path):
    X, logreg, _ = models
    release = _release(tmp_path, "gone-v1", _joblib_bytes(logreg, tmp_path))
    backend.deploy(release)

    backend.undeploy(release)
    backend.undeploy(release)

    assert "gone-v1" not in _names(backend)
    folder = backend.repository / "gone-v1"
    assert not (folder / "model-settings.json").exists() and (folder / "model.joblib").is_file()
    backend.forget(release)
    backend.forget(release)
    assert not folder.exists()


def test_mlserver_cannot_split_traffic(backend, models, tmp_path):
    X, logreg, _ = models
    a = _release(tmp_path, "split-v1", _joblib_bytes(logreg, tmp_path))
    b = _release(tmp_path, "split-v2", _joblib_bytes(logreg, tmp_path))

    with pytest.raises(Unsupported) as traffic:
        backend.set_traffic(b, percent=10, stable=a)
    with pytest.raises(Unsupported) as promote:
        backend.promote(b)

    assert traffic.value.code == "capability_missing" and "cannot split traffic" in traffic.value.message
    assert "KServe" in promote.value.message
    assert backend.capabilities().traffic_split is False
    assert not {"split-v1", "split-v2"} & set(_names(backend))


def test_formats_without_a_runtime_are_refused_up_front(server, tmp_path):
    plain = server.backend(charter_runtime=False)
    assert plain.capabilities().formats == {"sklearn-joblib", "pickle", "xgboost", "lightgbm"}
    with pytest.raises(Unsupported) as err:
        plain.deploy(_release(tmp_path, "onnxless-v1", b"onnx bytes", "onnx"))
    assert "onnx" in err.value.message
    with pytest.raises(Unsupported):
        server.backend().deploy(_release(tmp_path, "other-v1", b"???", "other"))
    assert not (server.directory / "onnxless-v1").exists() and not (server.directory / "other-v1").exists()


def test_a_closed_port_is_unreachable_from_every_method(models, tmp_path):
    X, logreg, _ = models
    port = free_port()
    dead = MLServerBackend(
        f"http://user:s3cret@127.0.0.1:{port}", tmp_path / "repo", f"http://127.0.0.1:{port}/metrics"
    )
    (tmp_path / "repo").mkdir()
    v1 = _release(tmp_path, "dead-v1", _joblib_bytes(logreg, tmp_path))
    v2 = _release(tmp_path, "dead-v2", _joblib_bytes(logreg, tmp_path))

    calls = {
        "deploy": lambda: dead.deploy(v1),
        "rollback": lambda: dead.rollback(v1, current=v2),
        "undeploy": lambda: dead.undeploy(v1),
        "status": dead.status,
        "predict": lambda: dead.predict("dead-v1", _oip(X[:1])),
        "metrics": dead.metrics,
    }
    for method, call in calls.items():
        with pytest.raises(Unreachable) as err:
            call()
        assert err.value.code == "backend_unreachable", method
        assert err.value.message.startswith(f"The MLServer at http://127.0.0.1:{port}"), method
        assert "did not answer" in err.value.message, method
        assert "s3cret" not in err.value.message
    assert not list((tmp_path / "repo").glob("*/model-settings.json"))  # a later restart loads nothing


# --- other formats ------------------------------------------------------------------------------------


def test_xgboost_and_lightgbm_models_are_served_by_their_runtimes(backend, tmp_path):
    import lightgbm as lgb
    import xgboost as xgb

    X, y = _data(seed=1)
    xgb_model = xgb.XGBClassifier(n_estimators=15, max_depth=3, n_jobs=1, random_state=0).fit(X, y)
    xgb_model.save_model(tmp_path / "m.ubj")  # UBJSON: the file name must say so
    lgb_model = lgb.LGBMClassifier(n_estimators=15, num_leaves=8, n_jobs=1, verbose=-1, random_state=0).fit(X, y)
    backend.deploy(_release(tmp_path, "boost-v1", (tmp_path / "m.ubj").read_bytes(), "xgboost"))
    backend.deploy(_release(tmp_path, "light-v1", lgb_model.booster_.model_to_string().encode(), "lightgbm"))

    xgb_out = backend.predict("boost-v1", _oip(X[:30], "predict", "predict_proba"))
    np.testing.assert_array_equal(_output(xgb_out).ravel(), xgb_model.predict(X[:30]))
    np.testing.assert_allclose(_output(xgb_out, "predict_proba"), xgb_model.predict_proba(X[:30]), rtol=1e-5)
    lgb_out = _output(backend.predict("light-v1", _oip(X[:30]))).ravel()
    np.testing.assert_allclose(lgb_out, lgb_model.predict_proba(X[:30])[:, 1], rtol=1e-6)
    assert (backend.repository / "boost-v1" / "model.ubj").is_file()


def test_a_plain_pickle_is_served_by_the_sklearn_runtime(backend, models, tmp_path):
    X, _, tree = models
    backend.deploy(_release(tmp_path, "pickled-v1", pickle.dumps(tree), "pickle"))
    np.testing.assert_array_equal(_output(backend.predict("pickled-v1", _oip(X[:30]))).ravel(), tree.predict(X[:30]))


def test_onnx_and_skops_models_are_served_by_charters_runtime(backend, models, tmp_path):
    import skops.io as sio
    from skl2onnx import to_onnx

    X, logreg, tree = models
    onnx_bytes = to_onnx(logreg, X[:1].astype(np.float32), target_opset=17).SerializeToString()
    backend.deploy(_release(tmp_path, "onnx-v1", onnx_bytes, "onnx"))
    backend.deploy(_release(tmp_path, "skops-v1", sio.dumps(tree), "skops"))

    np.testing.assert_array_equal(_output(backend.predict("onnx-v1", _oip(X[:30]))).ravel(), logreg.predict(X[:30]))
    skops_out = backend.predict("skops-v1", _oip(X[:30], "predict", "predict_proba"))
    np.testing.assert_array_equal(_output(skops_out).ravel(), tree.predict(X[:30]))
    np.testing.assert_allclose(_output(skops_out, "predict_proba"), tree.predict_proba(X[:30]))
    settings = json.loads((backend.repository / "onnx-v1" / "model-settings.json").read_text())
    assert settings["implementation"] == "workers.serving.mlserver_runtime.CharterModel"


# --- the process ---------------------------------------------------------------------------------------


def _process(directory: Path) -> MLServerProcess:
    return MLServerProcess(
        name="restart", directory=directory, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    )


def test_a_restarted_server_loads_back_what_was_live_and_nothing_else(models, tmp_path):
    X, logreg, tree = models
    process = _process(tmp_path / "repo")
    process.start()
    try:
        backend = process.backend()
        live = _release(tmp_path, "live-v1", _joblib_bytes(logreg, tmp_path))
        retired = _release(tmp_path, "live-v2", _joblib_bytes(tree, tmp_path))
        backend.deploy(live)
        backend.deploy(retired)
        backend.undeploy(retired)
        other = process.directory / "foreign"  # a model someone else put there whose file is damaged
        other.mkdir()
        (other / "model.joblib").write_bytes(b"damaged")
        (other / "model-settings.json").write_text(
            json.dumps({"name": "foreign", "implementation": "mlserver_sklearn.SKLearnModel"})
        )
        process.stop()

        report = process.start()

        assert report.restored == ["live-v1"] and list(report.failed) == ["foreign"]
        assert _names(backend) == {"live-v1": (True, "live")}
        np.testing.assert_array_equal(_output(backend.predict("live-v1", _oip(X[:10]))).ravel(), logreg.predict(X[:10]))
    finally:
        process.stop()
    assert not process.running()
    with pytest.raises(Unreachable):
        backend.status()


def test_start_fails_clearly_when_a_port_is_taken(server, tmp_path):
    process = MLServerProcess(
        name="clash",
        directory=tmp_path / "repo",
        http_port=server.http_port,
        grpc_port=free_port(),
        metrics_port=free_port(),
    )
    with pytest.raises(MLServerStartError) as err:
        process.start()
    assert f"HTTP port {server.http_port}" in str(err.value) and "in use" in str(err.value)
    assert not process.running()


def test_the_command_line_runs_mlserver_in_the_foreground_until_sigterm(tmp_path):
    ports = [free_port() for _ in range(3)]
    command = [
        sys.executable, "-m", "workers.serving.mlserver_process", "--name", "cli", "--dir", str(tmp_path / "repo"),
        "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        line = proc.stdout.readline()
        assert "MLServer 'cli' ready" in line and f"http://127.0.0.1:{ports[0]}" in line, line
        assert requests.get(f"http://127.0.0.1:{ports[0]}/v2/health/ready", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "MLServer 'cli' stopped." in proc.stdout.read()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{ports[0]}/v2/health/live", timeout=1)
        except requests.ConnectionError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("MLServer still answers after the command line stopped")
