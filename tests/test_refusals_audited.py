"""Issue 10, finding 6: every refused governed write is audited with its reason.

Refused lifecycle steps, token creations, policy edits and evaluation requests, through the API
and the browser, each leave one ``<action>.refused`` event: the actor, the request id, the
object aimed at and its team (so the team's auditors see it), the code and the sentence the
person was given. A 403 also leaves its ``permission.denied``, as before. Reading is no write.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from governance.approvals.models import Policy
from governance.audit.models import AuditEvent
from governance.audit.refusals import GOVERNED_WRITES
from governance.registry.models import Stage
from tests.conftest import assert_error
from tests.test_evaluations_api import credit_frame, csv_upload

pytestmark = pytest.mark.usefixtures("fast_passwords")


def _refused(action: str, **where) -> AuditEvent:
    [event] = AuditEvent.objects.filter(action=f"{action}.refused", **where)
    return event


def _changes(event: AuditEvent) -> dict:
    return json.loads(event.changes)


def test_every_governed_write_refusal_is_a_registered_action():
    from governance.audit.actions import AuditAction

    assert {f"{w.action}.refused" for w in GOVERNED_WRITES.values()} <= {a.value for a in AuditAction}


def test_a_refused_lifecycle_step_is_audited_and_the_teams_auditor_sees_it(api, users, team, version):
    r = api.as_user(users.author).post(
        f"/api/v1/versions/{version.pk}/transition/", {"to": "deployed", "reason": "ship it"}, format="json",
        HTTP_X_REQUEST_ID="step-409",
    )  # fmt: skip
    body = assert_error(r, 409, "transition_not_allowed")
    event = _refused("version.transition", request_id="step-409")
    assert (event.actor, event.source, event.team_id) == (users.author, "api", team.pk)
    assert (event.object_type, event.object_id) == ("registry.modelversion", str(version.pk))
    changes = _changes(event)
    assert (changes["code"], changes["detail"], changes["to"]) == ("transition_not_allowed", body["detail"], "deployed")
    assert changes["request"] == f"POST /api/v1/versions/{version.pk}/transition/"
    assert not AuditEvent.objects.filter(action="permission.denied").exists()  # a 409 is no 403
    version.refresh_from_db()
    assert version.stage == Stage.DRAFT
    # in the team's log and the version's trail, for those who may read them; not for outsiders
    seen = api.as_user(users.auditor).get("/api/v1/audit-events/?action=version.transition.refused").json()
    assert [e["id"] for e in seen["results"]] == [event.pk]
    trail = api.as_user(users.viewer).get(f"/api/v1/versions/{version.pk}/audit/").json()["results"]
    assert trail[0]["action"] == "version.transition.refused"
    hidden = api.as_user(users.outsider).get("/api/v1/audit-events/?action=version.transition.refused").json()
    assert hidden["results"] == []


def test_a_refused_lifecycle_step_in_the_browser_is_audited(login, users, team, version):
    response = login(users.author).post(reverse("version-lifecycle", args=[version.pk]), {"to": "deprecated"})
    assert response.status_code == 409
    event = _refused("version.transition", source="ui")
    assert (event.actor, event.team_id, event.object_id) == (users.author, team.pk, str(version.pk))
    assert _changes(event)["code"] == "transition_not_allowed" and _changes(event)["to"] == "deprecated"
    # refused for lack of a role: the permission.denied of a 403 and the step's own refusal, once each
    response = login(users.viewer).post(reverse("version-lifecycle", args=[version.pk]), {"to": "retired"})
    assert response.status_code == 403
    assert _refused("version.transition", actor=users.viewer).team_id == team.pk
    assert AuditEvent.objects.filter(action="permission.denied", actor=users.viewer).count() == 1


def test_a_refused_token_creation_is_audited(api, users, other_team):
    r = api.as_user(users.author).post(
        "/api/v1/tokens/", {"name": "ci", "scopes": ["read"], "team": other_team.pk}, format="json",
        HTTP_X_REQUEST_ID="token-refused",
    )  # fmt: skip
    assert_error(r, 404, "team_not_found")
    event = _refused("token.create", request_id="token-refused")
    assert (event.actor, event.object_type, event.team_id) == (users.author, "request", None)
    changes = _changes(event)
    assert (changes["code"], changes["team"], changes["scopes"], changes["name"]) == (
        "team_not_found", other_team.pk, ["read"], "ci"
    )  # fmt: skip
    # the person sees their own refusals
    mine = api.as_user(users.author).get("/api/v1/audit-events/?action=token.create.refused").json()["results"]
    assert [e["id"] for e in mine] == [event.pk]


def test_refused_policy_edits_are_audited(api, login, users):
    policy = Policy.objects.filter(team=None).order_by("pk").first()
    r = api.as_user(users.author).post(
        "/api/v1/policies/", {"name": "Mine", "rules": {"environments": {}, "gates": []}}, format="json",
        HTTP_X_REQUEST_ID="policy-403",
    )  # fmt: skip
    assert_error(r, 403)
    assert _refused("policy.create", request_id="policy-403").actor == users.author
    assert AuditEvent.objects.filter(action="permission.denied", request_id="policy-403").count() == 1
    r = api.as_user(users.superuser).patch(
        f"/api/v1/policies/{policy.pk}/", {"rules": {"environments": {}, "gates": [], "extra": 1}}, format="json",
        HTTP_X_REQUEST_ID="policy-400",
    )  # fmt: skip
    assert_error(r, 400, "invalid_rules")
    event = _refused("policy.update", request_id="policy-400")
    assert (event.object_type, event.object_id, event.actor) == ("approvals.policy", str(policy.pk), users.superuser)
    assert _changes(event)["code"] == "invalid_rules"
    # the same edit in the browser
    response = login(users.superuser).post(
        reverse("policy-edit", args=[policy.pk]),
        {"name": policy.name, "rules": json.dumps({"environments": {}, "gates": [], "extra": 1})},
    )
    assert response.status_code == 400
    event = _refused("policy.update", source="ui")
    assert (event.object_id, _changes(event)["code"]) == (str(policy.pk), "invalid_rules")


def test_refused_evaluation_requests_are_audited(api, login, users, team, version):
    r = api.as_user(users.author).post(
        "/api/v1/evaluations/",
        {"version": version.pk, "kind": "fairness", "data": csv_upload(credit_frame())},
        format="multipart", HTTP_X_REQUEST_ID="eval-400",
    )  # fmt: skip
    assert_error(r, 400, "missing_target")
    event = _refused("evaluation.request", request_id="eval-400")
    assert (event.object_type, event.object_id, event.team_id) == ("registry.modelversion", str(version.pk), team.pk)
    assert (_changes(event)["code"], _changes(event)["kind"]) == ("missing_target", "fairness")
    r = api.as_user(users.viewer).post(
        "/api/v1/evaluations/",
        {"version": version.pk, "kind": "performance", "target_column": "default", "data": csv_upload(credit_frame())},
        format="multipart", HTTP_X_REQUEST_ID="eval-403",
    )  # fmt: skip
    assert_error(r, 403)
    assert _refused("evaluation.request", request_id="eval-403").actor == users.viewer
    # in the browser
    response = login(users.author).post(
        reverse("evaluation-request", args=[version.pk]),
        {"kind": "fairness", "target_column": "default", "data": csv_upload(credit_frame())},
    )
    assert response.status_code == 400
    event = _refused("evaluation.request", source="ui")
    assert (event.object_id, event.team_id, _changes(event)["code"]) == (
        str(version.pk), team.pk, "invalid_sensitive_features"
    )  # fmt: skip


def test_reading_is_not_a_refused_write(api, users, version):
    assert api.as_user(users.outsider).get(f"/api/v1/versions/{version.pk}/").status_code == 404
    assert api.as_user(users.author).get(f"/api/v1/evaluations/{version.pk}/download/").status_code == 404
    assert not AuditEvent.objects.filter(action__endswith=".refused").exists()
