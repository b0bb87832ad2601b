"""The OpenAPI schema says every refusal the API can give, not only the ones an operation chose to list.

Some answers are not any one view's: they come from the layers every request passes through, and
an operation's ``@extend_schema`` has no reason to repeat them. ``document_every_refusal`` (a
drf-spectacular post-processing hook) adds them where they can happen:

- 401 on every authenticated operation (a token that expired or was revoked mid-session), 403 (a
  role or a token scope that does not allow it) and 429 (the rate limits, with ``Retry-After``);
- 400 on every operation that takes query parameters (filters, ordering, a cursor) or a body;
- 404 on every operation with a path parameter or a body (an object it names that you cannot see),
  and on page-numbered lists (a page past the end);
- 411, 413 and 415 on every write: a body without ``Content-Length`` (governance/core/uploads.py),
  a body over its route's limit, and a content type the operation does not read;
- ``additionalProperties: false`` on every request body: ``validated()`` (governance/core/api.py)
  refuses a field the endpoint does not know;
- ``allowEmptyValue`` on every optional query parameter: ``?since=&team=`` is how a form sends
  filters left blank, and an empty value means the same as no value.

What an operation documents itself (its description of a 404, say) is kept.
"""

from __future__ import annotations

import threading
from typing import Any

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularAPIView

ERROR_REF = {"$ref": "#/components/schemas/Error"}
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})

DESCRIPTIONS = {
    400: "Invalid input: a parameter or a field the operation cannot use (see `code` and `fields`).",
    401: "No valid credentials: the token is missing, unknown, expired or revoked.",
    403: "Your role in the owning team, or the token's scopes, do not allow this.",
    404: "Not found, or not visible to you (a page number past the last page is one too).",
    411: "The body came without a Content-Length header (a chunked body is not accepted).",
    413: "The body is larger than this operation accepts.",
    415: "The body's content type is not one this operation reads.",
    429: "Too many requests for this token or user: retry after the Retry-After header's seconds.",
}


def document_every_refusal(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    schemas = result.get("components", {}).get("schemas", {})
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for code in _refusals(method, operation):
                operation["responses"].setdefault(
                    str(code),
                    {"description": DESCRIPTIONS[code], "content": {"application/json": {"schema": ERROR_REF}}},
                )
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _closed(media.get("schema", {}), schemas)
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
    return result


def _refusals(method: str, operation: dict[str, Any]) -> list[int]:
    codes = [429]
    if {} not in operation.get("security", [{}]):  # an operation open to everyone lists ``{}``
        codes += [401, 403]
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "query" for p in parameters) or "requestBody" in operation:
        codes.append(400)
    if (
        "requestBody" in operation
        or any(p.get("in") == "path" for p in parameters)
        or any(p.get("name") == "page" for p in parameters)
    ):
        codes.append(404)
    if method in WRITE_METHODS:
        codes += [411, 413, 415]
    return codes


def _closed(schema: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Close a request body's object schema (following one ``$ref``) to fields it does not declare."""
    if "$ref" in schema:
        schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
    if schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)


class SchemaView(SpectacularAPIView):
    """``/api/schema/``, generated one request at a time per process: drf-spectacular loads its extension
    classes lazily on the first generation and patches its settings while it generates, neither safe
    for two threads at once (two first requests in a new threaded server: one 500 with AttributeError)."""

    _generating = threading.Lock()

    @extend_schema(**SCHEMA_KWARGS)  # as the parent's: left out of the schema (SERVE_INCLUDE_SCHEMA)
    def get(self, request, *args, **kwargs):
        with self._generating:
            return super().get(request, *args, **kwargs)
