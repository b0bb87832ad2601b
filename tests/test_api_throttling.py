"""API rate limits (DRF throttles, governance/core/throttling.py): past its rate a token, or a user
with all their tokens and sessions together, gets 429 ``throttled`` with ``Retry-After``; another
token, another user, is unaffected. The counters live in the configured cache (Redis here)."""

from __future__ import annotations

import uuid

import pytest

from governance.accounts import services as accounts
from governance.core.context import audit_context
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/"


@pytest.fixture(autouse=True)
def _own_counters(settings):
    """The same cache backend, under a key prefix of this test's own: no count left by another run."""
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}


def _rates(settings, **rates):
    # per hour: the test never straddles the boundary of a fixed window
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": None, "user": None, **rates},
    }


def _token(user, name: str) -> str:
    with audit_context(source="cli", actor=user):
        return accounts.token_create(actor=user, name=name, scopes=["read"])[1]


def _throttled(response) -> int:
    assert_error(response, 429, "throttled")
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 3600, retry_after
    return retry_after


def test_a_token_past_its_rate_gets_429_with_retry_after_and_another_token_does_not(settings, api, users):
    _rates(settings, token="3/hour")
    first = api.with_token(_token(users.author, "ci-a"))
    second = api.with_token(_token(users.author, "ci-b"))
    assert [first.get(URL).status_code for _ in range(3)] == [200, 200, 200]
    _throttled(first.get(URL))
    assert second.get(URL).status_code == 200, "another token of the same user has its own count"
    assert api.as_user(users.author).get(URL).status_code == 200, "a session is not counted per token"


def test_a_user_past_the_rate_is_throttled_across_tokens_and_sessions_and_others_are_not(settings, api, users):
    _rates(settings, user="4/hour")
    first = api.with_token(_token(users.author, "ci-a"))
    second = api.with_token(_token(users.author, "ci-b"))
    session = api.as_user(users.author)
    assert [c.get(URL).status_code for c in (first, second, session, first)] == [200] * 4
    for client in (first, second, session):
        _throttled(client.get(URL))
    assert api.as_user(users.viewer).get(URL).status_code == 200, "another user has their own count"
    assert api.with_token(_token(users.viewer, "viewer-ci")).get(URL).status_code == 200


def test_the_default_rates_let_a_ci_burst_through(api, users):
    """The shipped defaults (from the environment's absence) allow hundreds of calls in a row."""
    client = api.with_token(_token(users.author, "ci"))
    assert {client.get(URL).status_code for _ in range(300)} == {200}


def test_a_cache_that_is_down_does_not_refuse_requests(settings, api, users):
    """A limit that cannot count lets the request through (and logs why) rather than answering 500."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:9/0"}
    }
    _rates(settings, token="1/hour", user="1/hour")
    client = api.with_token(_token(users.author, "ci"))
    assert [client.get(URL).status_code for _ in range(2)] == [200, 200]
