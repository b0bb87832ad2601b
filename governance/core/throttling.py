"""API rate limits: DRF throttles per API token and per user, answered ``429`` with ``Retry-After``.

The rates are ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (``API_THROTTLE_TOKEN_RATE`` and
``API_THROTTLE_USER_RATE`` in the environment), read when a request is checked, so a changed
setting applies at once. The counts live in the default cache: Redis in production, so every web
process shares them; the local-memory cache for SQLite and ``scripts/run.sh`` (one process).

Counted in fixed windows rather than DRF's sliding log: ``SimpleRateThrottle`` keeps a timestamp
per request of the window in one cache entry, read, unpickled, rewritten and re-pickled on every
request, so its cost grows with the rate (at 60,000/minute, up to 60,000 floats a request) and two
concurrent requests lose one of their counts. Here a (scope, client, window) is one integer that
the cache increments atomically (Redis ``INCR``), one round trip per throttle at any rate. A client
may get up to twice its rate across a window boundary, which is fine for limits this generous.

Measured here (2 shared cores, Redis on loopback): both throttles together cost about 0.1 ms of
CPU a request on Redis (bench/api_inprocess.py: register 2.7-3.0 ms with them, 2.7 ms without) and
13 us in local memory; DRF's sliding log, one throttle at 60000/minute, cost 0.6 ms on Redis and
50 us in local memory after 3,000 requests of one user, growing with every request of the window.
"""

from __future__ import annotations

import logging
import math

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


def _redis_client(cache):
    """The Redis client under Django's Redis cache (``django.core.cache.backends.redis``), else None.

    Django's ``incr`` costs two round trips (EXISTS, then INCR), ``add`` a third on a window's first
    request, and ``get_client`` builds a new client object each time (50 us of CPU here): one client
    is kept per cache object, and a request costs one INCR.
    """
    if not isinstance(cache, RedisCache):
        return None
    client = getattr(cache, "_throttle_client", None)
    if client is None:
        client = cache._throttle_client = cache._cache.get_client(write=True)
    return client


class FixedWindowRateThrottle(SimpleRateThrottle):
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_ends = (window + 1) * self.duration
        try:
            count = self._count(f"{ident}:{window}")
        except Exception as exc:  # the cache is down: a limit that cannot count lets the request through
            logger.warning("API rate limit %r not checked, the cache failed: %s", self.scope, exc)
            return True
        return count <= self.num_requests

    def _count(self, key: str) -> int:
        """This request's number in its window. The window's number is in the key, so a counter
        never outlives its window's meaning; its expiry only frees the memory."""
        cache = caches["default"]
        redis = _redis_client(cache)
        if redis is not None:
            stored_key = cache.make_and_validate_key(key)
            count = redis.incr(stored_key)
            if count == 1:  # the window's first request sets the expiry
                redis.expire(stored_key, self.duration + 1)
            return count
        try:
            return cache.incr(key)
        except ValueError:  # the window's first request
            if cache.add(key, 1, self.duration + 1):
                return 1
            return cache.incr(key)

    def wait(self) -> float:
        return max(1, math.ceil(self.window_ends - self.now))


class TokenRateThrottle(FixedWindowRateThrottle):
    """Requests per API token (a CI pipeline); session requests are not counted here."""

    scope = "token"

    def get_cache_key(self, request, view):
        token = request.auth
        if token is None or not getattr(token, "pk", None):
            return None
        return f"throttle:{self.scope}:{token.pk}"


class UserRateThrottle(FixedWindowRateThrottle):
    """Requests per user, whatever they authenticate with: all of a user's tokens and sessions together."""

    scope = "user"

    def get_cache_key(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return None
        return f"throttle:{self.scope}:{request.user.pk}"
