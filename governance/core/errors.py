"""Domain errors and their one mapping to HTTP.

Services raise these; the API handler below and the UI views turn them into a response
with a machine-readable ``code`` and a sentence a person understands.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError
from django.dispatch import Signal
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)

# A refused write is evidence. Where the API and the UI meet a refusal they announce it; the audit
# app records it (``governance/audit/refusals.py``), so that core imports no app.
# ``write_refused``: a ``DomainError`` (``request``, ``exc``, ``data``: the request's fields, or
# ``None`` for ``request.POST``). ``write_denied``: a 403 of DRF's own (``request``, ``code``, ``detail``).
write_refused = Signal()
write_denied = Signal()


class DomainError(Exception):
    status = 400
    code = "invalid"
    refusal_recorded = False  # set once the refusal is in the audit log (``governance.audit.refusals``)

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


class LengthRequired(DomainError):
    status = 411
    code = "length_required"


class TooLarge(DomainError):
    status = 413
    code = "request_too_large"


class Busy(DomainError):
    """The database broke a deadlock or a serialization conflict by aborting this write, twice."""

    status = 503
    code = "busy_retry"


# deadlock_detected, serialization_failure: PostgreSQL aborted the transaction; running it again is safe
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def is_transient_db_error(exc: BaseException) -> bool:
    if not isinstance(exc, DatabaseError):
        return False
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) in TRANSIENT_SQLSTATES


BUSY_DETAIL = "Another change to the same records got in the way and nothing was saved; send the request again."


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


def api_exception_handler(exc, context):
    from rest_framework.views import exception_handler  # not at import: DRF's views import our settings' classes

    request = context.get("request")
    if is_transient_db_error(exc):  # a write the service layer could not retry: the client can
        logger.warning("Answered 503 after a transient database error: %s", exc)
        exc = Busy(BUSY_DETAIL)
    if isinstance(exc, DomainError):
        body = {"code": exc.code, "detail": exc.detail}
        if exc.fields:
            body["fields"] = exc.fields
        write_refused.send(sender=type(exc), request=request, exc=exc, data=_request_data(request))
        return Response(body, status=exc.status)
    if isinstance(exc, Http404):
        exc = drf.NotFound("Not found, or you do not have access to it.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf.ValidationError):
        # per field when DRF has fields; a message about the whole input goes under non_field_errors
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = {"code": "invalid", "detail": _first_message(exc.detail), "fields": fields}
    else:
        detail = exc.detail if isinstance(exc.detail, str) else _first_message(exc.detail)
        code = _DRF_CODES.get(type(exc), getattr(exc, "default_code", "error"))
        body = {"code": code, "detail": str(detail)}
        if isinstance(exc, drf.PermissionDenied):
            write_denied.send(sender=type(exc), request=request, code=code, detail=str(detail))
    response.data = body
    return response


def _request_data(request):
    """The parsed body, when parsing it went well: a refusal is recorded even for a body that did not."""
    if request is None:
        return {}
    try:
        data = request.data
    except Exception:  # the body itself was refused (too large, malformed)
        return {}
    return data if hasattr(data, "get") else {}
