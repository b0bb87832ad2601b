"""Refusals are evidence: every refused write goes to the audit log, outside the failed transaction.

A 403 is a ``permission.denied``; a refusal of a governed write (``GOVERNED_WRITES``, any status) is
also ``<action>.refused`` with what it was aimed at. The API's exception handler and the UI's
``show_domain_error`` (``governance.core``) announce each refusal with the signals
``governance.core.errors.write_refused`` and ``write_denied``; the receivers below record them,
as core imports no app. A service that refuses with more context calls ``record_refusal`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.dispatch import receiver

from governance.audit.actions import AuditAction
from governance.core.errors import DomainError, write_denied, write_refused


def record_denied_write(request, code: str, detail: str) -> None:
    """A refused write is evidence too: keep it in the audit log, outside the failed transaction."""
    from governance.audit import services as audit

    if request is None or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    user = getattr(request, "user", None)
    with transaction.atomic():
        audit.record(
            action=AuditAction.PERMISSION_DENIED,
            object_type="request",
            object_id=f"{request.method} {request.path}"[:200],
            actor=user if user is not None and user.is_authenticated else None,
            changes={"code": code, "detail": detail},
        )


# --- refused governed writes ----------------------------------------------------------------


@dataclass(frozen=True)
class GovernedWrite:
    """A write whose refusals are evidence: each one is recorded as ``<action>.refused``."""

    action: AuditAction  # the audit action the write records when it goes through
    subject: str = ""  # "app_label.model" of the object the write acts on, named by the URL's ``pk``...
    subject_field: str = ""  # ...or by this field of the request body
    inputs: tuple[str, ...] = ()  # request fields kept with the refusal (short values only)

    def __post_init__(self):
        _ = self.refused  # a write without a ``<action>.refused`` member fails here, at import

    @property
    def refused(self) -> AuditAction:
        """What a refusal of this write records: ``<action>.refused``."""
        return self.action.refused


_TRANSITION = GovernedWrite(AuditAction.VERSION_TRANSITION, "registry.modelversion", inputs=("to",))
_TOKEN_CREATE = GovernedWrite(AuditAction.TOKEN_CREATE, inputs=("name", "scopes", "team", "expires_in_days"))
_TOKEN_REVOKE = GovernedWrite(AuditAction.TOKEN_REVOKE, "accounts.apitoken")
_POLICY_CREATE = GovernedWrite(AuditAction.POLICY_CREATE, inputs=("name", "team", "risk_tier"))
_POLICY_UPDATE = GovernedWrite(AuditAction.POLICY_UPDATE, "approvals.policy", inputs=("name",))

# The governed writes, by the route (URL name) and method that attempt them, in the API and the UI.
# Review decisions, review requests and policy-proposal decisions record their refusals in their
# services (``record_refusal`` below), with the object they refer to.
GOVERNED_WRITES: dict[tuple[str, str], GovernedWrite] = {
    ("api:version-transition", "POST"): _TRANSITION,
    ("version-lifecycle", "POST"): _TRANSITION,
    ("api:token-list", "POST"): _TOKEN_CREATE,
    ("tokens", "POST"): _TOKEN_CREATE,
    ("api:token-revoke", "POST"): _TOKEN_REVOKE,
    ("api-token-revoke", "POST"): _TOKEN_REVOKE,
    ("api:policy-list", "POST"): _POLICY_CREATE,
    ("policy-create", "POST"): _POLICY_CREATE,
    ("api:policy-detail", "PATCH"): _POLICY_UPDATE,
    ("policy-edit", "POST"): _POLICY_UPDATE,
    ("api:policy-assign", "POST"): GovernedWrite(
        AuditAction.MODEL_POLICY, "registry.registeredmodel", "model", ("policy",)
    ),
    ("model-policy", "POST"): GovernedWrite(AuditAction.MODEL_POLICY, "registry.registeredmodel", inputs=("policy",)),
    ("api:evaluationrun-list", "POST"): GovernedWrite(
        AuditAction.EVALUATION_REQUEST, "registry.modelversion", "version", ("kind", "target_column")
    ),
    ("evaluation-request", "POST"): GovernedWrite(
        AuditAction.EVALUATION_REQUEST, "registry.modelversion", inputs=("kind", "target_column")
    ),
}


def governed_write(request) -> GovernedWrite | None:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    return GOVERNED_WRITES.get((match.view_name, request.method))


def _short(value):
    if isinstance(value, list | tuple):
        return [_short(v) for v in list(value)[:10]]
    return value if isinstance(value, int | bool | type(None)) else str(value)[:80]


def _field(data, name: str):
    """A request field as sent: a list when a form repeats it (scopes), else the one value."""
    if hasattr(data, "getlist"):
        values = data.getlist(name)
        return values if len(values) > 1 else (values[0] if values else None)
    return data.get(name)


def _subject(write: GovernedWrite, request, data) -> tuple[str, str, int | None]:
    """(object type, object id, team id) of what the refused write was aimed at, as far as known."""
    from django.apps import apps

    raw = request.resolver_match.kwargs.get("pk") if not write.subject_field else data.get(write.subject_field)
    if not write.subject or raw in (None, ""):
        return "request", f"{request.method} {request.path}"[:200], None
    object_id = str(raw)[:200]
    team_id = None
    if object_id.isascii() and object_id.isdigit():
        obj = apps.get_model(write.subject).objects.filter(pk=int(object_id)).first()
        team_id = getattr(obj, "audit_team_id", None) if obj is not None else None
    return write.subject, object_id, team_id


def record_refusal(
    *, action: AuditAction, exc: DomainError, actor=None, obj=None, object_type: str | None = None,
    object_id: str | None = None, team_id: int | None = None, changes: dict | None = None,
) -> None:  # fmt: skip
    """Record ``action`` (a ``<write>.refused`` member) with the refusal's code and sentence, outside
    the failed transaction.

    The one writer of refusal events: what the API's exception handler and the UI's
    ``show_domain_error`` announce (``write_refused``) is recorded with it for the routes in
    ``GOVERNED_WRITES``; a service that refuses with more context (the
    object a decision was about) may call it itself. Either way an exception is recorded once.
    """
    from governance.audit import services as audit

    if getattr(exc, "refusal_recorded", False):
        return
    with transaction.atomic():
        audit.record(
            action=action, obj=obj, object_type=object_type, object_id=object_id, team_id=team_id,
            actor=actor if actor is not None and actor.is_authenticated else None,
            changes={**(changes or {}), "code": exc.code, "detail": exc.detail},
        )  # fmt: skip
    exc.refusal_recorded = True


def record_refused_write(request, exc: DomainError, data=None) -> None:
    """Audit a refused write where the API and the UI meet a refusal: a 403 is a
    ``permission.denied`` (whatever was attempted), and a refusal of a governed write (any status)
    is also ``<action>.refused`` with what it was aimed at, so each action's trail shows them."""
    if request is None or request.method in ("GET", "HEAD", "OPTIONS") or exc.status >= 500:
        return  # a 5xx is no refusal: nothing was judged
    if exc.status == 403:
        record_denied_write(request, exc.code, exc.detail)
    write = governed_write(request)
    if write is None:
        return
    if data is None:
        data = request.POST
    object_type, object_id, team_id = _subject(write, request, data)
    inputs = {name: _short(value) for name in write.inputs if (value := _field(data, name)) not in (None, "", [])}
    record_refusal(
        action=write.refused, exc=exc, actor=getattr(request, "user", None), object_type=object_type,
        object_id=object_id, team_id=team_id, changes={"request": f"{request.method} {request.path}"[:200], **inputs},
    )  # fmt: skip


@receiver(write_refused, dispatch_uid="audit.refusals.write_refused")
def _on_write_refused(sender, *, request, exc: DomainError, data=None, **kwargs) -> None:
    record_refused_write(request, exc, data=data)


@receiver(write_denied, dispatch_uid="audit.refusals.write_denied")
def _on_write_denied(sender, *, request, code: str, detail: str, **kwargs) -> None:
    record_denied_write(request, code, detail)
