"""Domain errors and their one mapping to HTTP.

Services raise these; the API handler below and the UI views turn them into a response
with a machine-readable ``code`` and a sentence a person understands.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import transaction
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class DomainError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, fields: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.fields = fields or {}


class ValidationFailed(DomainError):
    status = 400
    code = "invalid"


class NotPermitted(DomainError):
    status = 403
    code = "permission_denied"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class TransitionNotAllowed(Conflict):
    code = "transition_not_allowed"


_DRF_CODES = {
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "authentication_failed",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.ParseError: "malformed_request",
    drf.Throttled: "throttled",
    drf.NotAcceptable: "not_acceptable",
}


def _first_message(data) -> str:
    if isinstance(data, dict):
        for key, value in data.items():
            msg = _first_message(value)
            return msg if key in ("non_field_errors", "detail") else f"{key}: {msg}"
    if isinstance(data, list) and data:
        return _first_message(data[0])
    return str(data)


def record_denied_write(request, code: str, detail: str) -> None:
    """A refused write is evidence too: keep it in the audit log, outside the failed transaction."""
    from governance.audit import services as audit

    if request is None or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    user = getattr(request, "user", None)
    with transaction.atomic():
        audit.record(
            action="permission.denied",
            object_type="request",
            object_id=f"{request.method} {request.path}"[:200],
            actor=user if user is not None and user.is_authenticated else None,
            changes={"code": code, "detail": detail},
        )


def api_exception_handler(exc, context):
    from rest_framework.views import exception_handler  # not at import: DRF's views import our settings' classes

    request = context.get("request")
    if isinstance(exc, DomainError):
        body = {"code": exc.code, "detail": exc.detail}
        if exc.fields:
            body["fields"] = exc.fields
        if exc.status == 403:
            record_denied_write(request, exc.code, exc.detail)
        return Response(body, status=exc.status)
    if isinstance(exc, Http404):
        exc = drf.NotFound("Not found, or you do not have access to it.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf.ValidationError):
        body = {"code": "invalid", "detail": _first_message(exc.detail), "fields": exc.detail}
    else:
        detail = exc.detail if isinstance(exc.detail, str) else _first_message(exc.detail)
        code = _DRF_CODES.get(type(exc), getattr(exc, "default_code", "error"))
        body = {"code": code, "detail": str(detail)}
        if isinstance(exc, drf.PermissionDenied):
            record_denied_write(request, code, str(detail))
    response.data = body
    return response
