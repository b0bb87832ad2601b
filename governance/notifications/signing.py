"""Webhook signatures: what Charter sends and what a receiver checks.

The header is ``X-Charter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
Signing the timestamp with the body lets a receiver refuse a replayed request after ``tolerance_s``.
No Django here: a receiver can copy this file as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Charter-Signature"


def _digest(secret: str | bytes, body: bytes, timestamp: int) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The value of the ``X-Charter-Signature`` header for this body at this time."""
    return f"t={int(timestamp)},v1={_digest(secret, body, int(timestamp))}"


def verify(
    secret: str | bytes, body: bytes, header: str | None, *, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """Whether ``header`` signs exactly ``body`` with ``secret``, within ``tolerance_s`` of ``now``.

    Several ``v1=`` values are accepted (one per secret during a rotation); any one matching is enough.
    """
    if not header:
        return False
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = _digest(secret, body, timestamp)
    # compare every candidate, so the time taken does not say which one matched
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched
