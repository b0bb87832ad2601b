"""The KServe backend against a fake Kubernetes API server (``fake_k8s``): no cluster runs here.

These tests check the manifests and the calls the backend makes through the official
``kubernetes`` client, and how it reads what KServe's controller would write back (which the
tests set by hand). They cannot tell whether a real KServe accepts and acts on them.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.engines.fake_k8s import FakeKubernetes, Inference
from workers.serving.backend import Release, ServingError, Stats, Unreachable, Unsupported
from workers.serving.kserve import KServeBackend

NS = "charter-staging"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/charter-staging/inferenceservices"


@pytest.fixture
def fake():
    server = FakeKubernetes()
    yield server
    server.close()


@pytest.fixture
def pvc(tmp_path) -> Path:
    return tmp_path / "pvc"


@pytest.fixture
def backend(fake, pvc) -> KServeBackend:
    return KServeBackend(NS, storage_uri="pvc://models/charter/{sha256}", pvc_mount=pvc, api_client=fake.client())


@pytest.fixture
def release(tmp_path):
    def make(
        number: int, *, fmt: str = "sklearn-joblib", suffix: str = ".joblib", endpoint: str = "credit-risk"
    ) -> Release:
        path = tmp_path / f"artifact-{endpoint}-{number}{suffix}"
        path.write_bytes(f"model bytes {endpoint} {number} {fmt}".encode())
        return Release(
            endpoint=endpoint,
            name=f"{endpoint}-v{number}",
            artifact_path=str(path),
            artifact_format=fmt,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            framework="sklearn",
        )

    return make


def isvc(fake) -> dict:
    return fake.get("credit-risk", namespace=NS)


def predictor(fake) -> dict:
    return isvc(fake)["spec"]["predictor"]


def verbs(requests) -> list[tuple[str, str]]:
    return [(r.method, r.path.removeprefix(ISVC)) for r in requests]


# -- deploy -----------------------------------------------------------------------------------------


def test_deploy_creates_inference_service_fake_k8s_api(fake, backend, release, pvc):
    v1 = release(1)
    backend.deploy(v1)

    (create,) = fake.writes()
    assert (create.method, create.path) == ("POST", ISVC)
    body = create.body
    assert body["apiVersion"] == "serving.kserve.io/v1beta1"
    assert body["kind"] == "InferenceService"
    assert body["metadata"]["name"] == "credit-risk"
    assert body["metadata"]["namespace"] == NS
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "charter",
        "charter.dev/endpoint": "credit-risk",
        "charter.dev/release": "credit-risk-v1",
    }
    annotations = body["metadata"]["annotations"]
    assert annotations["charter.dev/release"] == "credit-risk-v1"
    assert annotations["charter.dev/sha256"] == v1.sha256
    assert annotations["serving.kserve.io/enable-tag-routing"] == "true"
    assert body["spec"] == {
        "predictor": {
            "model": {
                "modelFormat": {"name": "sklearn"},
                "protocolVersion": "v2",
                "storageUri": f"pvc://models/charter/{v1.sha256}",
            }
        }
    }
    # The artifact reached the claim's directory, byte for byte, before the manifest was applied.
    copied = pvc / "charter" / v1.sha256 / "model.joblib"
    assert copied.read_bytes() == Path(v1.artifact_path).read_bytes()
    assert [p.name for p in copied.parent.iterdir()] == ["model.joblib"]


@pytest.mark.parametrize(
    ("fmt", "suffix", "model_format", "file_name"),
    [
        ("sklearn-joblib", ".joblib", "sklearn", "model.joblib"),
        ("xgboost", ".json", "xgboost", "model.json"),
        ("xgboost", ".ubj", "xgboost", "model.ubj"),
        ("lightgbm", ".txt", "lightgbm", "model.bst"),
        ("onnx", ".onnx", "onnx", "model.onnx"),
    ],
)
def test_model_format_per_artifact_format_fake_k8s_api(
    fake, backend, release, pvc, fmt, suffix, model_format, file_name
):
    r = release(1, fmt=fmt, suffix=suffix)
    backend.deploy(r)
    model = predictor(fake)["model"]
    assert model["modelFormat"] == {"name": model_format}
    assert model["protocolVersion"] == "v2"
    assert (pvc / "charter" / r.sha256 / file_name).read_bytes() == Path(r.artifact_path).read_bytes()


@pytest.mark.parametrize("fmt", ["skops", "pickle", "other"])
def test_formats_no_runtime_loads_are_refused_fake_k8s_api(fake, backend, release, pvc, fmt):
    caps = backend.capabilities()
    assert caps.formats == {"sklearn-joblib", "xgboost", "lightgbm", "onnx"}
    assert caps.traffic_split is True
    assert caps.metrics is False
    assert backend.metrics() == {}
    with pytest.raises(Unsupported) as e:
        backend.deploy(release(1, fmt=fmt, suffix=".bin"))
    assert e.value.code == "capability_missing"
    assert fmt in e.value.message
    assert fake.requests == []
    assert not pvc.exists()


def test_deploy_of_the_serving_release_is_a_no_op_fake_k8s_api(fake, backend, release):
    v1 = release(1)
    backend.deploy(v1)
    before = len(fake.writes())
    backend.deploy(v1)
    assert len(fake.writes()) == before
    assert verbs(fake.requests[-1:]) == [("GET", "/credit-risk")]


def test_deploy_of_a_new_release_replaces_storage_uri_without_canary_fake_k8s_api(fake, backend, release):
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    backend.set_traffic(v2, percent=10, stable=v1)
    v3 = release(3)
    backend.deploy(v3)

    patch = fake.writes()[-1]
    assert (patch.method, patch.path) == ("PATCH", f"{ISVC}/credit-risk")
    assert patch.headers["content-type"] == "application/merge-patch+json"
    assert patch.body["metadata"]["resourceVersion"]  # decided on what it read
    assert patch.body["spec"]["predictor"]["canaryTrafficPercent"] is None  # removed: 100% to the new release
    assert patch.body["spec"]["predictor"]["model"]["storageUri"] == f"pvc://models/charter/{v3.sha256}"
    stored = isvc(fake)
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert stored["metadata"]["annotations"]["charter.dev/release"] == "credit-risk-v3"
    assert stored["metadata"]["annotations"]["charter.dev/sha256"] == v3.sha256
    assert not any(k.startswith("charter.dev/stable") for k in stored["metadata"]["annotations"])
    assert stored["metadata"]["labels"]["charter.dev/release"] == "credit-risk-v3"


def test_a_conflicting_writer_makes_the_backend_read_and_decide_again_fake_k8s_api(fake, backend, release):
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    fake.fail_next("PATCH", 409, "the object has been modified; please apply your changes to the latest version")
    backend.deploy(v2)
    assert verbs(fake.requests[-4:]) == [
        ("GET", "/credit-risk"),
        ("PATCH", "/credit-risk"),
        ("GET", "/credit-risk"),
        ("PATCH", "/credit-risk"),
    ]
    assert predictor(fake)["model"]["storageUri"].endswith(v2.sha256)


def test_an_inference_service_charter_did_not_create_is_left_alone_fake_k8s_api(fake, backend, release):
    fake.put(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "credit-risk", "namespace": NS},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://theirs/"}}},
        }
    )
    with pytest.raises(ServingError) as e:
        backend.deploy(release(1))
    assert e.value.code == "endpoint_taken"
    backend.undeploy(release(1))
    assert fake.writes() == []
    assert predictor(fake)["model"]["storageUri"] == "s3://theirs/"


# -- canary, promote, rollback ----------------------------------------------------------------------


def test_canary_patch_sets_percent_and_new_storage_uri_fake_k8s_api(fake, backend, release):
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    backend.set_traffic(v2, percent=20, stable=v1)

    patch = fake.writes()[-1]
    assert patch.method == "PATCH"
    assert patch.body["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert patch.body["spec"]["predictor"]["model"]["storageUri"] == f"pvc://models/charter/{v2.sha256}"
    annotations = isvc(fake)["metadata"]["annotations"]
    assert annotations["charter.dev/release"] == "credit-risk-v2"
    assert annotations["charter.dev/stable-release"] == "credit-risk-v1"
    assert annotations["charter.dev/stable-sha256"] == v1.sha256
    assert annotations["charter.dev/stable-storage-uri"] == f"pvc://models/charter/{v1.sha256}"

    writes = len(fake.writes())
    backend.set_traffic(v2, percent=20, stable=v1)  # redelivered: nothing to do
    assert len(fake.writes()) == writes
    backend.set_traffic(v2, percent=50, stable=v1)  # a bigger share: only the percentage moves
    assert fake.writes()[-1].body["spec"] == {"predictor": {"canaryTrafficPercent": 50}}
    assert predictor(fake)["canaryTrafficPercent"] == 50


def test_canary_refused_when_its_stable_release_is_not_serving_fake_k8s_api(fake, backend, release):
    v1, v2, v3 = release(1), release(2), release(3)
    with pytest.raises(ServingError) as e:
        backend.set_traffic(v2, percent=10, stable=v1)  # nothing deployed yet
    assert e.value.code == "stable_mismatch"
    backend.deploy(v1)
    with pytest.raises(ServingError) as e:
        backend.set_traffic(v3, percent=10, stable=v2)
    assert e.value.code == "stable_mismatch"
    assert "credit-risk-v1" in e.value.message
    for bad in (-1, 101, 12.5, True):
        with pytest.raises(ServingError) as e:
            backend.set_traffic(v2, percent=bad, stable=v1)
        assert e.value.code == "invalid_traffic"
    assert len(fake.writes()) == 1  # the deploy only


def test_canary_unsupported_without_knative_fake_k8s_api(fake, pvc, release):
    raw = KServeBackend(
        NS, storage_uri="pvc://models/{sha256}", pvc_mount=pvc, api_client=fake.client(), traffic_split=False
    )
    assert raw.capabilities().traffic_split is False
    with pytest.raises(Unsupported):
        raw.set_traffic(release(2), percent=10, stable=release(1))
    assert fake.requests == []


def test_promote_removes_canary_percent_fake_k8s_api(fake, backend, release):
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    backend.set_traffic(v2, percent=30, stable=v1)
    backend.promote(v2)

    patch = fake.writes()[-1]
    assert patch.body["spec"] == {"predictor": {"canaryTrafficPercent": None}}  # JSON null: removed
    stored = predictor(fake)
    assert "canaryTrafficPercent" not in stored
    assert stored["model"]["storageUri"].endswith(v2.sha256)
    writes = len(fake.writes())
    backend.promote(v2)  # redelivered
    assert len(fake.writes()) == writes
    with pytest.raises(ServingError) as e:
        backend.promote(v1)
    assert e.value.code == "not_canary"


def test_rollback_of_a_canary_sets_percent_zero_fake_k8s_api(fake, backend, release):
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    backend.set_traffic(v2, percent=30, stable=v1)
    backend.rollback(v1, current=v2)

    patch = fake.writes()[-1]
    assert patch.body["spec"] == {"predictor": {"canaryTrafficPercent": 0}}  # storageUri untouched
    assert predictor(fake)["canaryTrafficPercent"] == 0
    assert predictor(fake)["model"]["storageUri"].endswith(v2.sha256)
    writes = len(fake.writes())
    backend.rollback(v1, current=v2)  # redelivered
    backend.deploy(v1)  # v1 already takes all the traffic
    assert len(fake.writes()) == writes

    # KServe now routes everything to the last rolled-out revision (v1's).
    fake.set_status(
        "credit-risk",
        namespace=NS,
        url="http://credit-risk.charter-staging.example.com",
        traffic=[
            {"tag": "latest", "latestRevision": True, "percent": 0, "revisionName": "credit-risk-predictor-00002"},
            {"tag": "prev", "latestRevision": False, "percent": 100, "revisionName": "credit-risk-predictor-00001"},
        ],
    )
    shares = {loaded.name: loaded.traffic_percent for loaded in backend.status()}
    assert shares == {"credit-risk-v1": 100, "credit-risk-v2": 0}


def test_rollback_after_promotion_points_storage_uri_back_fake_k8s_api(fake, backend, release):
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    backend.set_traffic(v2, percent=30, stable=v1)
    backend.promote(v2)
    backend.rollback(v1, current=v2)

    patch = fake.writes()[-1]
    assert patch.body["spec"]["predictor"]["canaryTrafficPercent"] is None
    assert patch.body["spec"]["predictor"]["model"]["storageUri"] == f"pvc://models/charter/{v1.sha256}"
    stored = isvc(fake)
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert stored["metadata"]["annotations"]["charter.dev/release"] == "credit-risk-v1"
    assert stored["metadata"]["annotations"]["charter.dev/sha256"] == v1.sha256


# -- undeploy ---------------------------------------------------------------------------------------


def test_undeploy_deletes_the_inference_service_and_is_idempotent_fake_k8s_api(fake, backend, release):
    v1 = release(1)
    backend.deploy(v1)
    backend.undeploy(release(7))  # a release this endpoint does not serve: nothing happens
    assert len(fake.writes()) == 1
    version = isvc(fake)["metadata"]["resourceVersion"]

    backend.undeploy(v1)
    delete = fake.writes()[-1]
    assert (delete.method, delete.path) == ("DELETE", f"{ISVC}/credit-risk")
    assert delete.body["preconditions"] == {"resourceVersion": version}
    assert isvc(fake) is None

    backend.undeploy(v1)  # gone already: a no-op, no error
    assert len(fake.writes()) == 2
    assert verbs(fake.requests[-1:]) == [("GET", "/credit-risk")]


def test_undeploy_whose_delete_finds_nothing_is_fine_fake_k8s_api(fake, backend, release):
    v1 = release(1)
    backend.deploy(v1)
    fake.fail_next("DELETE", 404, 'inferenceservices.serving.kserve.io "credit-risk" not found')
    backend.undeploy(v1)


def test_undeploy_of_a_canary_points_the_spec_back_at_its_stable_release_fake_k8s_api(fake, backend, release):
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    backend.set_traffic(v2, percent=10, stable=v1)
    with pytest.raises(ServingError) as e:
        backend.undeploy(v1)  # the stable one while the canary takes 10%
    assert e.value.code == "release_in_use"

    backend.undeploy(v2)
    patch = fake.writes()[-1]
    assert patch.body["spec"]["predictor"]["canaryTrafficPercent"] == 0  # no traffic moves off v1
    assert patch.body["spec"]["predictor"]["model"]["storageUri"] == f"pvc://models/charter/{v1.sha256}"
    assert isvc(fake)["metadata"]["annotations"]["charter.dev/release"] == "credit-risk-v1"

    backend.undeploy(v1)  # v1 now serves all of it: the InferenceService goes
    assert fake.writes()[-1].method == "DELETE"
    assert isvc(fake) is None


# -- status and predict -----------------------------------------------------------------------------


def test_status_parses_ready_and_traffic_fake_k8s_api(fake, backend, release):
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    assert [(x.name, x.ready, x.traffic_percent) for x in backend.status()] == [("credit-risk-v1", False, None)]

    fake.set_status(
        "credit-risk",
        namespace=NS,
        url="http://credit-risk.example.com",
        traffic=[{"latestRevision": True, "percent": 100}],
    )
    (loaded,) = backend.status()
    assert (loaded.name, loaded.endpoint, loaded.ready, loaded.traffic_percent) == (
        "credit-risk-v1",
        "credit-risk",
        True,
        100,
    )

    backend.set_traffic(v2, percent=25, stable=v1)
    # The status KServe wrote for the previous spec is stale now: v2 is not ready yet.
    stale = {x.name: x for x in backend.status()}
    assert (stale["credit-risk-v2"].ready, stale["credit-risk-v2"].traffic_percent) == (False, None)
    assert "not yet acted" in stale["credit-risk-v2"].reason
    assert (stale["credit-risk-v1"].ready, stale["credit-risk-v1"].traffic_percent) == (True, None)

    fake.set_status(
        "credit-risk",
        namespace=NS,
        ready=False,
        message="Revision credit-risk-predictor-00002 failed with message: model failed to load",
        url="http://credit-risk.example.com",
        latest_created="credit-risk-predictor-00002",
        latest_ready="credit-risk-predictor-00001",
        traffic=[
            {"tag": "latest", "latestRevision": True, "percent": 25},
            {"tag": "prev", "latestRevision": False, "percent": 75, "revisionName": "credit-risk-predictor-00001"},
        ],
    )
    loaded = {x.name: x for x in backend.status()}
    assert (loaded["credit-risk-v2"].ready, loaded["credit-risk-v2"].traffic_percent) == (False, 25)
    assert "not ready" in loaded["credit-risk-v2"].reason
    assert (loaded["credit-risk-v1"].ready, loaded["credit-risk-v1"].traffic_percent) == (True, 75)

    fake.set_status(
        "credit-risk",
        namespace=NS,
        ready=False,
        message="model failed to load",
        traffic=[
            {"tag": "latest", "latestRevision": True, "percent": 25},
            {"tag": "prev", "latestRevision": False, "percent": 75, "revisionName": "credit-risk-predictor-00001"},
        ],
    )
    assert {x.name: x.reason for x in backend.status()}["credit-risk-v2"] == "model failed to load"


def test_status_lists_inference_services_charter_did_not_create_fake_k8s_api(fake, backend, release):
    backend.deploy(release(1))
    fake.put({"kind": "InferenceService", "metadata": {"name": "fraud", "namespace": NS}, "spec": {}})
    fake.put({"kind": "InferenceService", "metadata": {"name": "elsewhere", "namespace": "other-ns"}, "spec": {}})
    fake.set_status("fraud", namespace=NS, traffic=[{"latestRevision": True, "percent": 100}])
    loaded = {x.name: x for x in backend.status()}
    assert set(loaded) == {"credit-risk-v1", "fraud"}
    assert (loaded["fraud"].ready, loaded["fraud"].traffic_percent) == (True, 100)
    assert "not deployed by charter" in loaded["fraud"].reason.lower()


def test_predict_posts_oip_to_the_inference_service_url_fake_k8s_api(fake, backend, release):
    v1 = release(1)
    backend.deploy(v1)
    fake.set_status(
        "credit-risk",
        namespace=NS,
        url=f"{fake.url}/isvc/credit-risk",
        traffic=[{"latestRevision": True, "percent": 100}],
    )
    payload = {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [0.5, 1.5]}]}

    answer = backend.predict("credit-risk-v1", payload, timeout=5)

    assert answer == fake.infer.body
    infer = fake.requests[-1]
    assert (infer.method, infer.path) == ("POST", "/isvc/credit-risk/v2/models/credit-risk/infer")
    assert infer.body == payload


def test_predict_reaches_each_release_of_a_canary_on_its_tag_url_fake_k8s_api(fake, backend, release):
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    backend.set_traffic(v2, percent=10, stable=v1)
    fake.set_status(
        "credit-risk",
        namespace=NS,
        url=f"{fake.url}/both",
        traffic=[
            {"tag": "latest", "latestRevision": True, "percent": 10, "url": f"{fake.url}/latest"},
            {"tag": "prev", "latestRevision": False, "percent": 90, "url": f"{fake.url}/prev"},
        ],
    )
    backend.predict("credit-risk-v2", {"inputs": []})
    backend.predict("credit-risk-v1", {"inputs": []})
    assert [r.path for r in fake.requests if r.path.endswith("/infer")] == [
        "/latest/v2/models/credit-risk/infer",
        "/prev/v2/models/credit-risk/infer",
    ]

    # Without tag URLs, one release of a pair cannot be reached on its own: refused, not guessed.
    fake.set_status(
        "credit-risk",
        namespace=NS,
        url=f"{fake.url}/both",
        traffic=[{"latestRevision": True, "percent": 10}, {"latestRevision": False, "percent": 90}],
    )
    with pytest.raises(ServingError) as e:
        backend.predict("credit-risk-v2", {"inputs": []})
    assert e.value.code == "predict_failed"


def test_predict_through_an_ingress_sends_the_service_host_fake_k8s_api(fake, pvc, release):
    backend = KServeBackend(
        NS, storage_uri="pvc://m/{sha256}", pvc_mount=pvc, api_client=fake.client(), ingress_url=fake.url
    )
    backend.deploy(release(1))
    fake.set_status("credit-risk", namespace=NS, url="http://credit-risk.charter-staging.example.com")
    backend.predict("credit-risk-v1", {"inputs": []})
    infer = fake.requests[-1]
    assert infer.path == "/v2/models/credit-risk/infer"
    assert infer.headers["host"] == "credit-risk.charter-staging.example.com"


def test_predict_failures_are_predict_failed_without_the_model_answer_fake_k8s_api(fake, backend, release):
    backend.deploy(release(1))
    with pytest.raises(ServingError) as e:
        backend.predict("credit-risk-v1", {"inputs": []})  # no URL yet
    assert e.value.code == "predict_failed"

    fake.set_status("credit-risk", namespace=NS, url=f"{fake.url}/isvc")
    fake.infer.status, fake.infer.body = 500, {"error": "cannot score row [4111-1111-1111-1111, 52000]"}
    with pytest.raises(ServingError) as e:
        backend.predict("credit-risk-v1", {"inputs": []})
    assert e.value.code == "predict_failed"
    assert "500" in e.value.message and "4111" not in e.value.message

    with pytest.raises(ServingError) as e:
        backend.predict("credit-risk-v9", {"inputs": []})
    assert e.value.code == "predict_failed"

    fake.set_status("credit-risk", namespace=NS, url=f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(ServingError) as e:
        backend.predict("credit-risk-v1", {"inputs": []}, timeout=2)
    assert e.value.code == "predict_failed"


def test_predict_refuses_a_release_whose_revision_is_not_ready_fake_k8s_api(fake, backend, release):
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    fake.set_status(
        "credit-risk", namespace=NS, url=f"{fake.url}/isvc", traffic=[{"latestRevision": True, "percent": 100}]
    )
    backend.deploy(v2)
    # KServe has not acted on v2 yet: the URL still reaches v1, so a "v2" answer would be v1's.
    with pytest.raises(ServingError) as e:
        backend.predict("credit-risk-v2", {"inputs": []})
    assert e.value.code == "predict_failed" and "not ready" in e.value.message

    fake.set_status(
        "credit-risk",
        namespace=NS,
        url=f"{fake.url}/isvc",
        latest_created="credit-risk-predictor-00002",
        latest_ready="credit-risk-predictor-00001",
        traffic=[{"latestRevision": True, "percent": 100}],
    )
    with pytest.raises(ServingError) as e:
        backend.predict("credit-risk-v2", {"inputs": []})
    assert e.value.code == "predict_failed" and "credit-risk-predictor-00002" in e.value.message
    assert not [r for r in fake.requests if r.path.endswith("/infer")]


# -- request figures from the cluster's Prometheus --------------------------------------------------


@pytest.fixture
def cluster():
    """The fake API server playing KServe's controller and the cluster's Prometheus."""
    server = FakeKubernetes(controller=True)
    yield server
    server.close()


def with_prometheus(server, pvc, *, namespace: str = NS, **settings) -> KServeBackend:
    return KServeBackend(
        namespace,
        storage_uri="pvc://models/charter/{sha256}",
        pvc_mount=pvc,
        api_client=server.client(),
        prometheus_url=server.url,
        **settings,
    )


def predict(backend, name: str, times: int) -> None:
    for _ in range(times):
        try:
            backend.predict(name, {"inputs": []}, timeout=5)
        except ServingError as e:  # a broken release answers HTTP 500: counted all the same
            assert e.code == "predict_failed" and "500" in e.message


def test_canary_figures_per_release_from_prometheus_fake_k8s_api(cluster, pvc, release):
    backend = with_prometheus(cluster, pvc)
    assert backend.capabilities().metrics is True
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    assert backend.metrics() == {"credit-risk-v1": Stats("credit-risk-v1", 0, 0, 0.0, {})}  # routed, nothing served

    backend.set_traffic(v2, percent=25, stable=v1)
    # The same endpoint in another namespace, with the same revision names: none of its figures count here.
    elsewhere = with_prometheus(cluster, pvc, namespace="charter-other")
    elsewhere.deploy(v1)
    predict(elsewhere, "credit-risk-v1", 7)

    cluster.latency_ms["credit-risk-predictor-00002"] = 40.0
    predict(backend, "credit-risk-v2", 3)  # the canary, on its "latest" tag URL
    cluster.broken.add(f"pvc://models/charter/{v2.sha256}")
    cluster.latency_ms["credit-risk-predictor-00002"] = 300.0
    predict(backend, "credit-risk-v2", 1)  # HTTP 500: an error
    predict(backend, "credit-risk-v1", 5)  # the stable release, on its "prev" tag URL
    assert {(i.namespace, i.tag, i.revision) for i in cluster.inferences if i.namespace == NS} == {
        (NS, "latest", "credit-risk-predictor-00002"),
        (NS, "prev", "credit-risk-predictor-00001"),
    }

    figures = backend.metrics()

    assert set(figures) == {"credit-risk-v1", "credit-risk-v2"}
    canary, stable = figures["credit-risk-v2"], figures["credit-risk-v1"]
    assert (canary.name, canary.requests, canary.errors) == ("credit-risk-v2", 4, 1)
    assert canary.duration_seconds_sum / canary.requests == pytest.approx((3 * 0.040 + 0.300) / 4)
    assert canary.buckets[0.025] == 0 and canary.buckets[0.05] == 3 and canary.buckets[0.5] == 4
    assert canary.buckets[float("inf")] == 4
    assert canary.p95_seconds() == 0.5  # 3.8 of 4 requests: only the 500 ms bucket holds them
    assert (stable.requests, stable.errors) == (5, 0)  # not the 7 of charter-other's v1
    assert stable.duration_seconds_sum / stable.requests == pytest.approx(0.005)
    assert stable.p95_seconds() == 0.005
    queries = cluster.queries()
    assert len(queries) == 6 and all('namespace_name="charter-staging"' in q for q in queries)
    assert any("revision_request_count" in q for q in queries)
    assert any("revision_request_latencies_bucket" in q for q in queries)

    # Promoted: v1's revision is routed no more, and Charter names no revision it does not know.
    backend.promote(v2)
    assert set(backend.metrics()) == {"credit-risk-v2"}


def test_metrics_leave_out_a_revision_that_is_not_certainly_the_release_fake_k8s_api(fake, pvc, release):
    backend = with_prometheus(fake, pvc)
    v1, v2 = release(1), release(2)
    backend.deploy(v1)
    fake.set_status(
        "credit-risk",
        namespace=NS,
        latest_created="credit-risk-predictor-00001",
        latest_ready="credit-risk-predictor-00001",
        traffic=[{"latestRevision": True, "percent": 100, "revisionName": "credit-risk-predictor-00001"}],
    )
    fake.inferences += [
        Inference(NS, "credit-risk", "", "credit-risk-predictor-00001", "pvc://v1", 200, {}, latency_ms=5.0)
    ] * 3
    assert backend.metrics()["credit-risk-v1"].requests == 3

    backend.deploy(v2)  # KServe has not acted on it yet: the "latest" traffic still reaches v1's revision
    assert backend.metrics() == {}
    fake.set_status(
        "credit-risk",
        namespace=NS,
        ready=False,
        latest_created="credit-risk-predictor-00002",
        latest_ready="credit-risk-predictor-00001",
        traffic=[{"latestRevision": True, "percent": 100, "revisionName": "credit-risk-predictor-00001"}],
    )
    assert backend.metrics() == {}  # v2's revision is not ready: v1's answers for it, not to be counted as v2's
    fake.set_status(
        "credit-risk",
        namespace=NS,
        latest_created="credit-risk-predictor-00002",
        latest_ready="credit-risk-predictor-00002",
        traffic=[{"latestRevision": True, "percent": 100, "revisionName": "credit-risk-predictor-00002"}],
    )
    assert backend.metrics() == {"credit-risk-v2": Stats("credit-risk-v2", 0, 0, 0.0, {})}


def test_metrics_without_prometheus_url_are_empty_fake_k8s_api(cluster, pvc, release):
    backend = KServeBackend(NS, storage_uri="pvc://m/{sha256}", pvc_mount=pvc, api_client=cluster.client())
    backend.deploy(release(1))
    predict(backend, "credit-risk-v1", 2)
    assert backend.capabilities().metrics is False
    before = len(cluster.requests)
    assert backend.metrics() == {}
    assert len(cluster.requests) == before  # neither the API server nor Prometheus asked


def test_prometheus_unreachable_is_unreachable_fake_k8s_api(cluster, pvc, release):
    backend = KServeBackend(
        NS,
        storage_uri="pvc://m/{sha256}",
        pvc_mount=pvc,
        api_client=cluster.client(),
        prometheus_url=f"http://127.0.0.1:{_closed_port()}",
        request_timeout=2,
    )
    backend.deploy(release(1))
    with pytest.raises(Unreachable) as e:
        backend.metrics()
    assert e.value.code == "backend_unreachable"
    assert "Prometheus" in e.value.message and "cannot be reached" in e.value.message


@pytest.fixture
def html_server():
    """A server answering every request with an HTML page (a proxy's login page, say)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            page = b"<html><body>Sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_prometheus_answering_an_error_is_a_serving_error_fake_k8s_api(cluster, pvc, release, html_server):
    backend = with_prometheus(cluster, pvc)
    backend.deploy(release(1))
    cluster.fail_next_query(422, "execution", "query processing would load too many samples into memory")
    with pytest.raises(ServingError) as e:
        backend.metrics()
    assert not isinstance(e.value, Unreachable)
    assert e.value.code == "metrics_failed"
    assert "too many samples" in e.value.message and "422" in e.value.message

    proxied = KServeBackend(
        NS, storage_uri="pvc://m/{sha256}", pvc_mount=pvc, api_client=cluster.client(), prometheus_url=html_server
    )
    with pytest.raises(ServingError) as e:
        proxied.metrics()
    assert not isinstance(e.value, Unreachable)
    assert e.value.code == "metrics_failed"
    assert "other than its JSON" in e.value.message and "Sign in" not in e.value.message


def test_from_settings_reads_the_prometheus_settings_fake_k8s_api(cluster, pvc, release):
    config = {
        "namespace": NS, "storage_uri": "pvc://m/{sha256}", "pvc_mount": str(pvc),
        "prometheus_url": cluster.url + "/api/v1/",  # the API's own path is tolerated
        "request_count_metric": "knative_revision_request_count",
        "request_latency_metric": "knative_revision_request_latencies",
    }  # fmt: skip
    backend = KServeBackend.from_settings(url=cluster.url, config=config, credentials="t0ken")
    assert backend.capabilities().metrics is True
    backend.deploy(release(1))
    predict(backend, "credit-risk-v1", 2)
    # The fake's Prometheus has the Knative names only: the overriding names find nothing.
    assert backend.metrics() == {"credit-risk-v1": Stats("credit-risk-v1", 0, 0, 0.0, {})}
    queries = cluster.queries()
    assert [q.split("(")[-1].split("{")[0] for q in queries] == [
        "knative_revision_request_count",
        "knative_revision_request_latencies_bucket",
        "knative_revision_request_latencies_sum",
    ]
    assert all(r.path == "/api/v1/query" for r in cluster.requests if "query" in r.query)


@pytest.mark.parametrize(
    "bad",
    [
        {"prometheus_url": "prometheus.monitoring:9090"},
        {"prometheus_url": "ftp://prometheus.monitoring"},
        {"prometheus_url": "http://"},
        {"prometheus_url": "http://prometheus:99999"},
        {"prometheus_url": "http://prometheus monitoring:9090"},
        {"prometheus_url": "https://admin:hunter2@prometheus.monitoring:9090"},
        {"prometheus_url": "http://prometheus:9090/?token=hunter2"},
        {"prometheus_url": 9090},
        {"prometheus_url": "http://prometheus:9090", "request_count_metric": "revision-request-count"},
        {"prometheus_url": "http://prometheus:9090", "request_latency_metric": ""},
        {"prometheus_url": "http://prometheus:9090", "request_latency_metric": 5},
    ],
)
def test_from_settings_rejects_a_bad_prometheus_url_fake_k8s_api(fake, pvc, bad):
    config = {"namespace": NS, "storage_uri": "pvc://m/{sha256}", "pvc_mount": str(pvc)} | bad
    with pytest.raises(ServingError) as e:
        KServeBackend.from_settings(url=fake.url, config=config)
    assert e.value.code == "backend_misconfigured"
    assert "Unknown" not in e.value.message  # refused for what it holds: the names are known settings
    assert "hunter2" not in e.value.message
    assert fake.requests == []


# -- refusals and faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint", ["Credit-Risk", "1credit", "credit_risk", "credit.risk", "-credit", "credit-", "", "c" * 48]
)
def test_bad_endpoint_name_refused_fake_k8s_api(fake, backend, release, endpoint):
    bad = release(1)
    bad = Release(
        endpoint=endpoint,
        name="credit-v1",
        artifact_path=bad.artifact_path,
        artifact_format=bad.artifact_format,
        sha256=bad.sha256,
    )
    for action in (backend.deploy, backend.undeploy, backend.promote):
        with pytest.raises(ServingError) as e:
            action(bad)
        assert e.value.code == "invalid_name"
    assert fake.requests == []


def test_longest_endpoint_name_accepted_fake_k8s_api(fake, backend, release):
    backend.deploy(release(1, endpoint="c" * 47))
    assert fake.get("c" * 47, namespace=NS) is not None


def test_api_server_down_is_unreachable_fake_k8s_api(pvc, release):
    client = k8s.ApiClient(k8s.Configuration(host=f"http://127.0.0.1:{_closed_port()}"))
    backend = KServeBackend(NS, storage_uri="pvc://m/{sha256}", pvc_mount=pvc, api_client=client, request_timeout=2)
    for call in (lambda: backend.deploy(release(1)), backend.status, lambda: backend.undeploy(release(1))):
        with pytest.raises(Unreachable) as e:
            call()
        assert e.value.code == "backend_unreachable"
        assert "cannot be reached" in e.value.message
    assert not pvc.exists()  # nothing uploaded for a deploy that never got an answer


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (
            403,
            'inferenceservices.serving.kserve.io is forbidden: User "system:serviceaccount:charter:worker" cannot create resource',
        ),
        (
            422,
            'InferenceService.serving.kserve.io "credit-risk" is invalid: spec.predictor: Required value: exactly one model',
        ),
    ],
)
def test_api_rejection_is_a_serving_error_with_its_message_fake_k8s_api(fake, backend, release, status, message):
    fake.fail_next("POST", status, message)
    with pytest.raises(ServingError) as e:
        backend.deploy(release(1))
    assert not isinstance(e.value, Unreachable)
    assert e.value.code == "api_rejected"
    assert message in e.value.message and str(status) in e.value.message
    assert isvc(fake) is None


def test_a_cluster_without_kserve_says_so_fake_k8s_api(fake, backend):
    fake.fail_next("GET", 404, "the server could not find the requested resource")
    with pytest.raises(ServingError) as e:
        backend.status()
    assert e.value.code == "api_rejected"
    assert "KServe installed" in e.value.message


# -- the storage seam -------------------------------------------------------------------------------


def test_storage_uri_needs_sha256_and_an_uploader_fake_k8s_api(fake, pvc):
    for uri, mount in (
        ("pvc://models/charter/latest", pvc),
        ("s3://bucket/{sha256}", None),
        ("pvc://m/{sha256}", None),
        ("pvc://m/{sha256}/{secret}", pvc),
    ):
        with pytest.raises(ServingError) as e:
            KServeBackend(NS, storage_uri=uri, pvc_mount=mount, api_client=fake.client())
        assert e.value.code == "backend_misconfigured"
    with pytest.raises(ServingError):
        KServeBackend("Not_A_Namespace", storage_uri="pvc://m/{sha256}", pvc_mount=pvc, api_client=fake.client())


def test_a_custom_uploader_gets_the_file_and_the_uri_fake_k8s_api(fake, release):
    calls = []
    backend = KServeBackend(
        NS,
        storage_uri="s3://bucket/charter/{endpoint}/{sha256}/",
        uploader=lambda source, uri, sha256: calls.append((source, uri, sha256)),
        api_client=fake.client(),
        service_account="charter-s3-reader",
    )
    v1 = release(1)
    backend.deploy(v1)
    assert calls == [(Path(v1.artifact_path), f"s3://bucket/charter/credit-risk/{v1.sha256}/model.joblib", v1.sha256)]
    assert predictor(fake)["model"]["storageUri"] == f"s3://bucket/charter/credit-risk/{v1.sha256}"
    assert predictor(fake)["serviceAccountName"] == "charter-s3-reader"
    backend.deploy(v1)
    assert len(calls) == 1  # a no-op deploy uploads nothing


def test_artifact_bytes_that_do_not_match_the_digest_are_not_deployed_fake_k8s_api(fake, backend, release, pvc):
    v1 = release(1)
    Path(v1.artifact_path).write_bytes(b"changed after verification")
    with pytest.raises(ServingError) as e:
        backend.deploy(v1)
    assert e.value.code == "artifact_digest_mismatch"
    assert fake.writes() == []
    assert not (pvc / "charter" / v1.sha256 / "model.joblib").exists()
    assert list((pvc / "charter" / v1.sha256).iterdir()) == []  # no temporary file left behind


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- settings from a stored backend row -------------------------------------------------------------


def test_from_settings_sends_the_bearer_token_fake_k8s_api(fake, pvc, release):
    backend = KServeBackend.from_settings(
        url=fake.url,
        config={"namespace": NS, "storage_uri": "pvc://models/{sha256}", "pvc_mount": str(pvc)},
        credentials="s3cr3t-token",
    )
    backend.status()
    assert fake.requests[-1].headers["authorization"] == "Bearer s3cr3t-token"


def test_from_settings_uses_a_stored_kubeconfig_fake_k8s_api(fake, pvc):
    kubeconfig = f"""
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{server: "{fake.url}"}}
users:
- name: worker
  user: {{token: from-kubeconfig}}
contexts:
- name: charter
  context: {{cluster: fake, user: worker, namespace: {NS}}}
current-context: charter
"""
    config = {"namespace": NS, "storage_uri": "pvc://models/{sha256}", "pvc_mount": str(pvc)}
    KServeBackend.from_settings(url=fake.url, config=config, credentials=kubeconfig).status()
    assert fake.requests[-1].headers["authorization"] == "Bearer from-kubeconfig"

    with pytest.raises(ServingError) as e:
        KServeBackend.from_settings(url="https://elsewhere:6443", config=config, credentials=kubeconfig)
    assert e.value.code == "backend_misconfigured"
    assert "elsewhere" in e.value.message


@pytest.mark.parametrize(
    ("config", "credentials"),
    [
        ({"storage_uri": "pvc://m/{sha256}", "pvc_mount": "/mnt"}, ""),  # no namespace
        ({"namespace": NS, "storage_uri": "pvc://m/{sha256}", "pvc_mount": "/mnt", "typo": 1}, ""),
        ({"namespace": NS, "storage_uri": "s3://bucket/{sha256}"}, ""),  # no uploader for s3 from settings
        ({"namespace": NS, "storage_uri": "pvc://m/{sha256}", "pvc_mount": "/mnt", "request_timeout": "soon"}, ""),
        ({"namespace": NS, "storage_uri": "pvc://m/{sha256}", "pvc_mount": "/mnt"}, "not a token"),
    ],
)
def test_from_settings_refuses_incomplete_settings_fake_k8s_api(fake, config, credentials):
    with pytest.raises(ServingError) as e:
        KServeBackend.from_settings(url=fake.url, config=config, credentials=credentials)
    assert e.value.code == "backend_misconfigured"
    assert fake.requests == []
