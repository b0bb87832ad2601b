"""Filter pieces every app's filtersets share (the browser pages and the API use the same ones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import django_filters
from django import forms
from django_filters import fields

# PostgreSQL stores a time-zone displacement of at most 15:59 either way; Python parses up to 23:59
# ("time zone displacement out of range" was a 500). Real offsets run from -12:00 to +14:00.
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)


def instant_problem(value: datetime) -> str | None:
    """Why an aware datetime from outside is no instant Charter can compare with, or ``None``."""
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        minutes = int(abs(offset).total_seconds()) // 60
        shown = f"{'-' if offset < timedelta(0) else '+'}{minutes // 60:02d}:{minutes % 60:02d}"
        return f"The time-zone offset {shown} is out of range: it must be within ±15:59 (UTC is +00:00)."
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
