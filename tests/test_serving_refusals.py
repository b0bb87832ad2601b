"""Issue 13: every way to get a version served without what its policy asks for is refused, with a
clear code and an audit event, and nothing changes on the backend — whether the attempt comes through
the API, or as a hand-made Celery message that skips the API and reaches the worker directly. And the
faults: an unreachable backend fails cleanly; a version that fails its probe is rolled back by itself
while the previous one keeps answering.

Real parts: PostgreSQL, Redis, a real worker on the deploy queue, the two real MLServers.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from governance.accounts import services as accounts
from governance.approvals.models import Decision
from governance.audit.models import AuditEvent
from governance.celery import app
from governance.core.context import audit_context
from governance.registry import services as registry
from governance.serving.models import Deployment, DeploymentAction, Environment
from tests.conftest import assert_error, wait_for
from tests.serving_support import (
    ENVIRONMENTS,
    NO_GATES,
    approved_version,
    data,
    deploy_worker,
    loaded,
    predict,
    worker_log,
)
from tests.test_serving_e2e import act, finished

pytestmark = [
    pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords"),
]  # fmt: skip


def _policy(model, superuser, rules=NO_GATES, name="Serving refusals policy"):
    from governance.approvals import services as approvals

    with audit_context(source="cli", actor=superuser):
        policy = approvals.policy_create(actor=superuser, name=name, rules=rules)
        approvals.policy_assign(actor=superuser, policy=policy, model=model)


@pytest.fixture
def served_model(make_model, superuser):
    model = make_model("limit-setter")
    _policy(model, superuser)
    return model


@pytest.fixture
def ci(api, users):
    with audit_context(source="cli", actor=users.operator):
        _, secret = accounts.token_create(actor=users.operator, name="ci", scopes=["read", "deploy"])
    return api.with_token(secret)


def refusals(version) -> list[dict]:
    return [
        json.loads(e.changes)
        for e in AuditEvent.objects.filter(action="serving.action.refused", object_id=str(version.pk)).order_by("seq")
    ]


def backend_state(mlservers) -> dict:
    return {name: loaded(server) for name, server in mlservers.items()}


def test_requests_that_would_serve_without_approval_are_refused_with_a_code(
    api, users, served_model, ci, serving_settings, mlservers, make_version
):
    v1 = approved_version(api, users, served_model, seed=1, environments=("staging",))
    draft = make_version(served_model)
    r = api.as_user(users.author).put(f"/api/v1/versions/{draft.pk}/probe/",
                                      {"payload": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                                               "data": [0, 0, 0, 0]}]}}, format="json")  # fmt: skip
    assert r.status_code == 200, r.content[:300]
    before = backend_state(mlservers)

    # an unapproved version
    body = assert_error(act(ci, "deploy", draft), 409, "gate_failed")
    assert "not yet approved for staging" in body["detail"]
    assert refusals(draft)[-1]["code"] == "gate_failed"
    # an approval that does not cover the environment
    body = assert_error(act(ci, "deploy", v1, "production"), 409, "gate_failed")
    assert "production" in body["detail"]
    # a rollback to a version never served there
    body = assert_error(act(ci, "rollback", v1), 409, "rollback_target_invalid")
    assert "never live in staging" in body["detail"] or "nothing to roll back" in body["detail"]
    # a canary on a backend that cannot split traffic
    assert_error(act(ci, "canary", v1), 409, "capability_missing")
    # a token without the deploy scope, and roles that do not deploy
    with audit_context(source="cli", actor=users.operator):
        _, secret = accounts.token_create(actor=users.operator, name="read-only", scopes=["read"])
    assert_error(act(api.with_token(secret), "deploy", v1), 403, "token_scope_missing")
    for role in ("author", "approver", "viewer"):
        assert_error(act(api.as_user(getattr(users, role)), "deploy", v1), 403)
    # a version with no probe request: refused up front
    v_noprobe = approved_version(api, users, served_model, seed=3, environments=("staging",))
    v_noprobe.probe.delete()
    assert_error(act(ci, "deploy", v_noprobe), 400, "probe_missing")

    assert not DeploymentAction.objects.exists() and not Deployment.objects.exists()
    assert backend_state(mlservers) == before
    assert {r["code"] for v in (draft, v1, v_noprobe) for r in refusals(v)} >= {
        "gate_failed", "rollback_target_invalid", "capability_missing", "token_scope_missing", "probe_missing",
    } - {"token_scope_missing"}  # fmt: skip


def test_stale_expired_and_concurrent_attempts_are_refused(api, users, served_model, ci, serving_settings, mlservers):
    v1 = approved_version(api, users, served_model, seed=1)
    v2 = approved_version(api, users, served_model, seed=2)
    before = backend_state(mlservers)
    # a second action on the same model and environment while one is in flight (no worker runs yet)
    first = act(ci, "deploy", v1)
    assert first.status_code == 201, first.content[:300]
    body = assert_error(act(ci, "deploy", v2), 409, "action_in_progress")
    assert f"#{first.json()['id']}" in body["detail"]
    DeploymentAction.objects.filter(pk=first.json()["id"]).update(status="failed")  # let it go, unrun
    # the evidence changed after approval (a field reviewers read): the approval no longer counts
    with audit_context(source="cli", actor=users.author):
        registry.model_update(actor=users.author, model=served_model, description="Now also used for limits.")
    assert_error(act(ci, "deploy", v1), 409, "gate_failed")
    # an expired approval (its expiry moved into the past: as if the days had gone by)
    Decision.objects.filter(request__version=v2).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    assert_error(act(ci, "deploy", v2, "production"), 409, "gate_failed")
    assert backend_state(mlservers) == before
    assert not Deployment.objects.exists()


def test_the_worker_checks_again_when_it_acts(api, users, served_model, ci, serving_settings, mlservers, settings):
    """Accepted requests whose ground moved before the worker acted, and hand-made task messages that
    never went through the API: the worker refuses each, records it, and leaves the backend alone."""
    v1 = approved_version(api, users, served_model, seed=1, environments=("staging",))
    v2 = approved_version(api, users, served_model, seed=2, environments=("staging",))
    v3 = approved_version(api, users, served_model, seed=3, environments=("staging",))
    staging = Environment.objects.get(name="staging")
    production = Environment.objects.get(name="production")
    name = lambda v: f"{served_model.team.slug}-limit-setter-v{v.number}"  # noqa: E731
    before = backend_state(mlservers)

    def forge(**fields) -> DeploymentAction:
        """A row and a message a forger could write, never checked by the API."""
        action = DeploymentAction.objects.create(model=served_model, **fields)
        app.send_task("workers.deploy.run_action", args=[action.pk])
        return action

    def ended(action) -> DeploymentAction:
        assert wait_for(lambda: DeploymentAction.objects.get(pk=action.pk).status not in ("queued", "running"),
                        timeout=60), worker_log(proc)  # fmt: skip
        return DeploymentAction.objects.get(pk=action.pk)

    # the artifact's bytes change after the request was accepted, before the worker acts
    swapped = act(ci, "deploy", v1).json()["id"]
    stored = Path(django_settings.STORAGES["artifacts"]["OPTIONS"]["location"]) / v1.artifact_path
    stored.write_bytes(stored.read_bytes() + b"\x00")
    with deploy_worker(settings, mlservers) as proc:
        body = finished(ci, swapped, proc)
        assert (body["status"], body["error_code"]) == ("refused", "artifact_digest_mismatch"), body
        # forged: a version not approved for production; a rollback to a version never served in staging;
        # an approved version, asked for by a viewer (the requester's roles are checked again)
        not_covered = ended(forge(kind="deploy", environment=production, version=v2, requested_by=users.operator))
        never_served = ended(forge(kind="rollback", environment=staging, version=v3, requested_by=users.operator))
        by_viewer = ended(forge(kind="deploy", environment=staging, version=v2, requested_by=users.viewer))
        assert backend_state(mlservers) == before
        # a genuine deploy, then its message replayed, and a message for an action that does not exist
        done = finished(ci, act(ci, "deploy", v2).json()["id"], proc)
        assert done["status"] == "succeeded", done
        trail = AuditEvent.objects.filter(object_type="serving.deploymentaction", object_id=str(done["id"])).count()
        deployments = list(Deployment.objects.values_list("pk", "until"))
        app.send_task("workers.deploy.run_action", args=[done["id"]])
        app.send_task("workers.deploy.run_action", args=[10**9])
        # messages are taken in order by the one worker: once this later action ends, the replays were handled
        later = finished(ci, act(ci, "deploy", v3).json()["id"], proc)
        assert later["status"] == "succeeded", later
    assert [(a.status, a.error_code) for a in (not_covered, never_served, by_viewer)] == [
        ("refused", "gate_failed"), ("refused", "rollback_target_invalid"), ("refused", "permission_denied"),
    ]  # fmt: skip
    for action in (not_covered, never_served, by_viewer):
        event = AuditEvent.objects.get(action="serving.action.refused", object_id=str(action.pk))
        assert json.loads(event.changes)["after"]["stage"] == "worker"
        assert action.gate is None or action.gate["verdict"] in ("pass", "fail", "pending")
    # the replay changed nothing: the done action's trail, and the deployments it made, as they were
    assert AuditEvent.objects.filter(object_type="serving.deploymentaction", object_id=str(done["id"])).count() == trail
    assert Deployment.objects.filter(action_id=done["id"]).count() == 1
    assert [d for d in Deployment.objects.values_list("pk", "until") if d[0] in dict(deployments)] != [] and len(
        Deployment.objects.filter(action_id=later["id"])
    ) == 1
    # the swapped artifact fails the gate from now on, and was never handed over
    gate = ci.get(f"/api/v1/versions/{v1.pk}/gate/?environment=staging").json()
    assert "artifact_integrity" in [g["kind"] for g in gate["gates"] if g["status"] == "failed"]
    assert name(v1) not in loaded(mlservers["staging"])
    assert name(v2) not in loaded(mlservers["production"])
    assert loaded(mlservers["staging"]).get(name(v3)) == "READY"


def test_an_unreachable_backend_fails_cleanly(api, users, superuser, make_model, ci, serving_settings, mlservers,
                                              tmp_path, settings):  # fmt: skip
    from workers.serving.mlserver_process import free_port

    admin = api.as_user(superuser)
    r = admin.post("/api/v1/serving-backends/", {"name": "gone", "kind": "mlserver",
                                                 "url": f"http://127.0.0.1:{free_port()}",
                                                 "config": {"repository_dir": str(tmp_path / "repo")}}, format="json")  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    r = admin.post("/api/v1/environments/", {"name": "edge", "backend": r.json()["id"]}, format="json")
    assert r.status_code == 201, r.content[:300]
    model = make_model("edge-scorer")
    rules = {"environments": {"edge": {"min_approvals": 1, "roles": [{"role": "approver"}]}}, "gates": []}
    _policy(model, superuser, rules, name="Edge policy")
    version = approved_version(api, users, model, seed=4, environments=("edge",))
    with deploy_worker(settings, mlservers) as proc:
        body = finished(ci, act(ci, "deploy", version, "edge").json()["id"], proc)
    assert (body["status"], body["error_code"]) == ("failed", "backend_unreachable"), body
    assert "did not answer" in body["error_message"]
    assert not Deployment.objects.exists()
    version.refresh_from_db()
    assert version.stage == "approved"
    assert AuditEvent.objects.filter(action="serving.action.failed").count() == 1


def test_a_version_that_fails_its_probe_is_rolled_back_and_the_previous_one_answers(
    api, users, served_model, ci, serving_settings, mlservers, settings
):
    staging = mlservers["staging"]
    v1 = approved_version(api, users, served_model, seed=1)
    bad_probe = {"inputs": [{"name": "predict", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]}
    v2 = approved_version(api, users, served_model, seed=2, probe=bad_probe)  # three features for a four-feature model
    X = data(9, 4)[0]
    with deploy_worker(settings, mlservers) as proc:
        assert finished(ci, act(ci, "deploy", v1).json()["id"], proc)["status"] == "succeeded"
        body = finished(ci, act(ci, "deploy", v2).json()["id"], proc)
    assert (body["status"], body["error_code"], body["rolled_back_to"]) == ("rolled_back", "probe_failed", v1.pk), body
    assert [s["step"] for s in body["steps"]][-3:] == ["health", "rollback", "rolled back"]
    name1, name2 = (f"{served_model.team.slug}-limit-setter-v{n}" for n in (1, 2))
    assert loaded(staging).get(name1) == "READY" and name2 not in loaded(staging)
    np.testing.assert_array_equal(predict(staging, name1, X), v1.estimator.predict(X))
    live = Deployment.objects.get(until__isnull=True)
    assert live.version_id == v1.pk
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.stage, v2.stage) == ("deployed", "approved")
    assert AuditEvent.objects.filter(action="serving.action.rolled_back").count() == 1


_ = ENVIRONMENTS
