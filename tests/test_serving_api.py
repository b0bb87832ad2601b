"""The serving API's who-may-what and bad input (issue 13): backends and environments are site
administrators' to create and every signed-in user's to read (credentials never shown); deployments
and actions are visible only to the owning team (404 otherwise); only operators and admins, with a
token scoped ``deploy``, ask for actions; a probe request is the authors' and operators'. Every bad
input is a 4xx with a code, and nothing is stored. What the worker does is tests/test_serving_e2e.py's.
"""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from governance.accounts import services as accounts
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.serving.models import Deployment, DeploymentAction, Environment, ServingBackend
from tests.conftest import assert_error, governed_state

pytestmark = pytest.mark.usefixtures("fast_passwords")

PROBE = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}


def _rows(model, version):
    """A past and a current deployment, written directly: what the worker records (tested elsewhere)."""
    staging = Environment.objects.get(name="staging")
    action = DeploymentAction.objects.create(kind="deploy", environment=staging, model=model, version=version,
                                             status="succeeded")  # fmt: skip
    now = timezone.now()
    past = Deployment.objects.create(environment=staging, model=model, version=version, since=now - timezone.timedelta(
        hours=2), until=now - timezone.timedelta(hours=1), action=action)  # fmt: skip
    live = Deployment.objects.create(environment=staging, model=model, version=version, since=now, action=action)
    return action, past, live


def test_backends_and_environments_are_site_administrators_to_create(api, users):
    admin, team_admin = api.as_user(users.superuser), api.as_user(users.admin)
    body = {"name": "gpu-pool", "kind": "mlserver", "url": "http://10.0.0.5:8080",
            "config": {"repository_dir": "/srv/models"}, "credentials": "s3cr3t-token"}  # fmt: skip
    before = governed_state()
    assert_error(team_admin.post("/api/v1/serving-backends/", body, format="json"), 403)
    assert governed_state() == before and not ServingBackend.objects.filter(name="gpu-pool").exists()
    r = admin.post("/api/v1/serving-backends/", body, format="json")
    assert r.status_code == 201, r.content[:300]
    assert r.json()["has_credentials"] is True and "s3cr3t" not in r.content.decode()
    backend = ServingBackend.objects.get(name="gpu-pool")
    assert "s3cr3t" not in backend.credentials_encrypted
    event = AuditEvent.objects.get(action="serving.backend.create")
    assert "s3cr3t" not in event.changes and json.loads(event.changes)["after"]["credentials"] is True
    viewer = api.as_user(users.viewer)
    listed = viewer.get("/api/v1/serving-backends/").json()["results"]
    assert "gpu-pool" in [b["name"] for b in listed] and "s3cr3t" not in json.dumps(listed)
    assert_error(admin.post("/api/v1/serving-backends/", body, format="json"), 409, "name_taken")
    for bad, field in (({**body, "name": "GPU Pool"}, "name"), ({**body, "name": "x2", "kind": "triton"}, "kind"),
                       ({**body, "name": "x3", "url": "not a url"}, "url"),
                       ({**body, "name": "x4", "config": []}, "config")):  # fmt: skip
        assert field in assert_error(admin.post("/api/v1/serving-backends/", bad, format="json"), 400)["fields"]

    env = {"name": "gpu-prod", "backend": backend.pk, "max_error_rate": 0.01, "observation_seconds": 60}
    assert_error(team_admin.post("/api/v1/environments/", env, format="json"), 403)
    r = admin.post("/api/v1/environments/", env, format="json")
    assert r.status_code == 201, r.content[:300]
    assert r.json()["backend_name"] == "gpu-pool" and r.json()["max_error_rate"] == 0.01
    assert viewer.get(f"/api/v1/environments/{r.json()['id']}/").status_code == 200
    assert_error(admin.post("/api/v1/environments/", {**env, "name": "other", "backend": 10**9}, format="json"),
                 404, "backend_not_found")  # fmt: skip
    bad_probe = {**env, "name": "probed", "probe_payload": {"inputs": [{"name": "x"}]}}
    assert_error(admin.post("/api/v1/environments/", bad_probe, format="json"), 400)
    assert_error(admin.post("/api/v1/environments/", env, format="json"), 409, "name_taken")
    # its health policy is a site administrator's to change, audited; not its name or its backend
    url = f"/api/v1/environments/{r.json()['id']}/"
    before = governed_state()
    assert_error(team_admin.patch(url, {"canary_auto_promote": True}, format="json"), 403)
    for bad in ({"name": "renamed"}, {"backend": backend.pk}, {"max_error_rate": 2}, {"canary_percent": 0},
                {"probe_payload": {"inputs": [{"name": "x"}]}}):  # fmt: skip
        assert_error(admin.patch(url, bad, format="json"), 400)
    assert governed_state() == before
    r = admin.patch(url, {"canary_auto_promote": True, "min_requests": 50}, format="json")
    assert r.status_code == 200, r.content[:300]
    assert (r.json()["canary_auto_promote"], r.json()["min_requests"], r.json()["name"]) == (True, 50, "gpu-prod")
    changed = json.loads(AuditEvent.objects.get(action="serving.environment.update").changes)
    assert (changed["before"]["canary_auto_promote"], changed["after"]["canary_auto_promote"]) == (False, True)
    # the default environments exist from the start, on the run command's local MLServers
    names = [e["name"] for e in viewer.get("/api/v1/environments/").json()["results"]]
    assert [n for n in names if n in ("staging", "production")] == ["staging", "production"]


def test_a_policy_may_name_only_environments_that_exist(api, users):
    admin = api.as_user(users.superuser)
    rules = {"environments": {"edge": {"min_approvals": 1, "roles": [{"role": "approver"}]}}, "gates": []}
    body = assert_error(admin.post("/api/v1/policies/", {"name": "Edge", "rules": rules}, format="json"), 400,
                        "unknown_environment")  # fmt: skip
    assert "edge" in body["detail"] and "rules.environments.edge" in body["fields"]
    backend = ServingBackend.objects.get(name="local-staging")
    assert (
        admin.post("/api/v1/environments/", {"name": "edge", "backend": backend.pk}, format="json").status_code == 201
    )
    assert admin.post("/api/v1/policies/", {"name": "Edge", "rules": rules}, format="json").status_code == 201


def test_deployments_and_actions_are_the_owning_teams(api, users, model, version):
    action, past, live = _rows(model, version)
    member, outsider = api.as_user(users.viewer), api.as_user(users.outsider)
    assert {d["id"] for d in member.get("/api/v1/deployments/").json()["results"]} == {past.pk, live.pk}
    assert outsider.get("/api/v1/deployments/").json()["results"] == []
    assert_error(outsider.get(f"/api/v1/deployments/{live.pk}/"), 404)
    assert_error(outsider.get(f"/api/v1/deployment-actions/{action.pk}/"), 404)
    assert member.get(f"/api/v1/deployment-actions/{action.pk}/").json()["kind"] == "deploy"
    current = member.get("/api/v1/deployments/", {"current": "true"}).json()["results"]
    assert [d["id"] for d in current] == [live.pk]
    at = (past.since + timezone.timedelta(minutes=30)).isoformat()
    assert [d["id"] for d in member.get("/api/v1/deployments/", {"at": at}).json()["results"]] == [past.pk]
    for bad in ({"at": "yesterday"}, {"at": "2026-13-01T00:00"}, {"current": "maybe"}, {"environment": "x"},
                {"state": "asleep"}):  # fmt: skip
        assert_error(member.get("/api/v1/deployments/", bad), 400)


def test_only_operators_with_a_deploy_scoped_token_ask_for_actions(api, users, model, version, make_model,
                                                                   make_version, other_team):  # fmt: skip
    staging = Environment.objects.get(name="staging")
    body = {"kind": "deploy", "environment": staging.pk, "version": version.pk}
    with audit_context(source="cli", actor=users.operator):
        _, read_only = accounts.token_create(actor=users.operator, name="ro", scopes=["read", "write", "transition"])
    before = governed_state()
    for role in ("viewer", "author", "reviewer", "approver", "auditor"):
        assert_error(api.as_user(getattr(users, role)).post("/api/v1/deployment-actions/", body, format="json"), 403)
    assert_error(api.as_user(users.outsider).post("/api/v1/deployment-actions/", body, format="json"), 404,
                 "version_not_found")  # fmt: skip
    assert_error(api.with_token(read_only).post("/api/v1/deployment-actions/", body, format="json"), 403,
                 "token_scope_missing")  # fmt: skip
    operator = api.as_user(users.operator)
    assert_error(operator.post("/api/v1/deployment-actions/", {**body, "environment": 10**9}, format="json"), 404,
                 "environment_not_found")  # fmt: skip
    assert "kind" in assert_error(operator.post("/api/v1/deployment-actions/", {**body, "kind": "launch"},
                                                format="json"), 400)["fields"]  # fmt: skip
    assert_error(operator.post("/api/v1/deployment-actions/", body, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201),
                 400, "invalid_idempotency_key")  # fmt: skip
    # the operator may ask; this draft's gate refuses it (the worker's path is the end-to-end suite's)
    assert_error(operator.post("/api/v1/deployment-actions/", body, format="json"), 409, "gate_failed")
    assert not DeploymentAction.objects.exists()
    assert {k: v for k, v in governed_state().items() if k != "events"} == {
        k: v for k, v in before.items() if k != "events"
    }


def test_a_probe_request_is_the_authors_and_operators(api, users, model, version):
    url = f"/api/v1/versions/{version.pk}/probe/"
    assert_error(api.as_user(users.viewer).get(url), 404, "probe_not_found")
    for role in ("viewer", "reviewer", "approver", "auditor"):
        assert_error(api.as_user(getattr(users, role)).put(url, {"payload": PROBE}, format="json"), 403)
    assert_error(api.as_user(users.outsider).put(url, {"payload": PROBE}, format="json"), 404)
    for bad in ({"inputs": []}, {"inputs": [{"name": "x", "shape": [0], "datatype": "FP64", "data": []}]}, [1, 2],
                {"inputs": [{"name": "x"}]}, {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": {}}]},
                {"inputs": [{"name": "", "shape": [1], "datatype": {}, "data": [None]}]},
                {"inputs": [{"name": "x", "shape": [True], "datatype": "FP64", "data": [1]}]}):  # fmt: skip
        assert_error(api.as_user(users.author).put(url, {"payload": bad}, format="json"), 400)
    for role in ("author", "operator"):
        r = api.as_user(getattr(users, role)).put(url, {"payload": PROBE}, format="json")
        assert r.status_code == 200 and r.json()["payload"] == PROBE, r.content[:300]
    assert api.as_user(users.viewer).get(url).json()["payload"] == PROBE
    assert AuditEvent.objects.filter(action="serving.probe.set", object_id=str(version.pk)).count() == 2
