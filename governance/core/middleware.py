import logging

from django.middleware.gzip import GZipMiddleware

from governance.core import context
from governance.core.errors import BUSY_DETAIL, Busy, is_transient_db_error

logger = logging.getLogger(__name__)


class GZipPagesMiddleware(GZipMiddleware):
    """Django's gzip, for pages and API documents only.

    Streamed responses are artifact and evaluation downloads, up to ``ARTIFACT_MAX_BYTES``: already
    compressed formats whose ``Content-Length`` clients check, and not worth a web worker's CPU.
    """

    def process_response(self, request, response):
        if response.streaming:
            return response
        return super().process_response(request, response)


class RequestIdMiddleware:
    """Give every request an id, echo it in ``X-Request-ID`` and open the audit context."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        source = "api" if request.path.startswith("/api/") else "ui"
        with context.audit_context(source=source, request_id=request.headers.get("X-Request-ID")) as ctx:
            request.id = ctx.request_id
            response = self.get_response(request)
        response["X-Request-ID"] = request.id
        return response


class AuditContextMiddleware:
    """Bind the session user to the audit context; API token users are bound by their authenticator."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            context.set_actor(request.user)
        return self.get_response(request)


class TransientDatabaseErrorMiddleware:
    """A deadlock or serialization failure that reached a view (the service layer retries once,
    ``governance.core.retry``) is a 503 ``busy_retry`` that asks to send the request again, not a 500.
    The API's exception handler does the same for API views."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not (isinstance(exception, Busy) or is_transient_db_error(exception)):
            return None
        from governance.core.views import error_response

        logger.warning("Answered 503 after a transient database error: %s", exception)
        return error_response(request, 503, Busy.code, BUSY_DETAIL)
