"""Error pages: JSON for the API, a helpful page for people."""

from django.http import JsonResponse
from django.shortcuts import render


def error_response(request, status: int, code: str, detail: str):
    if request.path.startswith("/api/"):
        return JsonResponse({"code": code, "detail": detail}, status=status)
    return render(request, "error.html", {"status": status, "code": code, "detail": detail}, status=status)


_error = error_response


def bad_request(request, exception=None):
    return _error(request, 400, "bad_request", "The request could not be understood.")


def permission_denied(request, exception=None):
    return _error(request, 403, "permission_denied", str(exception) or "Your role does not allow this.")


def page_not_found(request, exception=None):
    return _error(request, 404, "not_found", "Not found, or you do not have access to it.")


def server_error(request):
    return _error(
        request, 500, "server_error", "Something went wrong on our side; the request id is in the response headers."
    )
