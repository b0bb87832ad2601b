"""Issue 13 end to end, with real parts: PostgreSQL, Redis, a real Celery worker on the ``deploy`` queue
and the two real MLServer processes of the default environments. A version is deployed to staging and
answers real predictions through the Open Inference Protocol; a second one replaces it; a rollback
brings the first back; retiring takes it off. The versions' stages, the audit trail and the "live at"
timeline say exactly what happened.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from django.utils import timezone

from governance.accounts import services as accounts
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.registry.models import ModelVersion
from governance.serving.models import Environment
from tests.conftest import wait_for
from tests.serving_support import NO_GATES, approved_version, data, deploy_worker, loaded, predict, worker_log

pytestmark = [
    pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords"),
]  # fmt: skip


@pytest.fixture
def served_model(make_model, superuser):
    from governance.approvals import services as approvals

    model = make_model("fraud-score")
    with audit_context(source="cli", actor=superuser):
        policy = approvals.policy_create(actor=superuser, name="Serving test policy", rules=NO_GATES)
        approvals.policy_assign(actor=superuser, policy=policy, model=model)
    return model


def operator_client(api, users, *scopes):
    with audit_context(source="cli", actor=users.operator):
        _, secret = accounts.token_create(actor=users.operator, name="ci", scopes=list(scopes or ("read", "deploy")))
    return api.with_token(secret)


def act(client, kind: str, version, environment: str = "staging", **headers):
    env = Environment.objects.get(name=environment)
    return client.post(
        "/api/v1/deployment-actions/", {"kind": kind, "environment": env.pk, "version": version.pk,
                                        "reason": f"{kind} for the test"}, format="json", **headers,
    )  # fmt: skip


def finished(client, action_id: int, proc, timeout: float = 90) -> dict:
    def done():
        body = client.get(f"/api/v1/deployment-actions/{action_id}/").json()
        return body if body["status"] not in ("queued", "running") else None

    body = wait_for(done, timeout=timeout, interval=0.1)
    assert body, worker_log(proc)
    return body


def stage(version) -> str:
    return ModelVersion.objects.get(pk=version.pk).stage


def test_deploy_replace_roll_back_and_retire_on_real_mlserver(api, users, served_model, serving_settings, mlservers):
    staging = mlservers["staging"]
    v1 = approved_version(api, users, served_model, seed=1)
    v2 = approved_version(api, users, served_model, seed=2)
    ci = operator_client(api, users)
    X = data(7, 5)[0]
    instants = {}
    with deploy_worker(serving_settings, mlservers) as proc:
        # deploy v1 (a retried CI call with the same Idempotency-Key gets the same action back)
        r = act(ci, "deploy", v1, HTTP_IDEMPOTENCY_KEY="pipeline-41-deploy")
        assert r.status_code == 201, r.content[:500]
        again = act(ci, "deploy", v1, HTTP_IDEMPOTENCY_KEY="pipeline-41-deploy")
        assert again.status_code == 200 and again.json()["id"] == r.json()["id"]
        first = finished(ci, r.json()["id"], proc)
        assert first["status"] == "succeeded", first
        assert first["artifact_sha256"] == v1.artifact_sha256
        assert first["gate"]["verdict"] == "pass"
        assert v1.artifact_sha256[:12] in first["steps"][2]["message"]  # checked as the bytes were handed over
        assert [s["step"] for s in first["steps"]] == ["start", "gate", "deploy", "probe", "done"]
        name1 = f"{served_model.team.slug}-fraud-score-v1"
        np.testing.assert_array_equal(predict(staging, name1, X), v1.estimator.predict(X))
        assert stage(v1) == "deployed"
        instants["v1"] = timezone.now()

        # deploy v2: v1 is unloaded (its files stay), v2 answers
        time.sleep(0.05)
        r = act(ci, "deploy", v2)
        assert r.status_code == 201, r.content[:500]
        second = finished(ci, r.json()["id"], proc)
        assert second["status"] == "succeeded", second
        name2 = f"{served_model.team.slug}-fraud-score-v2"
        assert loaded(staging).get(name2) == "READY" and name1 not in loaded(staging)
        np.testing.assert_array_equal(predict(staging, name2, X), v2.estimator.predict(X))
        assert (stage(v1), stage(v2)) == ("approved", "deployed")
        instants["v2"] = timezone.now()

        # roll back to v1: loaded again from the repository, v2 unloaded
        time.sleep(0.05)
        back = finished(ci, act(ci, "rollback", v1).json()["id"], proc)
        assert back["status"] == "succeeded", back
        assert back["rolled_back_to"] == v1.pk
        assert loaded(staging).get(name1) == "READY" and name2 not in loaded(staging)
        np.testing.assert_array_equal(predict(staging, name1, X), v1.estimator.predict(X))
        assert (stage(v1), stage(v2)) == ("deployed", "approved")
        instants["rollback"] = timezone.now()

        # retire v1: nothing of the model is live any more
        time.sleep(0.05)
        gone = finished(ci, act(ci, "retire", v1).json()["id"], proc)
        assert gone["status"] == "succeeded", gone
        assert name1 not in loaded(staging) and name2 not in loaded(staging)
        assert (stage(v1), stage(v2)) == ("retired", "approved")

    # the "live at" timeline matches what happened
    viewer = api.as_user(users.viewer)
    env = Environment.objects.get(name="staging").pk

    def live_at(instant) -> list[int]:
        r = viewer.get("/api/v1/deployments/", {"at": instant.isoformat(), "environment": env})
        assert r.status_code == 200, r.content[:300]
        return [d["version_number"] for d in r.json()["results"]]

    assert live_at(instants["v1"]) == [1]
    assert live_at(instants["v2"]) == [2]
    assert live_at(instants["rollback"]) == [1]
    assert live_at(timezone.now()) == []
    history = viewer.get("/api/v1/deployments/", {"model": served_model.pk}).json()["results"]
    assert [(d["version_number"], d["until"] is None) for d in history] == [(1, False), (2, False), (1, False)]
    assert {d["approval_request"] for d in history} >= {v1.approval_requests.get().pk, v2.approval_requests.get().pk}

    # the audit trail: each request and each outcome, the lifecycle following them
    actions = list(
        AuditEvent.objects.filter(action__startswith="serving.action").order_by("seq").values_list("action", flat=True)
    )
    assert actions == ["serving.action", "serving.action.succeeded"] * 4
    moves = [
        (int(e.object_id), json.loads(e.changes)["after"]["stage"])
        for e in AuditEvent.objects.filter(action="version.transition").order_by("seq")
    ]
    assert moves[-6:] == [
        (v1.pk, "deployed"), (v2.pk, "deployed"), (v1.pk, "approved"), (v1.pk, "deployed"), (v2.pk, "approved"),
        (v1.pk, "retired"),
    ]  # fmt: skip
    # a retired version stays readable: its artifact and its deployment history, in its evidence bundle too
    assert viewer.get(f"/api/v1/versions/{v1.pk}/artifact/").status_code == 200
    import io
    import zipfile

    r = viewer.get(f"/api/v1/versions/{v1.pk}/bundle/")
    assert r.status_code == 200
    bundle = json.loads(zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content))).read("deployments.json"))
    assert [(d["environment"], d["until"] is not None) for d in bundle["deployments"]] == [("staging", True)] * 2
    assert [(a["kind"], a["status"]) for a in bundle["actions"]] == [
        ("deploy", "succeeded"), ("rollback", "succeeded"), ("retire", "succeeded"),
    ]  # fmt: skip
    assert bundle["actions"][0]["artifact_sha256"] == v1.artifact_sha256 and bundle["actions"][0]["gate"]
