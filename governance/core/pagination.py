import binascii
from base64 import b64decode
from datetime import datetime

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import connection, models
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination, PageNumberPagination

from governance.core.errors import ValidationFailed
from governance.core.filters import as_utc, instant_problem
from governance.core.jsoninput import text_problem


class StrictPageSize:
    """``page_size`` from 1 to ``max_page_size``, or a 400 ``invalid_page_size`` (DRF quietly used
    the default for anything else, so ``page_size=0`` and ``page_size=abc`` looked like answers)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw == "":
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            detail = f"page_size must be a whole number from 1 to {self.max_page_size}."
            raise ValidationFailed(detail, code="invalid_page_size", fields={"page_size": [detail]})
        return size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            elif parameter["name"] == getattr(self, "page_query_param", None):
                parameter["schema"].update(minimum=1)
        return parameters


class PagePagination(StrictPageSize, PageNumberPagination):
    pass


class InvalidCursor(ValidationFailed):
    code = "invalid_cursor"

    def __init__(self):
        detail = (
            "This cursor is not one the list handed out: follow its next or previous link as it came, "
            "or leave the cursor out to start from the newest."
        )
        super().__init__(detail, fields={"cursor": [detail]})


class NewestFirstCursorPagination(StrictPageSize, CursorPagination):
    """Stable, index-friendly paging for tables that grow without bound (versions, audit).

    A cursor comes back from the client, so it is input like any other: one that was edited or
    cut short is a 400 ``invalid_cursor`` before it reaches a query (its position used to reach
    the database as it came, and a position that is no value of the ordering field was a 500).
    """

    ordering = "-id"

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model  # the ordering field's type checks a cursor's position
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            b64decode(encoded.encode("ascii"), validate=True)
            cursor = super().decode_cursor(request)
        except (binascii.Error, UnicodeError, NotFound):
            raise InvalidCursor() from None
        if cursor.position is None:
            return cursor
        return Cursor(offset=cursor.offset, reverse=cursor.reverse, position=self._checked_position(cursor.position))

    def _checked_position(self, position: str) -> str:
        """The position as a filter on the ordering field can take it, or ``InvalidCursor``."""
        if text_problem(position):
            raise InvalidCursor()
        field = _ordering_field(getattr(self, "_model", None), self.ordering[0].lstrip("-"))
        if field is None:
            return position
        try:
            value = field.to_python(position)
        except (ValidationError, ValueError, TypeError):
            raise InvalidCursor() from None
        if isinstance(field, models.IntegerField):
            try:
                low, high = connection.ops.integer_field_range(field.get_internal_type())
            except KeyError:
                low = high = None
            if (low is not None and value < low) or (high is not None and value > high):
                raise InvalidCursor()
        if isinstance(value, datetime):
            if value.tzinfo is None or instant_problem(value):  # the list writes aware times
                raise InvalidCursor()
            return str(as_utc(value))
        return position

    def paginate_first_page(self, fetch, request, view) -> list:
        """The first page from ``fetch(limit=n)``, rows already in ``ordering`` order, leaving the
        state ``paginate_queryset`` leaves so the response and its links are the same."""
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, None, view)
        self.cursor = None
        results = fetch(limit=self.page_size + 1)
        self.page = results[: self.page_size]
        self.has_next, self.has_previous = len(results) > len(self.page), False
        self.next_position = self._get_position_from_instance(results[-1], self.ordering) if self.has_next else None
        self.previous_position = None
        if self.has_next and self.template is not None:
            self.display_page_controls = True
        return self.page


def _ordering_field(model, path: str) -> models.Field | None:
    """The model field an ordering names (through relations; a relation stands for its target's
    key), or ``None`` when it is no field (an annotation): then only the text is checked."""
    field = None
    for name in path.split("__"):
        if model is None:
            return None
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            return None
        model = field.related_model if field.is_relation else None
    if field is not None and field.is_relation:
        field = getattr(field, "target_field", None)
    return field if isinstance(field, models.Field) else None
