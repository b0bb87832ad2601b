"""Issue 10, finding 4: a token cannot outlive or outrank the token that created it.

The attempt, through the API: a token valid for one day asks for a token valid for a year, then
for a scope it lacks; both are refused with a sentence (the first names the parent's expiry) and
audited. The children it may create live no longer than it, and revoking it revokes them and
their own children, each revocation audited; none of them authenticates afterwards.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from governance.accounts.models import ApiToken
from governance.audit.models import AuditEvent
from tests.conftest import assert_error

pytestmark = pytest.mark.usefixtures("fast_passwords")


def _create(client, request_id: str = "", **body):
    headers = {"HTTP_X_REQUEST_ID": request_id} if request_id else {}
    return client.post("/api/v1/tokens/", {"name": "ci", "scopes": ["read"], **body}, format="json", **headers)


def test_a_token_cannot_outlive_or_outrank_its_parent_and_is_revoked_with_it(api, users):
    person = api.as_user(users.author)
    r = _create(person, name="one-day", scopes=["admin", "read", "write"], expires_in_days=1)
    assert r.status_code == 201, r.content[:300]
    parent, parent_secret = ApiToken.objects.get(pk=r.json()["token"]["id"]), r.json()["secret"]
    assert parent.parent is None  # created by a person
    as_parent = api.with_token(parent_secret)

    # A year-long child of a one-day token: refused, naming the parent's expiry, audited.
    before = ApiToken.objects.count()
    r = _create(as_parent, name="a-year", expires_in_days=365, request_id="outlive")
    body = assert_error(r, 403, "token_outlives_parent")
    assert parent.expires_at.strftime("%Y-%m-%d %H:%M UTC") in body["detail"]
    assert "at most 1 day" in body["detail"] and body["fields"] == {"expires_in_days": "At most 1."}
    refused = AuditEvent.objects.get(action="token.create.refused", request_id="outlive")
    assert (refused.actor, refused.source) == (users.author, "api")
    changes = json.loads(refused.changes)
    assert (changes["code"], changes["expires_in_days"], changes["token_id"]) == (
        "token_outlives_parent", 365, parent.pk
    )  # fmt: skip
    # A scope the parent lacks: refused, audited (this was already enforced; the audit is new).
    r = _create(as_parent, name="more", scopes=["read", "transition"], request_id="outrank")
    assert_error(r, 403, "token_scope_missing")
    refused = AuditEvent.objects.get(action="token.create.refused", request_id="outrank")
    assert json.loads(refused.changes)["scopes"] == ["read", "transition"]
    assert ApiToken.objects.count() == before

    # What it may create lives no longer than it, and is its child; a grandchild likewise.
    r = _create(as_parent, name="child", scopes=["admin", "read"], expires_in_days=1)
    assert r.status_code == 201, r.content[:300]
    child, child_secret = ApiToken.objects.get(pk=r.json()["token"]["id"]), r.json()["secret"]
    assert r.json()["token"]["parent"] == parent.pk
    assert child.parent == parent and child.expires_at <= parent.expires_at
    r = _create(api.with_token(child_secret), name="grandchild", expires_in_days=1)
    assert r.status_code == 201, r.content[:300]
    grandchild, grandchild_secret = ApiToken.objects.get(pk=r.json()["token"]["id"]), r.json()["secret"]
    assert grandchild.parent == child and grandchild.expires_at <= parent.expires_at
    sibling = ApiToken.objects.create(  # another token of the same person, not created by this one
        user=users.author, name="unrelated", prefix="unrelated01", token_hash="0" * 64, scopes=["read"],
        expires_at=timezone.now() + dt.timedelta(days=30),
    )  # fmt: skip
    for secret in (parent_secret, child_secret, grandchild_secret):
        assert api.with_token(secret).get("/api/v1/models/").status_code == 200

    # Revoking the parent revokes what it created, transitively; each revocation is audited.
    r = person.post(f"/api/v1/tokens/{parent.pk}/revoke/", HTTP_X_REQUEST_ID="revoke")
    assert r.status_code == 200 and r.json()["revoked_at"]
    for token in (parent, child, grandchild):
        token.refresh_from_db()
        assert token.revoked_at is not None
    sibling.refresh_from_db()
    assert sibling.revoked_at is None
    events = {int(e.object_id): e for e in AuditEvent.objects.filter(action="token.revoke", request_id="revoke")}
    assert set(events) == {parent.pk, child.pk, grandchild.pk}
    assert all(e.actor == users.author for e in events.values())
    assert "revoked_with" not in json.loads(events[parent.pk].changes)
    for token in (child, grandchild):
        changes = json.loads(events[token.pk].changes)
        assert changes["revoked_with"] == parent.pk and changes["after"]["revoked_at"]
    for secret in (parent_secret, child_secret, grandchild_secret):
        assert_error(api.with_token(secret).get("/api/v1/models/"), 401, "authentication_failed")


def test_the_parents_last_partial_day_is_granted_up_to_its_expiry(api, users):
    r = _create(api.as_user(users.author), scopes=["admin", "read"], expires_in_days=3)
    parent = ApiToken.objects.get(pk=r.json()["token"]["id"])
    as_parent = api.with_token(r.json()["secret"])
    # three days asked of a token with a little under three days left: it ends with its parent
    r = _create(as_parent, expires_in_days=3)
    assert r.status_code == 201, r.content[:300]
    assert ApiToken.objects.get(pk=r.json()["token"]["id"]).expires_at == parent.expires_at
    assert_error(_create(as_parent, expires_in_days=4), 403, "token_outlives_parent")


def test_a_revoked_parent_creates_nothing(api, users):
    r = _create(api.as_user(users.author), scopes=["admin", "read"], expires_in_days=5)
    parent_secret = r.json()["secret"]
    api.as_user(users.author).post(f"/api/v1/tokens/{r.json()['token']['id']}/revoke/")
    assert_error(_create(api.with_token(parent_secret)), 401, "authentication_failed")
    assert ApiToken.objects.count() == 1


def test_revoking_from_the_tokens_page_says_what_went_with_it(api, login, users):
    r = _create(api.as_user(users.author), scopes=["admin", "read"], expires_in_days=5)
    parent = r.json()["token"]["id"]
    assert _create(api.with_token(r.json()["secret"]), name="child", expires_in_days=5).status_code == 201
    response = login(users.author).post(f"/tokens/{parent}/revoke/", follow=True)
    assert "With it, 1 token it created." in response.content.decode()
    assert ApiToken.objects.filter(revoked_at__isnull=True).count() == 0
