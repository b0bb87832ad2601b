"""Who is acting, from where, under which request: the context every audit event records, and
whose request id every log line carries (``governance.core.logs``).

Middleware sets it for web requests, the Celery base task restores it for tasks, and
management commands open it explicitly. A governed write outside any context is a bug.
It lives in core, not in the audit app, because core's middleware and logging read it and core
imports no app (the import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

SOURCES = ("ui", "api", "task", "cli", "system")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass(frozen=True)
class AuditContext:
    source: str
    request_id: str
    actor_id: int | None = None
    actor_label: str = ""
    token_id: int | None = None


_current: contextvars.ContextVar[AuditContext | None] = contextvars.ContextVar("audit_context", default=None)


def new_request_id(candidate: str | None = None) -> str:
    """Accept a caller's request id when it is well formed, otherwise mint one."""
    if candidate and _REQUEST_ID.match(candidate):
        return candidate
    return uuid.uuid4().hex


def current() -> AuditContext | None:
    return _current.get()


def set_actor(user, *, token_id: int | None = None) -> None:
    """Bind the authenticated user (known only after authentication) to the open context."""
    ctx = _current.get()
    if ctx is None or user is None or not user.is_authenticated:
        return
    _current.set(replace(ctx, actor_id=user.pk, actor_label=user.get_username(), token_id=token_id))


@contextlib.contextmanager
def audit_context(
    *,
    source: str,
    request_id: str | None = None,
    actor=None,
    actor_id: int | None = None,
    actor_label: str = "",
    token_id: int | None = None,
) -> Iterator[AuditContext]:
    if source not in SOURCES:
        raise ValueError(f"Unknown audit source {source!r}.")
    ctx = AuditContext(
        source=source,
        request_id=new_request_id(request_id),
        actor_id=actor.pk if actor is not None else actor_id,
        actor_label=actor.get_username() if actor is not None else actor_label,
        token_id=token_id,
    )
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def as_headers() -> dict | None:
    """The open context as plain data, to travel with a Celery message."""
    ctx = _current.get()
    if ctx is None:
        return None
    return {"request_id": ctx.request_id, "actor_id": ctx.actor_id, "actor_label": ctx.actor_label}
