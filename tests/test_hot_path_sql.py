"""core.sql: the statements every CI call runs are prepared once per connection, planned once,
and still visible to Django's query log."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.accounts import selectors
from governance.accounts import services as accounts
from governance.accounts.models import Role
from governance.core import sql
from governance.core.context import audit_context
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


def test_a_token_request_loads_its_owner_and_roles_with_the_token(api, users, team, model, make_version):
    """One statement authenticates and loads every role; the first page of a model is the second."""
    make_version(model)
    with audit_context(source="cli", actor=users.admin):
        accounts.membership_add(actor=users.admin, team=team, user=users.reviewer, role=Role.AUTHOR)
        _, secret = accounts.token_create(actor=users.reviewer, name="ci", scopes=["read"])
    client = api.with_token(secret)
    client.get(f"/api/v1/versions/?model={model.pk}")  # the last-used stamp is written once a minute
    with CaptureQueriesContext(connection) as queries:
        listed = client.get(f"/api/v1/versions/?model={model.pk}").json()["results"]
    assert len(listed) == 1
    assert len(queries.captured_queries) == 2, [q["sql"][:80] for q in queries.captured_queries]
    token = selectors.token_by_prefix(secret.split("_")[1])
    assert token.user == users.reviewer
    assert token.user._charter_roles == {team.pk: frozenset({Role.REVIEWER, Role.AUTHOR})}
