"""core.sql: the statements every CI call runs are prepared once per connection, planned once,
and still visible to Django's query log."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.accounts import selectors
from governance.core import sql
from governance.registry.models import ModelVersion

pytestmark = pytest.mark.django_db


def _prepared() -> dict[str, tuple[int, int]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        return {statement: (generic, custom) for statement, generic, custom in cursor.fetchall()}


def _token_plans() -> list[tuple[int, int]]:
    return [plans for text, plans in _prepared().items() if '"accounts_apitoken" t JOIN' in text]


def test_token_lookup_is_prepared_once_and_planned_once(users):
    selectors.token_by_prefix("no-such-prefix")  # prepared on this connection, if no earlier test did
    [(generic, custom)] = _token_plans()
    for _ in range(3):
        assert selectors.token_by_prefix("no-such-prefix") is None
    # the same statement, run three more times on one generic plan, never re-planned for its parameters
    assert _token_plans() == [(generic + 3, custom)] and custom == 0


def test_prepared_statements_appear_in_the_query_log(users):
    with CaptureQueriesContext(connection) as queries:
        selectors.token_by_prefix("abc")
        selectors.token_by_prefix("abc")
    assert [q["sql"].startswith('SELECT t."id"') for q in queries.captured_queries] == [True, True]


def test_a_row_loaded_by_hand_equals_the_orms(version):
    with sql.cursor() as cursor:
        cursor.execute(
            f'SELECT {sql.columns(ModelVersion, "v")} FROM "registry_modelversion" v WHERE v."id" = %s', [version.pk]
        )
        loaded = sql.load(ModelVersion, cursor.fetchone())
    orm = ModelVersion.objects.get(pk=version.pk)
    for field in ModelVersion._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(orm, field.attname), field.name
    assert loaded._state.adding is False and loaded._state.db == "default"
