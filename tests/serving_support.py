"""What the serving suites share: the two local MLServers of the default environments (staging and
production, as the run command starts them) on free ports, a worker on the ``deploy`` queue that
drives them, and approved versions of a real scikit-learn model with a probe request."""

from __future__ import annotations

import contextlib
import io
import random
import threading

import joblib
import numpy as np
import pytest
import requests
from sklearn.linear_model import LogisticRegression

from governance.core.context import audit_context
from tests.conftest import celery_worker, make_artifact
from workers.serving.mlserver_process import MLServerProcess, _port_free

N_FEATURES = 4
ENVIRONMENTS = ("staging", "production")
NO_GATES = {
    "environments": {e: {"min_approvals": 1, "roles": [{"role": "approver"}]} for e in ENVIRONMENTS},
    "gates": [],
}


def free_base_port() -> int:
    """An HTTP port whose gRPC (+100) and metrics (+200) neighbours are free too (the settings' layout)."""
    for _ in range(200):
        port = random.randint(20000, 40000)
        if all(_port_free("127.0.0.1", p) for p in (port, port + 100, port + 200)):
            return port
    raise RuntimeError("No free ports for a local MLServer.")


@pytest.fixture(scope="module")
def mlservers(tmp_path_factory):
    """Staging and production MLServers, for the module; their settings as the worker reads them."""
    root = tmp_path_factory.mktemp("serving")
    servers = {}
    try:
        for name in ENVIRONMENTS:
            port = free_base_port()
            server = MLServerProcess(name=name, directory=root / name, http_port=port, grpc_port=port + 100,
                                     metrics_port=port + 200)  # fmt: skip
            server.start()
            servers[name] = server
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def fake_k8s():
    """A fake Kubernetes API server playing KServe's controller (and the cluster's Prometheus)."""
    from tests.engines.fake_k8s import FakeKubernetes

    server = FakeKubernetes(controller=True)
    yield server
    server.close()


def serving_env(mlservers) -> dict[str, str]:
    root = next(iter(mlservers.values())).directory.parent
    return {
        "CHARTER_SERVING_DIR": str(root),
        **{f"CHARTER_MLSERVER_{name.upper()}_PORT": str(s.http_port) for name, s in mlservers.items()},
    }


@pytest.fixture
def serving_settings(settings, mlservers):
    root = next(iter(mlservers.values())).directory.parent
    settings.SERVING_DIR = root
    settings.SERVING_LOCAL_PORTS = {name: s.http_port for name, s in mlservers.items()}
    return settings


@contextlib.contextmanager
def deploy_worker(settings, mlservers, **env):
    """A real worker on the deploy and default queues, reading the test's artifacts; its log in ``proc.log``."""
    from pathlib import Path

    media_root = Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"]).parent
    with celery_worker(queues="deploy,default", media_root=media_root, **serving_env(mlservers), **env) as proc:
        proc.log = []
        threading.Thread(target=lambda: proc.log.extend(iter(proc.stdout.readline, b"")), daemon=True).start()
        yield proc


def worker_log(proc, tail: int = 3000) -> str:
    return b"".join(proc.log).decode(errors="replace")[-tail:]


def data(seed: int = 0, n: int = 200):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    return X, (X[:, 0] - 0.5 * X[:, 1] > 0).astype(int)


def trained(seed: int) -> tuple[LogisticRegression, bytes]:
    X, y = data(seed)
    estimator = LogisticRegression(C=0.1 + seed).fit(X, y)
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return estimator, buffer.getvalue()


def oip(X) -> dict:
    X = np.asarray(X, dtype=float)
    return {"inputs": [{"name": "predict", "shape": list(X.shape), "datatype": "FP64", "data": X.ravel().tolist()}]}


def approved_version(api, users, model, seed: int, *, environments=ENVIRONMENTS, probe: dict | None = None):
    """A version of a real model registered by the author, approved for ``environments`` by the approver
    (the model's policy is NO_GATES), with a probe request set through the API."""
    from governance.approvals import services as approvals
    from governance.registry import services as registry
    from workers.artifacts import inspect_artifact

    estimator, content = trained(seed)
    with audit_context(source="cli", actor=users.author):
        version = registry.version_create(actor=users.author, model=model, artifact=make_artifact(content))
    with audit_context(source="task", actor=users.author):  # the inspection is evidence: before the review
        inspect_artifact.run(version.pk)
    with audit_context(source="cli", actor=users.author):
        request = approvals.request_review(actor=users.author, version=version, environments=list(environments))
    with audit_context(source="cli", actor=users.approver):
        approvals.request_decide(actor=users.approver, request=request, decision="approve")
    r = api.as_user(users.author).put(
        f"/api/v1/versions/{version.pk}/probe/", {"payload": probe or oip(data(seed)[0][:1])}, format="json"
    )
    assert r.status_code == 200, r.content[:300]
    version.refresh_from_db()
    assert version.stage == "approved"
    version.estimator = estimator
    return version


def predict(server: MLServerProcess, name: str, X) -> np.ndarray:
    r = requests.post(f"{server.url}/v2/models/{name}/infer", json=oip(X), timeout=10)
    assert r.status_code == 200, r.text[:300]
    out = next(o for o in r.json()["outputs"] if o["name"] == "predict")
    return np.asarray(out["data"])


def loaded(server: MLServerProcess) -> dict[str, str]:
    """The backend's own view: model name -> state, from its repository index."""
    r = requests.post(f"{server.url}/v2/repository/index", json={}, timeout=10)
    assert r.status_code == 200, r.text[:300]
    return {m["name"]: m.get("state", "") for m in r.json()}
