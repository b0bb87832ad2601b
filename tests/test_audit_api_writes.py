"""Every governed write through the API leaves exactly one audit event of its action.

The event carries the request id the caller sent (echoed in ``X-Request-ID``), the actor, the
source ``api``, and before/after snapshots where the write changes or removes something.
Token-authenticated writes name the token; refused writes leave ``permission.denied``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from governance.accounts import services as accounts
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from tests.conftest import make_artifact, move

pytestmark = pytest.mark.usefixtures("fast_passwords")


@dataclass(frozen=True)
class Write:
    action: str
    role: str
    method: str
    url: str
    body: Callable[[SimpleNamespace], dict] | None
    status: int
    object_type: str
    object_id: Callable[[SimpleNamespace, dict], object]  # from the world and the response body
    before: Callable[[dict], None] | None = None  # checks on changes["before"]; None: no "before"
    after: Callable[[dict], None] | None = None  # checks on changes["after"]; None: no "after"
    format: str = "json"


def _from_body(w, body):
    return body["id"]


WRITES = [
    Write("team.create", "superuser", "post", "/api/v1/teams/", lambda w: {"name": "Fraud", "description": "cards"}, 201,
          "accounts.team", _from_body, after=lambda a: a == {"id": a["id"], "name": "Fraud", "slug": "fraud",
                                                                 "description": "cards"} or pytest.fail(a)),
    Write("team.update", "admin", "patch", "/api/v1/teams/{w.team.pk}/", lambda w: {"description": "Retail credit"},
          200, "accounts.team", lambda w, b: w.team.pk,
          before=lambda b: b["description"] == "" or pytest.fail(b),
          after=lambda a: a["description"] == "Retail credit" or pytest.fail(a)),
    Write("membership.add", "admin", "post", "/api/v1/memberships/",
          lambda w: {"team": w.team.pk, "username": "newbie", "role": "reviewer"}, 201, "accounts.membership",
          _from_body, after=lambda a: a["role"] == "reviewer" or pytest.fail(a)),
    Write("membership.remove", "admin", "delete", "/api/v1/memberships/{w.viewer_membership.pk}/", None, 204,
          "accounts.membership", lambda w, b: w.viewer_membership.pk,
          before=lambda b: b["role"] == "viewer" or pytest.fail(b)),
    Write("token.create", "author", "post", "/api/v1/tokens/", lambda w: {"name": "ci", "scopes": ["write", "read"]},
          201, "accounts.apitoken", lambda w, b: b["token"]["id"],
          after=lambda a: a["scopes"] == ["read", "write"] and "token_hash" not in a or pytest.fail(a)),
    Write("token.revoke", "author", "post", "/api/v1/tokens/{w.token.pk}/revoke/", None, 200, "accounts.apitoken",
          lambda w, b: w.token.pk, before=lambda b: b["revoked_at"] is None or pytest.fail(b),
          after=lambda a: a["revoked_at"] is not None or pytest.fail(a)),
    Write("model.create", "author", "post", "/api/v1/models/",
          lambda w: {"team": w.team.pk, "name": "fraud", "risk_tier": "high", "owners": ["author", "approver"],
                     "business_kpis": [{"name": "loss rate", "target": "<2%"}]}, 201,
          "registry.registeredmodel", _from_body,
          after=lambda a: (a["risk_tier"], a["owners"], a["business_kpis"][0]["name"]) == (
              "high", ["approver", "author"], "loss rate") or pytest.fail(a)),
    Write("model.update", "author", "patch", "/api/v1/models/{w.model.pk}/",
          lambda w: {"use_case": "retail and SME credit", "owners": ["author"]}, 200, "registry.registeredmodel",
          lambda w, b: w.model.pk,
          before=lambda b: (b["use_case"], b["owners"]) == ("retail credit", []) or pytest.fail(b),
          after=lambda a: (a["use_case"], a["owners"]) == ("retail and SME credit", ["author"]) or pytest.fail(a)),
    Write("model.retier", "admin", "post", "/api/v1/models/{w.model.pk}/risk-tier/",
          lambda w: {"risk_tier": "high", "reason": "Decides on credit."}, 200, "registry.registeredmodel",
          lambda w, b: w.model.pk, before=lambda b: b == {"risk_tier": "limited"} or pytest.fail(b),
          after=lambda a: a == {"risk_tier": "high"} or pytest.fail(a)),
    Write("model.delete", "admin", "delete", "/api/v1/models/{w.empty_model.pk}/", None, 204,
          "registry.registeredmodel", lambda w, b: w.empty_model.pk,
          before=lambda b: b["name"] == "churn" or pytest.fail(b)),
    Write("version.create", "author", "post", "/api/v1/versions/",
          lambda w: {"model": w.model.pk, "artifact": make_artifact(b"\x80\x04abc"), "metrics": '{"auc": 0.7}'}, 201,
          "registry.modelversion", _from_body,
          after=lambda a: (a["number"], a["metrics"], a["stage"], a["artifact_size"]) == (3, {"auc": 0.7}, "draft", 5)
          or pytest.fail(a), format="multipart"),
    Write("version.update", "author", "patch", "/api/v1/versions/{w.v1.pk}/", lambda w: {"description": "Retrained"},
          200, "registry.modelversion", lambda w, b: w.v1.pk,
          before=lambda b: b["description"] == "" or pytest.fail(b),
          after=lambda a: a["description"] == "Retrained" or pytest.fail(a)),
    Write("version.transition", "author", "post", "/api/v1/versions/{w.v1.pk}/transition/",
          lambda w: {"to": "retired", "reason": "superseded"}, 200, "registry.modelversion",
          lambda w, b: w.v1.pk, before=lambda b: b == {"stage": "draft"} or pytest.fail(b),
          after=lambda a: a == {"stage": "retired"} or pytest.fail(a)),
    Write("card.save", "author", "put", "/api/v1/versions/{w.v2.pk}/card/",
          lambda w: {"sections": {"intended_use": "Retail credit decisions in the EU."}, "comment": "scope"}, 200,
          "registry.modelcard", _from_body, before=lambda b: b["revision"] == 1 or pytest.fail(b),
          after=lambda a: (a["revision"], a["comment"]) == (2, "scope") or pytest.fail(a)),
]  # fmt: skip


def _send(client, write: Write, w, **extra):
    call = getattr(client, write.method)
    body = write.body(w) if write.body else None
    return call(write.url.format(w=w), body, format=write.format, **extra)


@pytest.mark.parametrize("write", WRITES, ids=[w.action for w in WRITES])
def test_each_write_leaves_one_event_with_the_request_id(api, users, api_world, write):
    actor = getattr(users, write.role)
    client = api.as_user(actor)
    seq_before = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    request_id = f"ci-run-42.{write.action}"

    r = _send(client, write, api_world, HTTP_X_REQUEST_ID=request_id)

    assert r.status_code == write.status, r.content[:500]
    assert r["X-Request-ID"] == request_id
    new = list(AuditEvent.objects.filter(seq__gt=seq_before))
    assert len(new) == 1, [e.action for e in new]
    event = new[0]
    body = r.json() if r.content else {}
    assert event.action == write.action
    assert event.request_id == request_id
    assert (event.actor, event.actor_label, event.source) == (actor, actor.username, "api")
    assert event.object_type == write.object_type
    assert event.object_id == str(write.object_id(api_world, body))
    changes = json.loads(event.changes)
    assert "token_id" not in changes
    if write.before is None:
        assert "before" not in changes
    else:
        write.before(changes["before"])
    if write.after is None:
        assert "after" not in changes
    else:
        write.after(changes["after"])
    if write.action not in ("token.create", "token.revoke", "team.create"):
        assert event.team_id == api_world.team.pk
    # The API shows the same event, with its changes as an object.
    shown = client.get(f"/api/v1/audit-events/?request_id={request_id}").json()["results"]
    assert [e["id"] for e in shown] == [event.pk]
    assert shown[0]["changes"] == changes


def test_a_request_id_is_minted_when_none_or_a_malformed_one_is_sent(api, users, api_world):
    client = api.as_user(users.author)
    for sent in (None, "has spaces and ; semicolons", "x" * 65):
        extra = {} if sent is None else {"HTTP_X_REQUEST_ID": sent}
        r = client.patch(
            f"/api/v1/models/{api_world.model.pk}/", {"description": str(sent)[:20]}, format="json", **extra
        )
        assert r.status_code == 200
        minted = r["X-Request-ID"]
        assert minted != sent and len(minted) == 32
        assert AuditEvent.objects.get(request_id=minted).action == "model.update"
    # Reads are not audited but still get an id.
    r = client.get("/api/v1/models/", HTTP_X_REQUEST_ID="read-1")
    assert r["X-Request-ID"] == "read-1"
    assert not AuditEvent.objects.filter(request_id="read-1").exists()


def test_token_authenticated_writes_name_the_token_and_its_owner(api, users, api_world):
    with audit_context(source="cli", actor=users.author):
        token, secret = accounts.token_create(actor=users.author, name="ci", scopes=["read", "write", "transition"])
    client = api.with_token(secret)
    r = client.post(
        "/api/v1/models/", {"team": api_world.team.pk, "name": "fraud"}, format="json", HTTP_X_REQUEST_ID="tok-1"
    )
    assert r.status_code == 201, r.content[:300]
    r = client.post(
        f"/api/v1/versions/{api_world.v1.pk}/transition/", {"to": "retired"}, format="json", HTTP_X_REQUEST_ID="tok-2"
    )
    assert r.status_code == 200, r.content[:300]
    for request_id, action in (("tok-1", "model.create"), ("tok-2", "version.transition")):
        event = AuditEvent.objects.get(request_id=request_id)
        assert (event.action, event.actor, event.actor_label, event.source) == (action, users.author, "author", "api")
        assert json.loads(event.changes)["token_id"] == token.pk


def test_a_refused_write_leaves_a_permission_denied_event(api, users, api_world):
    client = api.as_user(users.viewer)
    r = client.post(
        f"/api/v1/versions/{api_world.v1.pk}/transition/",
        {"to": "retired"},
        format="json",
        HTTP_X_REQUEST_ID="denied-1",
    )
    assert r.status_code == 403
    event = AuditEvent.objects.get(request_id="denied-1", action="permission.denied")
    assert (event.action, event.actor, event.source) == ("permission.denied", users.viewer, "api")
    assert event.object_type == "request"
    assert event.object_id == f"POST /api/v1/versions/{api_world.v1.pk}/transition/"
    assert json.loads(event.changes) == {"code": "permission_denied", "detail": r.json()["detail"]}
    assert not AuditEvent.objects.filter(action="version.transition").exists()
    # a lifecycle step is a governed write: its trail shows the refusal too (tests/test_refusals_audited.py)
    refused = AuditEvent.objects.get(request_id="denied-1", action="version.transition.refused")
    assert (refused.object_type, refused.object_id) == ("registry.modelversion", str(api_world.v1.pk))


def test_a_refused_token_write_names_the_token(api, users, api_world):
    with audit_context(source="cli", actor=users.author):
        token, secret = accounts.token_create(actor=users.author, name="ro", scopes=["read"])
    r = api.with_token(secret).post(
        "/api/v1/models/", {"team": api_world.team.pk, "name": "fraud"}, format="json", HTTP_X_REQUEST_ID="denied-2"
    )
    assert r.status_code == 403 and r.json()["code"] == "token_scope_missing"
    event = AuditEvent.objects.get(request_id="denied-2")
    assert (event.action, event.actor) == ("permission.denied", users.author)
    changes = json.loads(event.changes)
    assert changes["code"] == "token_scope_missing" and changes["token_id"] == token.pk


def test_refused_reads_and_invalid_input_are_not_audited(api, users, api_world):
    before = AuditEvent.objects.count()
    viewer = api.as_user(users.viewer)
    after_login = AuditEvent.objects.count()
    assert after_login == before + 1  # the session login itself
    assert viewer.get(f"/api/v1/models/{api_world.foreign_model.pk}/").status_code == 404
    author = api.as_user(users.author)
    assert author.post("/api/v1/models/", {"team": api_world.team.pk}, format="json").status_code == 400
    assert AuditEvent.objects.count() == after_login + 1  # the author's login, nothing else


# --- the audit-events endpoint: filters, retrieve, verify ----------------------------------


@pytest.fixture
def trail(api, users, api_world):
    move(api_world.v2, "in_review", "approved", actor=users.admin)  # the review steps belong to approvals
    author = api.as_user(users.author)
    author.patch(f"/api/v1/models/{api_world.model.pk}/", {"description": "a"}, format="json", HTTP_X_REQUEST_ID="f-1")
    author.post(f"/api/v1/versions/{api_world.v1.pk}/transition/", {"to": "retired"}, format="json",
                HTTP_X_REQUEST_ID="f-2")  # fmt: skip
    api.as_user(users.approver).post(
        f"/api/v1/versions/{api_world.v2.pk}/transition/", {"to": "deprecated"}, format="json", HTTP_X_REQUEST_ID="f-3"
    )
    return api_world


def _actions(response) -> list[str]:
    assert response.status_code == 200, response.content[:300]
    return [e["action"] for e in response.json()["results"]]


def test_audit_events_filter_by_object_actor_action_source_and_request(api, users, trail):
    w = trail
    client = api.as_user(users.auditor)
    base = "/api/v1/audit-events/"
    assert _actions(client.get(f"{base}?object_type=registry.modelversion&object_id={w.v1.pk}")) == [
        "version.transition",
        "version.create",
    ]
    assert _actions(client.get(f"{base}?action=version.transition&source=api")) == ["version.transition"] * 2
    assert _actions(client.get(f"{base}?action_prefix=model.")) == ["model.update", "model.create", "model.create"]
    assert _actions(client.get(f"{base}?actor={users.approver.pk}&source=api")) == ["version.transition"]
    assert _actions(client.get(f"{base}?actor_label=approver&action=version.transition")) == ["version.transition"]
    assert _actions(client.get(f"{base}?request_id=f-1")) == ["model.update"]
    assert _actions(client.get(f"{base}?source=cli&action=card.save")) == ["card.save"]
    assert _actions(client.get(f"{base}?team={w.team.pk}&action=model.create")) == ["model.create", "model.create"]
    first = AuditEvent.objects.get(request_id="f-2")
    since = first.created_at.isoformat()
    assert _actions(client.get(f"{base}?since={since.replace('+', '%2B')}&source=api&team={w.team.pk}")) == [
        "version.transition",
        "version.transition",
    ]
    assert _actions(client.get(f"{base}?until={since.replace('+', '%2B')}&request_id=f-2")) == []
    assert_bad = client.get(f"{base}?since=yesterday")
    assert assert_bad.status_code == 400 and assert_bad.json()["code"] == "invalid"
    assert client.get(f"{base}?actor=bob").status_code == 400


def test_audit_events_page_newest_first_with_a_cursor(api, users, trail):
    client = api.as_user(users.auditor)
    page = client.get("/api/v1/audit-events/?page_size=2").json()
    seqs = [e["seq"] for e in page["results"]]
    assert len(seqs) == 2 and seqs[0] > seqs[1]
    assert page["next"] and "cursor=" in page["next"]
    following = client.get(page["next"]).json()
    assert following["results"][0]["seq"] < seqs[1]


def test_an_audit_event_shows_its_links_and_changes(api, users, trail):
    event = AuditEvent.objects.get(request_id="f-3")
    body = api.as_user(users.viewer).get(f"/api/v1/audit-events/{event.pk}/").json()
    assert body["seq"] == event.seq and body["hash"] == event.hash and body["prev_hash"] == event.prev_hash
    assert body["actor"] == users.approver.pk and body["actor_label"] == "approver"
    assert body["changes"]["after"] == {"stage": "deprecated"}
    previous = AuditEvent.objects.get(seq=event.seq - 1)
    assert body["prev_hash"] == previous.hash


@pytest.mark.parametrize("role", ["auditor", "admin", "superuser"])
def test_verify_reports_an_intact_chain(api, users, trail, role):
    r = api.as_user(getattr(users, role)).post("/api/v1/audit-events/verify/")
    assert r.status_code == 200, r.content[:300]
    body = r.json()
    head = AuditEvent.objects.order_by("-seq").first()
    assert body["ok"] is True and body["reason"] == "" and body["first_broken_seq"] is None
    assert body["head_seq"] == head.seq
    assert body["events_checked"] == AuditEvent.objects.count()
