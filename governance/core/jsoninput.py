"""JSON from outside, checked once for what PostgreSQL cannot store and for absurd nesting.

Python's ``json`` reads things PostgreSQL's ``jsonb`` refuses, so a request carrying them used to
end in the database error, a 500: the NUL character (``\\u0000``) in a string or a key, a lone
UTF-16 surrogate (``\\ud800``, which has no UTF-8 form), and a number beyond a float's range
(``1e999`` reads as infinity, which JSON cannot spell). Its parser also recurses once per level,
so ten thousand nested brackets were a ``RecursionError``; no document a person or CI sends is
deeper than ``MAX_DEPTH``. ``json_problem`` walks a parsed value without recursing and names the
first such thing; the API's JSON body parser, its JSON fields (multipart sends JSON as text) and
the forms that take JSON text all call it, so every door refuses the same input the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from django import forms
from rest_framework import parsers, serializers

from governance.core.errors import ValidationFailed

MAX_DEPTH = 64
TOO_DEEP = "too_deep"


@dataclass(frozen=True)
class Problem:
    code: str  # ``too_deep`` or ``invalid``
    message: str


class UnusableJSON(ValueError):
    """JSON text that parses (or would, but for its depth) into something that must not be stored."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


def _too_deep() -> Problem:
    return Problem(TOO_DEEP, f"JSON nested deeper than {MAX_DEPTH} levels is refused.")


def text_problem(text: str) -> Problem | None:
    """Why PostgreSQL cannot store this text (in a JSON value or a text column), or ``None``."""
    if "\x00" in text:
        return Problem("invalid", "The NUL character (\\u0000) cannot be stored.")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return Problem("invalid", "A lone UTF-16 surrogate (e.g. \\ud800) is no text and cannot be stored.")
    return None


def json_problem(value) -> Problem | None:
    """The first reason ``value`` (parsed JSON) cannot be stored as it is, or ``None``.

    The top value is at depth 1; a container deeper than ``MAX_DEPTH`` is refused."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if problem := text_problem(item):
                return problem
        elif isinstance(item, float):
            if not math.isfinite(item):
                return Problem("invalid", "A number out of range (e.g. 1e999, infinite) cannot be stored.")
        elif isinstance(item, dict | list | tuple):
            if depth > MAX_DEPTH:
                return _too_deep()
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and (problem := text_problem(key)):
                        return problem
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def loads(text: str | bytes):
    """``json.loads`` that raises ``UnusableJSON`` instead of returning what cannot be stored (or
    recursing past the interpreter's limit); malformed text still raises ``json.JSONDecodeError``."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnusableJSON(_too_deep()) from None
    if problem := json_problem(value):
        raise UnusableJSON(problem)
    return value


class JSONField(serializers.JSONField):
    """DRF's JSON field, refusing what ``json_problem`` refuses (as JSON text from multipart too)."""

    def to_internal_value(self, data):
        try:
            value = super().to_internal_value(data)
        except RecursionError:
            value, problem = None, _too_deep()
        else:
            problem = json_problem(value)
        if problem is None:
            return value
        if problem.code == TOO_DEEP:  # the same code as a JSON body nested too deep, still naming the field
            raise ValidationFailed(f"{self.field_name}: {problem.message}", code=TOO_DEEP,
                                   fields={self.field_name: [problem.message]})  # fmt: skip
        raise serializers.ValidationError(problem.message, code=problem.code)


class JSONParser(parsers.JSONParser):
    """The API's JSON body parser (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``): a body nested too
    deep is ``too_deep``, one carrying a value the database cannot store is ``invalid``; both name
    the top-level field they were found in. Each field's value may be ``MAX_DEPTH`` deep, as in a
    multipart request."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ValidationFailed(f"The request body: {_too_deep().message}", code=TOO_DEEP) from None
        for name, value in data.items() if isinstance(data, dict) else [(None, data)]:
            bad_name = text_problem(name) if name is not None else None
            if problem := bad_name or json_problem(value):
                field = "non_field_errors" if name is None or bad_name else name
                where = "The request body" if field == "non_field_errors" else field
                raise ValidationFailed(f"{where}: {problem.message}", code=problem.code,
                                       fields={field: [problem.message]})  # fmt: skip
        return data


class FormJSONField(forms.JSONField):
    """Django's form JSON field, refusing what ``json_problem`` refuses (its parser recursed too)."""

    def to_python(self, value):
        try:
            value = super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(_too_deep().message, code=TOO_DEEP) from None
        if problem := json_problem(value):
            raise forms.ValidationError(problem.message, code=problem.code)
        return value

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:  # re-showing the refused text: as text, not parsed
            return forms.fields.InvalidJSONInput(data)
