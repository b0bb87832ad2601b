"""API tokens: shown once, stored as a sha256, scoped, expiring, revocable, optionally team-bound."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from governance.accounts import services as accounts
from governance.accounts.models import ApiToken, Membership, Role
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.core.errors import NotPermitted, ValidationFailed
from tests.conftest import PASSWORD, assert_error, governed_state, make_artifact

pytestmark = pytest.mark.usefixtures("fast_passwords")
User = get_user_model()


def _token(user, *scopes, team=None, days=30):
    with audit_context(source="cli", actor=user):
        return accounts.token_create(actor=user, name="ci", scopes=list(scopes), team=team, expires_in_days=days)


def test_the_secret_is_returned_once_and_only_its_hash_is_kept(api, users, team):
    client = api.as_user(users.author)
    r = client.post(
        "/api/v1/tokens/",
        {"name": "github-actions", "scopes": ["read", "write"], "team": team.pk, "expires_in_days": 7},
        format="json",
        HTTP_X_REQUEST_ID="tok-create",
    )
    assert r.status_code == 201, r.content[:300]
    body = r.json()
    secret = body["secret"]
    assert secret.startswith("chr_") and len(secret) > 40
    assert set(body["token"]) == {
        "id", "name", "prefix", "team", "parent", "scopes", "created_at", "expires_at", "revoked_at",
        "last_used_at",
    }  # fmt: skip
    token = ApiToken.objects.get(pk=body["token"]["id"])
    assert (token.user, token.team, token.scopes) == (users.author, team, ["read", "write"])
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(f"chr_{token.prefix}_")
    assert timezone.now() + dt.timedelta(days=6) < token.expires_at <= timezone.now() + dt.timedelta(days=7)
    for field in ApiToken._meta.concrete_fields:
        value = getattr(token, field.attname)
        assert secret not in json.dumps(value, default=str), field.name
        assert secret.split("_", 2)[2] not in json.dumps(value, default=str), field.name
    for event in AuditEvent.objects.all():
        assert secret not in event.changes and token.token_hash not in event.changes
    # It is never shown again.
    listed = client.get("/api/v1/tokens/").json()["results"]
    assert [t["id"] for t in listed] == [token.pk]
    assert secret not in json.dumps(listed)
    assert secret not in client.get(f"/api/v1/tokens/{token.pk}/").content.decode()
    # And it works.
    assert api.with_token(secret).get("/api/v1/models/").status_code == 200


def test_a_token_authenticates_as_its_owner_and_records_its_use(api, users, model):
    token, secret = _token(users.author, "read")
    r = api.with_token(secret).get("/api/v1/models/")
    assert r.status_code == 200 and [m["id"] for m in r.json()["results"]] == [model.pk]
    token.refresh_from_db()
    assert token.last_used_at is not None and timezone.now() - token.last_used_at < dt.timedelta(seconds=10)
    client = api.as_user(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")  # the other keyword DRF users know
    r = client.get("/api/v1/tokens/")
    assert [t["id"] for t in r.json()["results"]] == [token.pk]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer chr_000000000000_nope",  # no such prefix
        "Bearer chr_",
        "Bearer not-a-charter-token",
        "Bearer",
        "Bearer chr_a chr_b",
        "Token chr_000000000000_nope",
    ],
)
def test_malformed_or_unknown_tokens_are_refused(api, users, model, header):
    client = api.as_user(None)
    client.credentials(HTTP_AUTHORIZATION=header)
    before = governed_state()
    assert_error(client.get("/api/v1/models/"), 401, "authentication_failed")
    assert_error(client.post("/api/v1/models/", {"team": model.team_id, "name": "x"}, format="json"), 401)
    assert governed_state() == before


def test_a_token_with_the_right_prefix_and_the_wrong_secret_is_refused(api, users):
    token, secret = _token(users.author, "read")
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert_error(api.with_token(forged).get("/api/v1/models/"), 401, "authentication_failed")


@pytest.mark.parametrize("how", ["expired", "revoked", "owner-inactive"])
def test_expired_revoked_or_orphaned_tokens_are_refused(api, users, model, how):
    token, secret = _token(users.author, "read", "write")
    client = api.with_token(secret)
    assert client.get("/api/v1/models/").status_code == 200
    if how == "expired":
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    elif how == "revoked":
        r = api.as_user(users.author).post(f"/api/v1/tokens/{token.pk}/revoke/")
        assert r.status_code == 200 and r.json()["revoked_at"]
    else:
        User.objects.filter(pk=users.author.pk).update(is_active=False)
    before = governed_state()
    for r in (
        client.get("/api/v1/models/"),
        client.get(f"/api/v1/models/{model.pk}/"),
        client.post("/api/v1/models/", {"team": model.team_id, "name": "late"}, format="json"),
    ):
        body = assert_error(r, 401, "authentication_failed")
        assert body["detail"]
    assert governed_state() == before


def test_a_read_only_token_reads_but_cannot_register_a_version(api, users, model, version):
    token, secret = _token(users.author, "read")
    client = api.with_token(secret)
    assert client.get("/api/v1/versions/").status_code == 200
    assert client.get(f"/api/v1/versions/{version.pk}/").status_code == 200
    assert client.get(f"/api/v1/versions/{version.pk}/artifact/").status_code == 200
    before = governed_state()
    r = client.post("/api/v1/versions/", {"model": model.pk, "artifact": make_artifact()}, format="multipart")
    assert_error(r, 403, "token_scope_missing")
    for r in (
        client.post("/api/v1/models/", {"team": model.team_id, "name": "x"}, format="json"),
        client.patch(f"/api/v1/versions/{version.pk}/", {"description": "x"}, format="json"),
        client.put(f"/api/v1/versions/{version.pk}/card/", {"sections": {"intended_use": "x" * 30}}, format="json"),
        client.post(f"/api/v1/versions/{version.pk}/transition/", {"to": "in_review"}, format="json"),
        client.post("/api/v1/tokens/", {"name": "escalate", "scopes": ["admin"]}, format="json"),
        client.post(f"/api/v1/tokens/{token.pk}/revoke/"),
    ):
        assert_error(r, 403, "token_scope_missing")
    assert governed_state() == before
    # The owner's role was never the problem: a write token of the same user registers it.
    _, writer = _token(users.author, "read", "write")
    r = api.with_token(writer).post(
        "/api/v1/versions/", {"model": model.pk, "artifact": make_artifact()}, format="multipart"
    )
    assert r.status_code == 201, r.content[:300]


def test_a_write_token_cannot_move_versions_without_the_transition_scope(api, users, version):
    _, secret = _token(users.author, "read", "write")
    r = api.with_token(secret).post(f"/api/v1/versions/{version.pk}/transition/", {"to": "retired"}, format="json")
    assert_error(r, 403, "token_scope_missing")
    version.refresh_from_db()
    assert version.stage == "draft"
    _, mover = _token(users.author, "transition")
    r = api.with_token(mover).post(f"/api/v1/versions/{version.pk}/transition/", {"to": "retired"}, format="json")
    assert r.status_code == 200 and r.json()["stage"] == "retired"


def test_a_token_never_exceeds_its_owners_role(api, users, version):
    _, secret = _token(users.viewer, "read", "write", "transition", "admin")
    client = api.with_token(secret)
    assert_error(client.post(f"/api/v1/versions/{version.pk}/transition/", {"to": "retired"}, format="json"), 403)
    assert_error(client.patch(f"/api/v1/versions/{version.pk}/", {"description": "x"}, format="json"), 403)


def test_a_team_restricted_token_sees_only_that_team(api, users, team, other_team, make_model, make_version):
    both = User.objects.create_user("both", "both@example.com", PASSWORD)
    Membership.objects.create(user=both, team=team, role=Role.AUTHOR)
    Membership.objects.create(user=both, team=other_team, role=Role.AUTHOR)
    mine = make_model("credit-scoring")
    theirs = make_model("campaign-uplift", owner_team=other_team, actor=both)
    theirs_v1 = make_version(theirs, actor=both)
    _, secret = _token(both, "read", "write", team=team)
    client = api.with_token(secret)
    assert [m["id"] for m in client.get("/api/v1/models/").json()["results"]] == [mine.pk]
    assert [t["id"] for t in client.get("/api/v1/teams/").json()["results"]] == [team.pk]
    assert client.get("/api/v1/versions/").json()["results"] == []
    assert_error(client.get(f"/api/v1/models/{theirs.pk}/"), 404)
    assert_error(client.get(f"/api/v1/versions/{theirs_v1.pk}/"), 404)
    events = client.get("/api/v1/audit-events/?page_size=200").json()["results"]
    assert other_team.pk not in {e["team_id"] for e in events}
    before = governed_state()
    assert_error(
        client.post("/api/v1/models/", {"team": other_team.pk, "name": "x"}, format="json"), 404, "team_not_found"
    )
    r = client.post("/api/v1/versions/", {"model": theirs.pk, "artifact": make_artifact()}, format="multipart")
    assert_error(r, 404, "model_not_found")
    assert governed_state() == before
    # The same user without the restriction sees both teams.
    _, unrestricted = _token(both, "read")
    seen = {m["id"] for m in api.with_token(unrestricted).get("/api/v1/models/").json()["results"]}
    assert seen == {mine.pk, theirs.pk}


def test_tokens_can_be_bound_only_to_a_team_of_the_caller(api, users, team, other_team):
    r = api.as_user(users.author).post(
        "/api/v1/tokens/", {"name": "ci", "scopes": ["read"], "team": other_team.pk}, format="json"
    )
    assert_error(r, 404, "team_not_found")
    with audit_context(source="cli", actor=users.author), pytest.raises(NotPermitted):
        accounts.token_create(actor=users.author, name="ci", scopes=["read"], team=other_team)
    with audit_context(source="cli", actor=users.author), pytest.raises(ValidationFailed) as raised:
        accounts.token_create(actor=users.author, name="ci", scopes=["root"])
    assert raised.value.code == "invalid_scope"
    with audit_context(source="cli", actor=users.author), pytest.raises(ValidationFailed) as raised:
        accounts.token_create(actor=users.author, name="ci", scopes=["read"], expires_in_days=400)
    assert raised.value.code == "invalid_expiry"


def test_only_the_owner_revokes_a_token(api, users):
    token, secret = _token(users.author, "read")
    for role in ("viewer", "admin", "outsider", "superuser"):
        assert_error(api.as_user(getattr(users, role)).post(f"/api/v1/tokens/{token.pk}/revoke/"), 404)
    token.refresh_from_db()
    assert token.revoked_at is None
    # The service refuses another user even when handed the token directly.
    with audit_context(source="cli", actor=users.admin), pytest.raises(NotPermitted):
        accounts.token_revoke(actor=users.admin, token=token)
    r = api.as_user(users.author).post(f"/api/v1/tokens/{token.pk}/revoke/")
    assert r.status_code == 200
    assert_error(api.with_token(secret).get("/api/v1/models/"), 401, "authentication_failed")


def test_an_admin_token_revokes_its_owners_other_tokens(api, users):
    old, old_secret = _token(users.author, "read")
    _, admin_secret = _token(users.author, "admin")
    r = api.with_token(admin_secret).post(f"/api/v1/tokens/{old.pk}/revoke/")
    assert r.status_code == 200
    event = AuditEvent.objects.get(action="token.revoke", object_id=str(old.pk))
    assert event.actor == users.author and json.loads(event.changes)["token_id"] != old.pk


def _secret(user, scopes, team=None):
    with audit_context(source="cli", actor=user):
        return accounts.token_create(actor=user, name=f"t-{'-'.join(scopes)}", scopes=scopes, team=team)[1]


def test_a_team_restricted_token_binds_even_a_superuser(api, users, team, other_team, make_model):
    foreign = make_model("campaign", owner_team=other_team, actor=users.outsider)
    client = api.with_token(_secret(users.superuser, ["read", "write"], team=team))
    assert client.get(f"/api/v1/models/{foreign.pk}/").status_code == 404
    assert foreign.pk not in [m["id"] for m in client.get("/api/v1/models/").json()["results"]]
    r = client.post("/api/v1/models/", {"team": other_team.pk, "name": "sneaky"}, format="json")
    assert r.status_code == 404


def test_a_token_cannot_mint_a_stronger_token(api, users, team):
    admin_only = api.with_token(_secret(users.admin, ["admin"], team=team))
    before = ApiToken.objects.count()
    wider_scopes = admin_only.post(
        "/api/v1/tokens/", {"name": "x", "scopes": ["admin", "write"], "team": team.pk}, format="json"
    )
    assert wider_scopes.status_code == 403 and wider_scopes.json()["code"] == "token_scope_missing"
    wider_team = admin_only.post("/api/v1/tokens/", {"name": "x", "scopes": ["admin"]}, format="json")
    assert wider_team.status_code == 403
    assert ApiToken.objects.count() == before
    same = admin_only.post("/api/v1/tokens/", {"name": "x", "scopes": ["admin"], "team": team.pk}, format="json")
    assert same.status_code == 201


def test_reading_with_a_token_needs_the_read_scope(api, users, model):
    client = api.with_token(_secret(users.author, ["write"]))
    r = client.get("/api/v1/models/")
    assert r.status_code == 403 and r.json()["code"] == "token_scope_missing"
    assert client.get(f"/api/v1/versions/?model={model.pk}").status_code == 403
    assert api.with_token(_secret(users.author, ["read"])).get("/api/v1/models/").status_code == 200
