from django.middleware.gzip import GZipMiddleware

from governance.audit import context


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
