"""Who may do what on every API endpoint, as one declarative table.

Each row of ``ENDPOINTS`` names the roles that succeed; every other team role is refused with
403 and the outsider (an author of another team) gets 404. A refused request leaves every
governed row as it was, and a refused write leaves a ``permission.denied`` event; then the
very same request, sent by a role that may make it, succeeds (403 before 200).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from governance.accounts.models import Role
from governance.audit.models import AuditEvent
from tests.conftest import assert_error, governed_state, make_artifact

pytestmark = pytest.mark.usefixtures("fast_passwords")

MEMBERS = frozenset(Role.values)
EVERYONE = MEMBERS | {"outsider", "superuser"}
READERS = MEMBERS | {"superuser"}
WRITERS = frozenset({Role.AUTHOR, Role.ADMIN, "superuser"})
TEAM_ADMINS = frozenset({Role.ADMIN, "superuser"})
ROLES = sorted(EVERYONE)


@dataclass(frozen=True)
class Endpoint:
    id: str
    method: str
    url: str  # formatted with the api_world namespace: {w.model.pk}
    ok: int
    allowed: frozenset[str]
    body: Callable[[SimpleNamespace], dict] | None = None
    multipart: bool = False
    refused: int = 403  # what a team member without the role gets
    outsider: int = 404  # what the other team's author gets when not allowed
    reference: str = ""  # the role that shows the request is good; default: author, admin or superuser
    check: Callable[[SimpleNamespace, object], None] | None = field(default=None, compare=False)

    def expected(self, role: str) -> int:
        if role in self.allowed:
            return self.ok
        return self.outsider if role == "outsider" else self.refused

    def allowed_role(self) -> str:
        if self.reference:
            return self.reference
        return next(r for r in (Role.AUTHOR, Role.ADMIN, "superuser") if r in self.allowed)


def _has_id(key: str):
    def check(w, body):
        ids = [row["id"] for row in (body["results"] if isinstance(body, dict) and "results" in body else body)]
        assert getattr(w, key).pk in ids

    return check


ENDPOINTS = [
    # teams
    Endpoint("teams-list", "get", "/api/v1/teams/", 200, EVERYONE),
    Endpoint("teams-retrieve", "get", "/api/v1/teams/{w.team.pk}/", 200, READERS),
    Endpoint("teams-create", "post", "/api/v1/teams/", 201, frozenset({"superuser"}), lambda w: {"name": "Fraud"},
             outsider=403),
    Endpoint("teams-partial-update", "patch", "/api/v1/teams/{w.team.pk}/", 200, TEAM_ADMINS,
             lambda w: {"description": "Scores retail credit."}),
    # memberships
    Endpoint("memberships-list", "get", "/api/v1/memberships/", 200, EVERYONE),
    Endpoint("memberships-create", "post", "/api/v1/memberships/", 201, TEAM_ADMINS,
             lambda w: {"team": w.team.pk, "username": "newbie", "role": "viewer"}),
    Endpoint("memberships-destroy", "delete", "/api/v1/memberships/{w.viewer_membership.pk}/", 204, TEAM_ADMINS),
    # tokens: everyone manages their own; another user's token is not even visible
    Endpoint("tokens-list", "get", "/api/v1/tokens/", 200, EVERYONE),
    Endpoint("tokens-create", "post", "/api/v1/tokens/", 201, EVERYONE, lambda w: {"name": "ci", "scopes": ["read"]}),
    Endpoint("tokens-revoke-the-authors", "post", "/api/v1/tokens/{w.token.pk}/revoke/", 200, frozenset({Role.AUTHOR}),
             refused=404),
    # models
    Endpoint("models-list", "get", "/api/v1/models/", 200, EVERYONE),
    Endpoint("models-retrieve", "get", "/api/v1/models/{w.model.pk}/", 200, READERS),
    Endpoint("models-create", "post", "/api/v1/models/", 201, WRITERS,
             lambda w: {"team": w.team.pk, "name": "fraud-detection", "risk_tier": "high"}),
    Endpoint("models-partial-update", "patch", "/api/v1/models/{w.model.pk}/", 200, WRITERS,
             lambda w: {"description": "Probability of default at 12 months."}),
    Endpoint("models-destroy", "delete", "/api/v1/models/{w.empty_model.pk}/", 204, TEAM_ADMINS),
    Endpoint("models-risk-tier", "post", "/api/v1/models/{w.model.pk}/risk-tier/", 200,
             frozenset({Role.APPROVER, Role.ADMIN, "superuser"}),
             lambda w: {"risk_tier": "high", "reason": "It decides on credit."}),
    Endpoint("models-audit", "get", "/api/v1/models/{w.model.pk}/audit/", 200, READERS),
    # versions
    Endpoint("versions-list", "get", "/api/v1/versions/", 200, EVERYONE),
    Endpoint("versions-retrieve", "get", "/api/v1/versions/{w.v1.pk}/", 200, READERS),
    Endpoint("versions-create", "post", "/api/v1/versions/", 201, WRITERS,
             lambda w: {"model": w.model.pk, "artifact": make_artifact(), "metrics": '{"auc": 0.8}'}, multipart=True),
    Endpoint("versions-partial-update", "patch", "/api/v1/versions/{w.v1.pk}/", 200, WRITERS,
             lambda w: {"description": "Retrained on 2024 Q4."}),
    Endpoint("versions-transition", "post", "/api/v1/versions/{w.v1.pk}/transition/", 200, WRITERS,
             lambda w: {"to": "retired", "reason": "superseded"}),
    Endpoint("versions-artifact", "get", "/api/v1/versions/{w.v1.pk}/artifact/", 200, READERS),
    Endpoint("versions-card-get", "get", "/api/v1/versions/{w.v2.pk}/card/", 200, READERS),
    Endpoint("versions-card-put", "put", "/api/v1/versions/{w.v2.pk}/card/", 200, WRITERS,
             lambda w: {"sections": {"intended_use": "Scoring retail credit applications in the EU."}}),
    Endpoint("versions-card-revisions", "get", "/api/v1/versions/{w.v2.pk}/card/revisions/", 200, READERS),
    Endpoint("versions-diff", "get", "/api/v1/versions/{w.v2.pk}/diff/", 200, READERS),
    Endpoint("versions-audit", "get", "/api/v1/versions/{w.v1.pk}/audit/", 200, READERS),
    Endpoint("versions-bundle", "get", "/api/v1/versions/{w.v2.pk}/bundle/", 200, READERS),  # a zip
    # audit events
    Endpoint("audit-events-list", "get", "/api/v1/audit-events/", 200, EVERYONE),
    Endpoint("audit-events-export", "get", "/api/v1/audit-events/export/?format=jsonl", 200, EVERYONE),  # JSON Lines
    Endpoint("audit-events-retrieve", "get", "/api/v1/audit-events/{w.team_event.pk}/", 200, READERS),
    Endpoint("audit-events-verify", "post", "/api/v1/audit-events/verify/", 200,
             frozenset({Role.AUDITOR, Role.ADMIN, "superuser"}), outsider=403),
]  # fmt: skip

MATRIX = [
    pytest.param(role, endpoint, endpoint.expected(role), id=f"{endpoint.id}-{role}")
    for endpoint in ENDPOINTS
    for role in ROLES
]


def send(client, endpoint: Endpoint, w, **extra):
    url = endpoint.url.format(w=w)
    body = endpoint.body(w) if endpoint.body else None
    call = getattr(client, endpoint.method)
    if endpoint.method == "get":
        return call(url, **extra)
    return call(url, body, format="multipart" if endpoint.multipart else "json", **extra)


def test_the_table_covers_every_routed_endpoint():
    from governance.api_urls import router

    routed = set()
    for prefix, viewset, _ in router.registry:
        for name in ("list", "retrieve", "create", "partial_update", "destroy"):
            if hasattr(viewset, name):
                routed.add((prefix, name))
        for extra in viewset.get_extra_actions():
            routed.add((prefix, extra.__name__))
    covered = {
        ("teams", "list"), ("teams", "retrieve"), ("teams", "create"), ("teams", "partial_update"),
        ("memberships", "list"), ("memberships", "retrieve"), ("memberships", "create"), ("memberships", "destroy"),
        ("tokens", "list"), ("tokens", "retrieve"), ("tokens", "create"), ("tokens", "revoke"),
        ("models", "list"), ("models", "retrieve"), ("models", "create"), ("models", "partial_update"),
        ("models", "destroy"), ("models", "audit"), ("models", "risk_tier"),
        ("versions", "list"), ("versions", "retrieve"), ("versions", "create"), ("versions", "partial_update"),
        ("versions", "transition"), ("versions", "artifact"), ("versions", "card"), ("versions", "card_revisions"),
        ("versions", "diff"), ("versions", "audit"), ("versions", "bundle"),
        ("audit-events", "list"), ("audit-events", "retrieve"), ("audit-events", "verify"),
        ("audit-events", "export"),
    }  # fmt: skip
    # Endpoints whose 403-before-200 and 404 cases live in their app's own suite:
    covered |= {
        # tests/test_approvals.py
        ("policies", "list"), ("policies", "retrieve"), ("policies", "create"), ("policies", "partial_update"),
        ("policies", "revisions"), ("policies", "assign"),
        # tests/test_approvals_policy_loosening.py
        ("policies", "approve_revision"), ("policies", "reject_revision"),
        # tests/test_approvals_policy_assignment.py
        ("policies", "assignments"), ("policies", "approve_assignment"), ("policies", "reject_assignment"),
        ("approval-requests", "list"), ("approval-requests", "retrieve"), ("approval-requests", "create"),
        ("approval-requests", "decide"), ("approval-requests", "withdraw"),
        # tests/test_evaluations_api.py
        ("evaluations", "list"), ("evaluations", "retrieve"), ("evaluations", "create"), ("evaluations", "cancel"),
        ("evaluations", "download"),
        # tests/test_notifications.py and tests/test_webhooks.py
        ("notifications", "list"), ("notifications", "retrieve"), ("notifications", "read"),
        ("notifications", "read_all"),
        ("webhooks", "list"), ("webhooks", "retrieve"), ("webhooks", "create"), ("webhooks", "partial_update"),
        ("webhooks", "destroy"), ("webhooks", "test"), ("webhooks", "deliveries"),
        # tests/test_compliance_mapping.py
        ("compliance/frameworks", "list"), ("compliance/frameworks", "retrieve"),
        ("compliance/mapping-items", "list"), ("compliance/mapping-items", "retrieve"),
        ("compliance/mapping-items", "create"), ("compliance/mapping-items", "revisions"),
        # tests/test_serving_api.py
        ("serving-backends", "list"), ("serving-backends", "retrieve"), ("serving-backends", "create"),
        ("environments", "list"), ("environments", "retrieve"), ("environments", "create"),
        ("environments", "partial_update"),
        ("deployments", "list"), ("deployments", "retrieve"),
        ("deployment-actions", "list"), ("deployment-actions", "retrieve"), ("deployment-actions", "create"),
        # tests/test_hosts_api.py
        ("hosts", "list"), ("hosts", "retrieve"), ("hosts", "create"), ("hosts", "heartbeat"),
    }  # fmt: skip
    assert routed <= covered, f"endpoints without a row in the permission table: {sorted(routed - covered)}"


@pytest.mark.parametrize(("role", "endpoint", "expected"), MATRIX)
def test_role_matrix(api, users, api_world, role, endpoint, expected):
    client = api.as_user(getattr(users, role))
    before = governed_state()
    denied_before = AuditEvent.objects.filter(action="permission.denied").count()

    r = send(client, endpoint, api_world, HTTP_X_REQUEST_ID=f"matrix-{role}")

    if expected < 400:
        assert r.status_code == expected, (r.status_code, r.content[:500])
        if endpoint.method == "get" and endpoint.id not in (
            "versions-artifact",
            "versions-bundle",
            "audit-events-export",
        ):
            assert r["Content-Type"].startswith("application/json")
        return

    body = assert_error(r, expected)
    assert governed_state() == before, "a refused request changed governed rows"
    denied = AuditEvent.objects.filter(action="permission.denied").order_by("seq")
    if expected == 403 and endpoint.method != "get":
        assert denied.count() == denied_before + 1
        event = denied.last()
        assert event.actor == getattr(users, role)
        assert event.request_id == r["X-Request-ID"] == f"matrix-{role}"
        assert event.source == "api"
        assert event.object_id == f"{endpoint.method.upper()} {endpoint.url.format(w=api_world)}"
        assert f'"code":"{body["code"]}"' in event.changes
    else:
        assert denied.count() == denied_before

    # 403 before 200: the same request from a role that may make it goes through.
    allowed = api.as_user(getattr(users, endpoint.allowed_role()))
    again = send(allowed, endpoint, api_world)
    assert again.status_code == endpoint.ok, (again.status_code, again.content[:500])


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.id for e in ENDPOINTS])
def test_anonymous_requests_are_refused_with_a_json_error(api, api_world, endpoint):
    before = governed_state()
    r = send(api.as_user(None), endpoint, api_world)
    assert_error(r, 401, "not_authenticated")
    assert r["WWW-Authenticate"] == "Bearer"
    assert governed_state() == before


# --- what each role sees in lists -------------------------------------------------------------


def _ids(response) -> set[int]:
    assert response.status_code == 200, response.content[:500]
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return {row["id"] for row in rows}


@pytest.mark.parametrize("role", sorted(MEMBERS))
def test_team_members_see_their_team_and_not_the_other(api, users, api_world, role):
    w = api_world
    client = api.as_user(getattr(users, role))
    assert _ids(client.get("/api/v1/teams/")) == {w.team.pk}
    assert _ids(client.get("/api/v1/models/")) == {w.model.pk, w.empty_model.pk}
    assert _ids(client.get("/api/v1/versions/")) == {w.v1.pk, w.v2.pk}
    memberships = client.get("/api/v1/memberships/").json()["results"]
    assert {m["team"] for m in memberships} == {w.team.pk}
    events = client.get("/api/v1/audit-events/?page_size=200").json()["results"]
    assert w.team_event.pk in {e["id"] for e in events}
    assert {e["team_id"] for e in events} <= {w.team.pk, None}
    assert all(e["actor"] == getattr(users, role).pk for e in events if e["team_id"] is None)
    assert_error(client.get(f"/api/v1/models/{w.foreign_model.pk}/"), 404, "not_found")
    assert_error(client.get(f"/api/v1/versions/{w.foreign_version.pk}/"), 404, "not_found")
    assert_error(client.get(f"/api/v1/audit-events/{w.foreign_event.pk}/"), 404, "not_found")


def test_the_outsider_sees_only_its_own_team(api, users, api_world):
    w = api_world
    client = api.as_user(users.outsider)
    assert _ids(client.get("/api/v1/teams/")) == {w.other_team.pk}
    assert _ids(client.get("/api/v1/models/")) == {w.foreign_model.pk}
    assert _ids(client.get("/api/v1/versions/")) == {w.foreign_version.pk}
    assert _ids(client.get(f"/api/v1/models/?team={w.team.pk}")) == set()
    assert _ids(client.get(f"/api/v1/versions/?model={w.model.pk}")) == set()
    assert {m["team"] for m in client.get("/api/v1/memberships/").json()["results"]} == {w.other_team.pk}
    events = client.get("/api/v1/audit-events/?page_size=200").json()["results"]
    assert events and w.team.pk not in {e["team_id"] for e in events}
    assert _ids(client.get(f"/api/v1/audit-events/?team={w.team.pk}")) == set()
    assert _ids(client.get("/api/v1/tokens/")) == set()
    for url in (
        f"/api/v1/teams/{w.team.pk}/",
        f"/api/v1/models/{w.model.pk}/",
        f"/api/v1/models/{w.model.pk}/audit/",
        f"/api/v1/versions/{w.v1.pk}/",
        f"/api/v1/versions/{w.v1.pk}/artifact/",
        f"/api/v1/versions/{w.v2.pk}/card/",
        f"/api/v1/versions/{w.v2.pk}/diff/",
        f"/api/v1/versions/{w.foreign_version.pk}/diff/?against={w.v1.pk}",
        f"/api/v1/audit-events/{w.team_event.pk}/",
        f"/api/v1/memberships/{w.viewer_membership.pk}/",
        f"/api/v1/tokens/{w.token.pk}/",
    ):
        assert_error(client.get(url), 404)


def test_the_superuser_sees_every_team(api, users, api_world):
    w = api_world
    client = api.as_user(users.superuser)
    assert _ids(client.get("/api/v1/teams/")) == {w.team.pk, w.other_team.pk}
    assert _ids(client.get("/api/v1/models/")) == {w.model.pk, w.empty_model.pk, w.foreign_model.pk}
    assert _ids(client.get("/api/v1/versions/")) == {w.v1.pk, w.v2.pk, w.foreign_version.pk}


def test_tokens_list_shows_only_the_callers_tokens(api, users, api_world):
    assert _ids(api.as_user(users.author).get("/api/v1/tokens/")) == {api_world.token.pk}
    for role in ("viewer", "admin", "superuser"):
        assert _ids(api.as_user(getattr(users, role)).get("/api/v1/tokens/")) == set()
    assert_error(api.as_user(users.superuser).get(f"/api/v1/tokens/{api_world.token.pk}/"), 404)


def test_successful_reads_return_the_object(api, users, api_world):
    w = api_world
    client = api.as_user(users.viewer)
    assert client.get(f"/api/v1/teams/{w.team.pk}/").json()["name"] == "Credit Risk"
    model = client.get(f"/api/v1/models/{w.model.pk}/").json()
    assert model["name"] == "credit-scoring" and model["version_count"] == 2 and model["latest_version_number"] == 2
    version = client.get(f"/api/v1/versions/{w.v1.pk}/").json()
    assert version["stage"] == "draft" and version["metrics"] == {"accuracy": 0.9} and version["number"] == 1
    assert version["allowed_transitions"] == ["in_review", "retired"]
    card = client.get(f"/api/v1/versions/{w.v2.pk}/card/").json()
    assert card["revision"] == 1 and card["sections"]["model_details"].startswith("Gradient boosted")
    assert "intended_use" in card["missing_sections"]
    assert [c["revision"] for c in client.get(f"/api/v1/versions/{w.v2.pk}/card/revisions/").json()] == [1]
    diff = client.get(f"/api/v1/versions/{w.v2.pk}/diff/").json()
    assert diff["old"]["id"] == w.v1.pk and diff["new"]["id"] == w.v2.pk
    assert diff["metrics"] == [{"key": "accuracy", "old": 0.9, "new": 0.93, "delta": pytest.approx(0.03)}]
    assert diff["tags"] == {"added": ["tuned"], "removed": ["baseline"]}
    assert [row["section"] for row in diff["card"]] == ["model_details"]
    r = client.get(f"/api/v1/versions/{w.v1.pk}/artifact/")
    content = b"".join(r.streaming_content)
    assert len(content) == w.v1.artifact_size and r["X-Artifact-SHA256"] == w.v1.artifact_sha256
    import hashlib

    assert hashlib.sha256(content).hexdigest() == w.v1.artifact_sha256
    # the model's trail holds its versions' events and their cards' too (issue 14), newest first
    trail = client.get(f"/api/v1/models/{w.model.pk}/audit/").json()["results"]
    assert [e["action"] for e in trail] == ["card.save", "version.create", "version.create", "model.create"]
    assert [e["object_id"] for e in trail[1:3]] == [str(w.v2.pk), str(w.v1.pk)]
    assert trail[-1]["changes"]["after"]["name"] == "credit-scoring"
    v2_trail = client.get(f"/api/v1/versions/{w.v2.pk}/audit/").json()["results"]
    assert [e["action"] for e in v2_trail] == ["card.save", "version.create"]
    assert v2_trail[0]["object_id"] == str(w.card.pk)


def test_unsupported_methods_and_unknown_urls_answer_json(api, users, api_world):
    client = api.as_user(users.admin)
    assert_error(
        client.put(f"/api/v1/models/{api_world.model.pk}/", {"name": "x"}, format="json"), 405, "method_not_allowed"
    )
    assert_error(client.patch(f"/api/v1/memberships/{api_world.viewer_membership.pk}/", {}, format="json"), 405)
    assert_error(client.delete(f"/api/v1/versions/{api_world.v1.pk}/"), 405, "method_not_allowed")
    assert_error(client.delete(f"/api/v1/audit-events/{api_world.team_event.pk}/"), 405, "method_not_allowed")
    assert_error(client.get("/api/v1/no-such-thing/"), 404, "not_found")
