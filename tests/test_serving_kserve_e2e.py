"""Issue 13 on KServe, end to end through the public API and a real Celery worker — against a FAKE
Kubernetes API server (``tests/engines/fake_k8s.py`` in controller mode), because no cluster runs here.

A site administrator registers a ``kserve`` backend whose URL is the fake API server (the worker, a
separate process, reaches it over HTTP with the stored bearer token) and an environment ``k8s-prod`` on
it; an operator's CI token then deploys, canaries, promotes, rolls back and retires approved versions.
The fake plays KServe's controller: each write to the InferenceService makes it ready at once with a
revision per ``storageUri``, the traffic split ``canaryTrafficPercent`` asks for, and tag URLs whose
inference requests it answers itself (HTTP 500 for a release marked broken). So these tests show the
worker's manifests, its probes and its automatic rollback on KServe's API; they cannot show that a
real KServe accepts those manifests or that a real predictor loads the artifact.

Real parts: PostgreSQL, Redis, a real worker on the ``deploy`` queue, the KServe driver and the
official ``kubernetes`` client over HTTP.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from django.conf import settings as django_settings

from governance.approvals import services as approvals
from governance.approvals.models import Policy
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.registry.models import ModelVersion
from governance.serving.models import ServingBackend
from tests.conftest import assert_error, celery_worker
from tests.serving_support import approved_version, worker_log
from tests.test_serving_e2e import act, finished, operator_client

pytestmark = [
    pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords"),
]  # fmt: skip

NAMESPACE = "charter-prod"
ENVIRONMENT = "k8s-prod"
CANARY_PERCENT = 25
RULES = {
    "environments": {e: {"min_approvals": 1, "roles": [{"role": "approver"}]} for e in (ENVIRONMENT, "staging")},
    "gates": [],
}


@pytest.fixture
def kserve(api, users, superuser, make_model, fake_k8s, tmp_path):
    """The KServe backend and its environment, made by a site administrator through the API, a policy
    covering the environment (made after it: a policy names only environments that exist), and a model."""
    token = "k8s-bearer-" + secrets.token_urlsafe(24)
    pvc = tmp_path / "pvc-charter-models"
    admin = api.as_user(superuser)
    r = admin.post("/api/v1/serving-backends/", {
        "name": "kserve-prod", "kind": "kserve", "url": fake_k8s.url, "credentials": token,
        "config": {"namespace": NAMESPACE, "storage_uri": "pvc://charter-models/{sha256}", "pvc_mount": str(pvc)},
    }, format="json")  # fmt: skip
    assert r.status_code == 201, r.content[:500]
    backend = r.json()
    r = admin.post("/api/v1/environments/", {"name": ENVIRONMENT, "backend": backend["id"],
                                             "canary_percent": CANARY_PERCENT}, format="json")  # fmt: skip
    assert r.status_code == 201, r.content[:500]
    environment = r.json()
    r = admin.post("/api/v1/policies/", {"name": "KServe policy", "rules": RULES}, format="json")
    assert r.status_code == 201, r.content[:500]
    model = make_model("fraud-score")
    with audit_context(source="cli", actor=superuser):
        approvals.policy_assign(actor=superuser, policy=Policy.objects.get(pk=r.json()["id"]), model=model)
    return SimpleNamespace(token=token, pvc=pvc, backend=backend, environment=environment, model=model,
                           isvc=f"{model.team.slug}-fraud-score")  # fmt: skip


@contextlib.contextmanager
def kserve_worker(settings):
    """A real worker on the deploy and default queues, reading the test's artifacts; its log in ``proc.log``
    (still readable after the block)."""
    media_root = Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"]).parent
    with celery_worker(queues="deploy,default", media_root=media_root) as proc:
        proc.log = []
        threading.Thread(target=lambda: proc.log.extend(iter(proc.stdout.readline, b"")), daemon=True).start()
        yield proc


def storage_uri(version) -> str:
    return f"pvc://charter-models/{version.artifact_sha256}"


def predictor(fake, kserve) -> dict:
    isvc = fake.get(kserve.isvc, namespace=NAMESPACE)
    assert isvc is not None, f"no InferenceService {kserve.isvc} in {NAMESPACE}"
    return isvc["spec"]["predictor"]


def current(client, kserve) -> list[tuple[int, str, int]]:
    """What the API says is live now in the KServe environment: (version number, state, traffic share)."""
    r = client.get("/api/v1/deployments/", {"current": "true", "environment": kserve.environment["id"]})
    assert r.status_code == 200, r.content[:300]
    return sorted((d["version_number"], d["state"], d["traffic_percent"]) for d in r.json()["results"])


def stage(version) -> str:
    return ModelVersion.objects.get(pk=version.pk).stage


def probed(fake, version) -> list[int]:
    """The HTTP statuses of the inference requests the fake's routing sent to ``version``'s release."""
    return [i.status for i in fake.inferences if i.storage_uri == storage_uri(version)]


def test_deploy_canary_promote_rollback_retire_fake_k8s_api(api, users, kserve, fake_k8s, settings):
    v1 = approved_version(api, users, kserve.model, seed=1, environments=(ENVIRONMENT, "staging"))
    v2 = approved_version(api, users, kserve.model, seed=2, environments=(ENVIRONMENT, "staging"))
    ci = operator_client(api, users)
    viewer = api.as_user(users.viewer)
    with kserve_worker(settings) as proc:
        # 1. deploy v1: an InferenceService on v1's storageUri, the verified bytes on the claim
        first = finished(ci, act(ci, "deploy", v1, ENVIRONMENT).json()["id"], proc)
        assert first["status"] == "succeeded", (first, worker_log(proc))
        assert first["artifact_sha256"] == v1.artifact_sha256
        assert [s["step"] for s in first["steps"]] == ["start", "gate", "deploy", "probe", "done"]
        spec = predictor(fake_k8s, kserve)
        assert spec["model"]["storageUri"] == storage_uri(v1)
        assert spec["model"]["modelFormat"] == {"name": "sklearn"} and "canaryTrafficPercent" not in spec
        copied = kserve.pvc / v1.artifact_sha256 / "model.joblib"
        assert hashlib.sha256(copied.read_bytes()).hexdigest() == v1.artifact_sha256
        stored = Path(django_settings.STORAGES["artifacts"]["OPTIONS"]["location"]) / v1.artifact_path
        assert copied.read_bytes() == stored.read_bytes()
        assert probed(fake_k8s, v1) == [200]  # the worker's probe reached v1's revision
        assert current(viewer, kserve) == [(1, "live", 100)]
        assert stage(v1) == "deployed"

        # 2. canary v2: the environment's share on v2's storageUri, v1 serving the rest
        canary = finished(ci, act(ci, "canary", v2, ENVIRONMENT).json()["id"], proc)
        assert canary["status"] == "succeeded", (canary, worker_log(proc))
        spec = predictor(fake_k8s, kserve)
        assert spec["canaryTrafficPercent"] == CANARY_PERCENT
        assert spec["model"]["storageUri"] == storage_uri(v2)
        assert (kserve.pvc / v2.artifact_sha256 / "model.joblib").is_file()
        traffic = fake_k8s.get(kserve.isvc, namespace=NAMESPACE)["status"]["components"]["predictor"]["traffic"]
        assert sorted((t["tag"], t["percent"]) for t in traffic) == [("latest", CANARY_PERCENT),
                                                                     ("prev", 100 - CANARY_PERCENT)]  # fmt: skip
        assert probed(fake_k8s, v2) == [200]  # probed on its own tag URL, not through the split
        now = current(viewer, kserve)
        # the record says what the backend routes: the live version keeps the rest of the traffic
        assert now == [(1, "live", 100 - CANARY_PERCENT), (2, "canary", CANARY_PERCENT)]
        assert (stage(v1), stage(v2)) == ("deployed", "deployed")

        # 3. promote v2: canaryTrafficPercent removed, v2 takes everything, v1's deployment ends
        promoted = finished(ci, act(ci, "promote", v2, ENVIRONMENT).json()["id"], proc)
        assert promoted["status"] == "succeeded", (promoted, worker_log(proc))
        spec = predictor(fake_k8s, kserve)
        assert "canaryTrafficPercent" not in spec and spec["model"]["storageUri"] == storage_uri(v2)
        assert current(viewer, kserve) == [(2, "live", 100)]
        assert (stage(v1), stage(v2)) == ("approved", "deployed")

        # 4. roll back to v1: after a promotion, storageUri points at v1 again (a new revision)
        back = finished(ci, act(ci, "rollback", v1, ENVIRONMENT).json()["id"], proc)
        assert back["status"] == "succeeded", (back, worker_log(proc))
        assert back["rolled_back_to"] == v1.pk
        spec = predictor(fake_k8s, kserve)
        assert spec["model"]["storageUri"] == storage_uri(v1) and "canaryTrafficPercent" not in spec
        assert fake_k8s.inferences[-1].storage_uri == storage_uri(v1)  # its probe reached v1's new revision
        assert current(viewer, kserve) == [(1, "live", 100)]
        assert (stage(v1), stage(v2)) == ("deployed", "approved")

        # 5. retire v1: the InferenceService is deleted
        gone = finished(ci, act(ci, "retire", v1, ENVIRONMENT).json()["id"], proc)
        assert gone["status"] == "succeeded", (gone, worker_log(proc))
        assert fake_k8s.get(kserve.isvc, namespace=NAMESPACE) is None
        assert fake_k8s.writes()[-1].method == "DELETE"
        assert current(viewer, kserve) == []
        assert (stage(v1), stage(v2)) == ("retired", "approved")

    # 7. a canary on an MLServer environment: refused at once, nothing queued
    assert_error(act(ci, "canary", v2, "staging"), 409, "capability_missing")

    # the audit trail: each request and its outcome
    outcomes = list(
        AuditEvent.objects.filter(action__startswith="serving.action.").exclude(action="serving.action.refused")
        .order_by("seq").values_list("action", flat=True)
    )  # fmt: skip
    assert outcomes == ["serving.action.succeeded"] * 5

    # the worker used the stored token on every call to the API server...
    api_calls = [r for r in fake_k8s.requests if r.path.startswith("/apis/")]
    assert api_calls and {r.headers.get("authorization") for r in api_calls} == {f"Bearer {kserve.token}"}
    # ...and it shows nowhere: API output, audit events, the action records, the worker's log, the row at rest
    listing = api.as_user(users.superuser).get("/api/v1/serving-backends/")
    assert listing.status_code == 200 and kserve.token not in listing.content.decode()
    mine = next(b for b in listing.json()["results"] if b["name"] == "kserve-prod")
    assert mine["has_credentials"] is True and "credentials" not in mine
    assert not [e.action for e in AuditEvent.objects.all() if kserve.token in e.changes]
    actions = ci.get("/api/v1/deployment-actions/").content.decode()
    assert kserve.token not in actions
    log = b"".join(proc.log).decode(errors="replace")
    assert "run_action" in log and kserve.token not in log
    assert kserve.token not in ServingBackend.objects.get(name="kserve-prod").credentials_encrypted


def test_a_canary_that_fails_its_probe_rolls_back_by_itself_fake_k8s_api(api, users, kserve, fake_k8s, settings):
    v1 = approved_version(api, users, kserve.model, seed=1, environments=(ENVIRONMENT,))
    v2 = approved_version(api, users, kserve.model, seed=2, environments=(ENVIRONMENT,))
    ci = operator_client(api, users)
    fake_k8s.broken.add(storage_uri(v2))  # v2's revision answers every inference request with HTTP 500
    with kserve_worker(settings) as proc:
        assert finished(ci, act(ci, "deploy", v1, ENVIRONMENT).json()["id"], proc)["status"] == "succeeded"
        body = finished(ci, act(ci, "canary", v2, ENVIRONMENT).json()["id"], proc)
    assert (body["status"], body["error_code"], body["rolled_back_to"]) == ("rolled_back", "probe_failed", v1.pk), (
        body, worker_log(proc),
    )  # fmt: skip
    assert "HTTP 500" in body["error_message"]
    assert [s["step"] for s in body["steps"]][-4:] == ["canary", "health", "rollback", "rolled back"]
    # KServe's rollback: canaryTrafficPercent 0, all traffic back on v1's rolled-out revision
    spec = predictor(fake_k8s, kserve)
    assert spec["canaryTrafficPercent"] == 0
    isvc = fake_k8s.get(kserve.isvc, namespace=NAMESPACE)
    traffic = isvc["status"]["components"]["predictor"]["traffic"]
    assert {t["tag"]: t["percent"] for t in traffic} == {"latest": 0, "prev": 100}
    assert probed(fake_k8s, v2) == [500]
    # and v1 still answers on the service URL
    r = requests.post(f"{isvc['status']['url']}/v2/models/{kserve.isvc}/infer", json={"inputs": []}, timeout=10)
    assert r.status_code == 200 and fake_k8s.inferences[-1].storage_uri == storage_uri(v1)
    # the record: v1 still live, no canary, v2 never deployed
    viewer = api.as_user(users.viewer)
    assert current(viewer, kserve) == [(1, "live", 100)]
    assert (stage(v1), stage(v2)) == ("deployed", "approved")
    event = AuditEvent.objects.get(action="serving.action.rolled_back")
    assert json.loads(event.changes)["after"]["rolled_back_to"] == v1.pk


def test_a_canary_is_rolled_back_by_hand_fake_k8s_api(api, users, kserve, fake_k8s, settings):
    """Issue 13 point 6: a canary is promoted *or rolled back by hand*. Rolling back means the version
    live next to it (approved for the environment, served there) keeps all the traffic: on KServe,
    ``canaryTrafficPercent: 0``."""
    v1 = approved_version(api, users, kserve.model, seed=1, environments=(ENVIRONMENT,))
    v2 = approved_version(api, users, kserve.model, seed=2, environments=(ENVIRONMENT,))
    ci = operator_client(api, users)
    with kserve_worker(settings) as proc:
        assert finished(ci, act(ci, "deploy", v1, ENVIRONMENT).json()["id"], proc)["status"] == "succeeded"
        assert finished(ci, act(ci, "canary", v2, ENVIRONMENT).json()["id"], proc)["status"] == "succeeded"
        r = act(ci, "rollback", v1, ENVIRONMENT)
        assert r.status_code == 201, r.content[:500]
        body = finished(ci, r.json()["id"], proc)
    assert (body["status"], body["rolled_back_to"]) == ("succeeded", v1.pk), (body, worker_log(proc))
    spec = predictor(fake_k8s, kserve)
    assert spec["canaryTrafficPercent"] == 0  # KServe's rollback: the canary's revision keeps no traffic
    traffic = fake_k8s.get(kserve.isvc, namespace=NAMESPACE)["status"]["components"]["predictor"]["traffic"]
    assert {t["tag"]: t["percent"] for t in traffic} == {"latest": 0, "prev": 100}
    assert current(api.as_user(users.viewer), kserve) == [(1, "live", 100)]
    assert (stage(v1), stage(v2)) == ("deployed", "approved")
