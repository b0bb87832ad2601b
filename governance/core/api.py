"""Small pieces every API module shares."""

import copy

from django.http import QueryDict
from drf_spectacular.utils import OpenApiResponse, extend_schema_field, inline_serializer
from rest_framework import parsers, serializers

from governance.core.errors import ValidationFailed

ErrorOut = inline_serializer(
    name="Error",
    fields={
        "code": serializers.CharField(help_text="Machine-readable error code, e.g. transition_not_allowed."),
        "detail": serializers.CharField(help_text="What went wrong, in a sentence."),
        "fields": serializers.DictField(required=False, help_text="Per-field messages for invalid input."),
    },
)


class FlatInput(serializers.Serializer):
    """An input serializer of plain fields (no nested serializers, no child fields) on a hot path.

    DRF deep-copies the declared fields for every instance, which re-runs each field's
    ``__init__``: 0.25 ms of the registration request for fourteen fields. Plain fields are
    only read while validating, and ``bind`` sets its attributes on the copy, so a shallow
    copy of each declared field serves as well.
    """

    def get_fields(self):
        fields = {}
        for name, field in self._declared_fields.items():
            if isinstance(field, serializers.Serializer | serializers.ListField | serializers.DictField):
                raise TypeError(f"{type(self).__name__}.{name}: FlatInput takes plain fields only.")
            fields[name] = copy.copy(field)
        return fields


def described(field_class: type[serializers.Field], schema: dict) -> type[serializers.Field]:
    """``field_class`` documented as ``schema``: the shape its validators accept, where the field
    itself says less (a JSON field, say, that takes only an object of numbers)."""
    return extend_schema_field(schema)(type(field_class.__name__, (field_class,), {}))


class UploadParsers:
    """A viewset whose ``upload_actions`` take a multipart body (a file and its fields); every other
    action reads JSON only, like the rest of the API (``DEFAULT_PARSER_CLASSES``)."""

    upload_actions: frozenset[str] = frozenset({"create"})

    def get_parsers(self):
        # the router's action map is known before DRF builds the request (``self.action`` is not yet)
        request = getattr(self, "request", None)  # none while the schema is generated
        if request is not None and self.action_map.get(request.method.lower()) in self.upload_actions:
            return [parsers.MultiPartParser()]
        return super().get_parsers()


def errors(*codes: int) -> dict:
    text = {
        400: "Invalid input.",
        403: "Your role or token scope does not allow this.",
        404: "Not found, or not visible to you.",
        409: "Conflicts with the object's current state.",
        413: "Too large.",
    }
    return {code: OpenApiResponse(ErrorOut, description=text[code]) for code in codes}


def validated(serializer_class, data, **kwargs) -> dict:
    """Validate input; a field the endpoint does not know is refused rather than silently ignored."""
    serializer = serializer_class(data=data, **kwargs)
    if hasattr(data, "keys"):
        unknown = sorted(set(data.keys()) - set(serializer.fields))
        if unknown:
            known = ", ".join(serializer.fields)
            raise ValidationFailed(
                f"Unknown field(s): {', '.join(unknown)}. This endpoint takes: {known}.", code="unknown_field"
            )
    if isinstance(data, dict) and not isinstance(data, QueryDict):  # JSON; multipart fields are all text
        for name, field in serializer.fields.items():
            if name in data and (expected := json_type_problem(field, data[name])):
                message = f"Expected {expected}."
                raise ValidationFailed(f"{name}: {message}", code="invalid", fields={name: [message]})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def json_type_problem(field: serializers.Field, value) -> str | None:
    """What JSON type ``field`` wants, when ``value`` is not of it, else ``None``.

    DRF's fields convert: a text field takes ``5`` as ``"5"``, a number field ``"5"`` as ``5``, a
    boolean ``"yes"``. A JSON client that sends the wrong type has a bug it should hear about, and
    the schema promises the types it documents, so a JSON body gets exactly those."""
    if value is None:  # the field's own allow_null decides
        return None
    if isinstance(field, serializers.ListSerializer):
        if not isinstance(value, list):
            return "a list"
        return next(filter(None, (json_type_problem(field.child, item) for item in value)), None)
    if isinstance(field, serializers.Serializer):
        if not isinstance(value, dict):
            return "an object"
        inner = (json_type_problem(f, value[n]) for n, f in field.fields.items() if n in value)
        return next(filter(None, inner), None)
    if isinstance(field, serializers.ListField | serializers.MultipleChoiceField):
        if not isinstance(value, list):
            return "a list"
        child = getattr(field, "child", None)
        inner = (json_type_problem(child, item) for item in value) if child is not None else ()
        return next(filter(None, inner), None)
    if isinstance(field, serializers.DictField):
        if not isinstance(value, dict):
            return "an object"
        return next(filter(None, (json_type_problem(field.child, item) for item in value.values())), None)
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
    if isinstance(field, serializers.CharField | serializers.ChoiceField):
        return None if isinstance(value, str) else "a string"
    return None
