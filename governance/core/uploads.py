"""Upload size limits, enforced before a request body is read rather than after it was spooled.

Django reads a multipart body into memory or temporary files (``FILE_UPLOAD_TEMP_DIR``) as soon
as anything touches ``request.POST``, ``request.FILES`` or DRF's ``request.data``; the CSRF check
does for every form post. The services' size checks run after that, so a request declaring
6 GiB had hundreds of megabytes written to a temporary file before anything refused it. Here:

- ``UploadLimitMiddleware`` answers a body whose declared ``Content-Length`` exceeds its route's
  limit (plus room for the form's other fields) with 413 before anything reads it: JSON for the
  API, the error page for the browser. A write whose body comes without a ``Content-Length``
  (``Transfer-Encoding: chunked``) is answered 411: Django would read it as empty.
- ``LimitedUploadHandler``, first in ``FILE_UPLOAD_HANDLERS``, counts the file bytes as they
  stream and stops at the route's limit: the temporary file is closed, which deletes it, the rest
  of the body is not read, and the request is answered 413.

Limits: ``ARTIFACT_MAX_BYTES`` for artifacts, ``EVALUATION_DATA_MAX_BYTES`` for evaluation data,
each plus ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (the cap Django puts on a form's other fields) and
``MULTIPART_OVERHEAD_BYTES`` for the body; any other write may send ``DATA_UPLOAD_MAX_MEMORY_SIZE``
plus the overhead.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.urls import Resolver404, resolve

from governance.core.errors import LengthRequired, TooLarge

MULTIPART_OVERHEAD_BYTES = 64 * 1024  # boundaries and part headers
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class UploadRoute:
    setting: str  # the setting that holds the file limit, in bytes
    code: str
    what: str

    def limit(self) -> int:
        return getattr(settings, self.setting)

    def refusal(self) -> TooLarge:
        return TooLarge(f"{self.what} is larger than the {self.limit():,}-byte limit.", code=self.code)


ARTIFACT = UploadRoute("ARTIFACT_MAX_BYTES", "artifact_too_large", "The artifact")
EVALUATION_DATA = UploadRoute("EVALUATION_DATA_MAX_BYTES", "data_too_large", "The data file")

# The routes (URL names) that take a file, in the API and the UI.
UPLOAD_ROUTES: dict[str, UploadRoute] = {
    "api:version-list": ARTIFACT,
    "version-upload": ARTIFACT,
    "api:evaluationrun-list": EVALUATION_DATA,
    "evaluation-request": EVALUATION_DATA,
}

_UNRESOLVED = object()


def upload_route(request) -> UploadRoute | None:
    """The upload limit of the route the request is for, if it takes a file (looked up once)."""
    route = getattr(request, "_charter_upload_route", _UNRESOLVED)
    if route is _UNRESOLVED:
        # Once Django has resolved the URL (views, upload handlers), reuse its match; only the
        # middleware's early look at an oversized body resolves it itself.
        match = getattr(request, "resolver_match", None)
        try:
            view_name = match.view_name if match is not None else resolve(request.path_info).view_name
        except Resolver404:
            view_name = ""
        route = UPLOAD_ROUTES.get(view_name)
        request._charter_upload_route = route
    return route


def body_limit(route: UploadRoute | None) -> int | None:
    """The largest body the route accepts, or ``None`` when nothing caps it."""
    fields = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if route is None:
        return None if fields is None else fields + MULTIPART_OVERHEAD_BYTES
    return route.limit() + (fields or 0) + MULTIPART_OVERHEAD_BYTES


def body_refusal(request) -> TooLarge | LengthRequired | None:
    """Why the request's body is refused before it is read, or ``None``."""
    if request.method not in BODY_METHODS:
        return None
    declared = request.META.get("CONTENT_LENGTH") or ""
    if not declared:
        if request.META.get("HTTP_TRANSFER_ENCODING"):
            return LengthRequired(
                "Send the body with a Content-Length header: a chunked request body is not accepted.",
            )
        return None
    try:
        length = int(declared)
    except ValueError:
        return None  # Django reads a malformed length as an empty body
    general = body_limit(None)
    if general is not None and length <= general:  # what any route accepts: no need to look it up
        return None
    route = upload_route(request)
    limit = body_limit(route)
    if limit is None or length <= limit:
        return None
    if route is not None:
        refusal = route.refusal()
        refusal.detail += f" This request declares {length:,} bytes."
        return refusal
    return TooLarge(f"The request body declares {length:,} bytes; this endpoint takes at most {limit:,}.")


def error_response(request, exc: TooLarge | LengthRequired):
    from governance.core.views import error_response as render_error

    response = render_error(request, exc.status, exc.code, exc.detail)
    # The body it answers is still unread (and may never end): the client learns where this
    # response ends from its length, not from the connection closing.
    response["Content-Length"] = str(len(response.content))
    return response


class UploadLimitMiddleware:
    """Refuse oversized and length-less bodies before anything reads them (see the module)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        refusal = body_refusal(request)
        if refusal is not None:
            return error_response(request, refusal)
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        # A browser form is parsed by the CSRF check, whose errors would be a 500: parse it here
        # first (this runs before the CSRF check), so a file over the limit is a 413 page.
        # The API parses in DRF, whose exception handler answers the 413.
        if request.method != "POST" or request.path.startswith("/api/") or upload_route(request) is None:
            return None
        try:
            request.POST  # noqa: B018 - parsing is the point
        except TooLarge as exc:
            request._mark_post_parse_error()
            return error_response(request, exc)
        return None

    def process_exception(self, request, exception):
        if isinstance(exception, TooLarge | LengthRequired):
            return error_response(request, exception)
        return None


class LimitedUploadHandler(FileUploadHandler):
    """Count a request's file bytes as they stream; past the route's limit, stop reading (the
    other handlers' partial files are closed and so deleted) and refuse the request with 413."""

    def __init__(self, request=None):
        super().__init__(request)
        self.route: UploadRoute | None = None
        self.received = 0
        self.refused = False

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.route = upload_route(self.request) if self.request is not None else None

    def receive_data_chunk(self, raw_data, start):
        if self.route is not None:
            self.received += len(raw_data)
            if self.received > self.route.limit():
                self.refused = True
                raise StopUpload(connection_reset=True)  # the rest of the body is left unread
        return raw_data

    def file_complete(self, file_size):
        return None

    def upload_complete(self):
        if self.refused:
            raise self.route.refusal()
