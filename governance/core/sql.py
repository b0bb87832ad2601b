"""Hand-written SQL for the few statements every CI request runs, with columns read from the models.

The ORM compiles each statement anew: about 0.4 ms of CPU for a one-row SELECT, several times
what it costs to run it. Authenticating an API token with its owner's roles, finding the model
a version is registered to, numbering and inserting that version, appending its audit event
and listing a model's newest versions are on the path of every CI call, so those statements are
written out once instead (in the selectors and services that own them, through this module).
On PostgreSQL they run as prepared statements, planned once per connection (see
``DATABASE_PREPARED_STATEMENTS`` in settings), with binary results. Column lists come from the
models' metadata and rows become model instances through ``Model.from_db``, as a queryset
would make them, so the SQL cannot drift from the schema. Everything else uses the ORM.
"""

from __future__ import annotations

from functools import cache
from typing import TypeVar

import psycopg
from django.db import connection, models
from django.db.backends.utils import CursorDebugWrapper

M = TypeVar("M", bound=models.Model)


@cache
def _fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    return tuple(model._meta.concrete_fields)


@cache
def columns(model: type[models.Model], alias: str) -> str:
    """``alias."col", ...`` for every concrete field, in the order ``load`` expects."""
    return ", ".join(f'{alias}."{field.column}"' for field in _fields(model))


def width(model: type[models.Model]) -> int:
    return len(_fields(model))


def load(model: type[M], row) -> M:
    """A model instance from the values ``columns(model, ...)`` selected, as the ORM builds one."""
    fields = _fields(model)
    return model.from_db(connection.alias, [field.attname for field in fields], decoded(fields, row))


def decoded(fields, row):
    """A row's values as the ORM hands them out. On PostgreSQL these statements ask for binary
    results, which psycopg's C loaders already turn into Python values (JSON, aware datetimes);
    elsewhere the backend's and the field's converters run as in the ORM's compiler. A ``None``
    field stands for a joined column, left as it came."""
    if connection.vendor == "postgresql":
        return row
    out = []
    for field, value in zip(fields, row, strict=True):
        for convert in () if field is None else _converters(field):
            value = convert(value, field.cached_col, connection)
        out.append(value)
    return out


@cache
def _converters(field: models.Field) -> tuple:
    return (*connection.ops.get_db_converters(field.cached_col), *field.get_db_converters(connection))


def insert(instance: models.Model) -> None:
    """INSERT the instance (not its pk) and set its pk, without compiling a query or sending signals.

    For models that nothing listens to on ``post_save``; ``auto_now`` fields are filled in as
    ``save()`` would.
    """
    model = type(instance)
    fields = [field for field in _fields(model) if not field.primary_key]
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with cursor() as c:
        c.execute(_insert_sql(model), values)
        instance.pk = c.fetchone()[0]
    instance._state.adding = False
    instance._state.db = connection.alias


@cache
def _insert_sql(model: type[models.Model]) -> str:
    fields = [field for field in _fields(model) if not field.primary_key]
    names = ", ".join(f'"{field.column}"' for field in fields)
    marks = ", ".join(["%s"] * len(fields))
    return f'INSERT INTO "{model._meta.db_table}" ({names}) VALUES ({marks}) RETURNING "{model._meta.pk.column}"'


class _PreparedCursor(psycopg.Cursor):
    """Server-side parameters, the statement prepared on its first run on this connection, and
    binary results: Django loads text timestamps in Python (30 µs each, 150 on a page of versions),
    psycopg's binary loaders are C."""

    def execute(self, query, params=None, *, prepare=True, binary=True):
        return super().execute(query, params, prepare=prepare, binary=binary)


def cursor():
    """A cursor for these statements: prepared on PostgreSQL, Django's own elsewhere. It goes
    through Django's execute wrappers either way, so query logging and counting still see it."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.ensure_connection()
    raw = _PreparedCursor(connection.connection)
    return _LoggedCursor(raw, connection) if connection.queries_logged else connection.make_cursor(raw)


class _LoggedCursor(CursorDebugWrapper):
    """Logs the statement as written: psycopg keeps no composed text of a prepared execution."""

    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        return super().debug_sql(sql, params, use_last_executed_query=False, many=many)
