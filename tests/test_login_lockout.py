"""Sign-in lockout (django-axes, governance/accounts/lockout.py): 20 wrong passwords, then the right one,
does not sign in; the page says why, with 403. Another user, or the same user from another address,
signs in. Each failure stays a ``user.login_failed`` event and the lockout is one ``user.locked_out``."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from governance.audit.models import AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LIMIT = 10  # settings.AXES_FAILURE_LIMIT, the shipped default


def _post(client: Client, username: str, password: str):
    return client.post("/login/", {"username": username, "password": password})


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_twenty_wrong_passwords_then_the_right_one_does_not_sign_in(users, settings):
    assert settings.AXES_FAILURE_LIMIT == LIMIT
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    statuses = [_post(attacker, "author", f"guess-{i}").status_code for i in range(20)]
    # a wrong password is the form again (200) until the limit; from the limit on, the lockout page
    assert statuses[: LIMIT - 1] == [200] * (LIMIT - 1) and set(statuses[LIMIT - 1 :]) == {403}, statuses

    right = _post(attacker, "author", PASSWORD)
    assert right.status_code == 403 and not _signed_in(attacker)
    page = right.content.decode()
    assert 'id="login-locked"' in page and "Too many failed sign-ins" in page and "15 minutes" in page
    assert 'name="username"' in page and 'value="author"' in page, "the sign-in form is still there"
    assert right["Retry-After"] == str(15 * 60)

    # another user from the same address, and the same user from another address, sign in
    neighbour = Client(REMOTE_ADDR="203.0.113.7")
    assert _post(neighbour, "viewer", PASSWORD).status_code == 302 and _signed_in(neighbour)
    elsewhere = Client(REMOTE_ADDR="198.51.100.20")
    assert _post(elsewhere, "author", PASSWORD).status_code == 302 and _signed_in(elsewhere)

    failed = [json.loads(e.changes) for e in AuditEvent.objects.filter(action="user.login_failed")]
    assert [f["username"] for f in failed] == ["author"] * 21, "every refused attempt, the right password too"
    locked = list(AuditEvent.objects.filter(action="user.locked_out"))
    assert len(locked) == 1, "the lockout is recorded once, when it starts"
    changes = json.loads(locked[0].changes)
    assert (changes["username"], changes["ip_address"], changes["failures"]) == ("author", "203.0.113.7", LIMIT)
    assert locked[0].request_id


def test_an_admin_unlocks_a_locked_out_user(users):
    client = Client(REMOTE_ADDR="203.0.113.8")
    for i in range(LIMIT):
        _post(client, "author", f"guess-{i}")
    assert _post(client, "author", PASSWORD).status_code == 403
    call_command("axes_reset_username", "author", stdout=io.StringIO())
    assert _post(client, "author", PASSWORD).status_code == 302 and _signed_in(client)


def test_the_lockout_applies_to_the_admin_sign_in_too(users):
    client = Client(REMOTE_ADDR="203.0.113.9")
    for i in range(LIMIT):
        client.post("/admin/login/", {"username": "root", "password": f"guess-{i}"})
    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD})
    assert response.status_code == 403 and not _signed_in(client)


def test_a_success_before_the_limit_starts_the_count_again(users):
    client = Client(REMOTE_ADDR="203.0.113.10")
    for i in range(LIMIT - 1):
        _post(client, "author", f"guess-{i}")
    assert _post(client, "author", PASSWORD).status_code == 302
    other = Client(REMOTE_ADDR="203.0.113.10")
    assert _post(other, "author", "one-more-typo").status_code == 200, "not locked: the count was reset"
