"""Filter pieces every app's filtersets share (the browser pages and the API use the same ones)."""

from __future__ import annotations

from datetime import UTC, datetime

import django_filters
from django import forms
from django.db import models
from django_filters import fields
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field


def instant_problem(value: datetime) -> str | None:
    """Why an aware datetime from outside is no instant Charter can compare with, or ``None``. Any offset
    Python parses (RFC 3339 allows up to ±23:59) is fine: the value reaches the database in UTC
    (``as_utc``), never with an offset PostgreSQL could not store (it stops at ±15:59)."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        return "The date is out of range: in UTC it falls outside the years 1 to 9999."
    return None


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC, for a value ``instant_problem`` passed. Every statement, hand-written
    SQL included, then gets an offset the database stores."""
    return value.astimezone(UTC)


class IsoDateTimeField(fields.IsoDateTimeField):
    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        if problem := instant_problem(value):
            raise forms.ValidationError(problem, code="out_of_range")
        return as_utc(value)


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date and time, e.g. ``2026-01-01T00:00:00+01:00``: a bad offset or a date out of
    range is the filter's validation error (400 naming it in the API), compared in UTC."""

    field_class = IsoDateTimeField


# A key as PostgreSQL's bigint holds it: a larger number was the database's error, a smaller one no row.
MAX_ID = 2**63 - 1


def id_from(text: str) -> int | None:
    """The id ``text`` spells (digits, from 1 to ``MAX_ID``), else ``None``: what ``IdFilter`` takes,
    for a view that reads a parameter itself."""
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID))):  # int() refuses 4,300+ digits
        return None
    return int(text) if 1 <= int(text) <= MAX_ID else None


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """An object's id: a whole number from 1 to ``MAX_ID``, else the filter's validation error (a
    400 naming it). An id nobody can see simply matches nothing."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class StrictBooleanField(forms.NullBooleanField):
    """``true`` or ``false`` (also ``1``/``0``); empty means no filter; anything else is refused
    (Django's own field reads every other word, ``null`` included, as no filter)."""

    widget = forms.TextInput
    WORDS = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        try:
            return self.WORDS[str(value).strip().lower()]
        except KeyError:
            raise forms.ValidationError("Use true or false.", code="invalid") from None

    def validate(self, value):
        pass


@extend_schema_field({"type": "boolean"})
class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class FilterSet(django_filters.FilterSet):
    """Every API list's filter set: a foreign key filters by id (``IdFilter``, no lookup of the
    related row) and a boolean takes only true or false."""

    FILTER_DEFAULTS = {
        **django_filters.FilterSet.FILTER_DEFAULTS,
        models.ForeignKey: {"filter_class": IdFilter, "extra": lambda f: {"field_name": f"{f.name}_id"}},
        models.BooleanField: {"filter_class": BooleanFilter},
    }


class FilterBackend(DjangoFilterBackend):
    """``DjangoFilterBackend`` building ``filterset_fields`` on the strict ``FilterSet`` above."""

    filterset_base = FilterSet
