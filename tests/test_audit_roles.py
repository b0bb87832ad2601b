"""The application's database role reads and appends to the audit log, and can do nothing else to it.

scripts/test.sh runs the suite as the application role (``DATABASE_URL``); the tables belong to the
owner role (``DATABASE_OWNER_URL``), which created and migrated the test database, as
docker-compose.yml and the README set a deployment up. The attack of the finding (switch the
append-only triggers off, rewrite an event, re-hash the later ones, move the head, delete the
checkpoint rows) is tried here statement by statement through the application's own connection, and
PostgreSQL refuses every one.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from governance.audit import checks, roles, services
from governance.audit.models import AuditEvent, ChainHead, Checkpoint

pytestmark = [pytest.mark.usefixtures("fast_passwords")]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def two_roles():
    if not roles.separated():
        pytest.fail("These tests need the two roles: set DATABASE_OWNER_URL as scripts/test.sh does.")
    return roles.app_role(), roles.owner_role()


@pytest.fixture
def chain(users, make_model):
    """A few events and a signed checkpoint, all written by the application role."""
    for i in range(4):
        make_model(f"model-{i}")
    services.checkpoint_create()
    return list(AuditEvent.objects.order_by("seq").values_list("seq", "hash", "changes", "actor_label"))


def _one(statement: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()


@contextlib.contextmanager
def owner_connection():
    """A connection of the tables' owner to the test database (committed at once)."""
    owner, db = settings.DATABASE_OWNER, connection.settings_dict
    with psycopg.connect(
        host=owner["HOST"] or db["HOST"] or None, port=owner["PORT"] or db["PORT"] or None, user=owner["USER"],
        password=owner["PASSWORD"] or None, dbname=db["NAME"], autocommit=True,
    ) as conn:  # fmt: skip
        yield conn


def test_the_suite_connects_as_the_application_role_which_owns_nothing(two_roles, db):
    app, owner = two_roles
    assert app != owner
    assert _one("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user") == (app, False)
    for model in (AuditEvent, Checkpoint, ChainHead):
        assert _one("SELECT tableowner FROM pg_tables WHERE tablename = %s", [model._meta.db_table]) == (owner,)
    assert _one("SELECT pg_has_role(current_user, %s, 'MEMBER')", [owner]) == (False,)


# The finding's attack, one statement at a time, and a few other ways round the triggers.
ATTACK = [
    ("ALTER TABLE audit_auditevent DISABLE TRIGGER USER", "must be owner of table audit_auditevent"),
    ("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_update", "must be owner"),
    ("DROP TRIGGER audit_event_no_delete ON audit_auditevent", "must be owner"),
    (
        "CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ "
        "LANGUAGE plpgsql",
        "must be owner of function|permission denied for schema",
    ),
    ("UPDATE audit_auditevent SET changes = '{}' WHERE seq = 2", "permission denied for table audit_auditevent"),
    ("UPDATE audit_auditevent SET prev_hash = hash, hash = md5(hash)", "permission denied for table audit_auditevent"),
    ("DELETE FROM audit_auditevent WHERE seq >= 3", "permission denied for table audit_auditevent"),
    ("TRUNCATE audit_auditevent", "permission denied for table audit_auditevent"),
    ("DELETE FROM audit_checkpoint", "permission denied for table audit_checkpoint"),
    ("UPDATE audit_checkpoint SET seq = seq - 1", "permission denied for table audit_checkpoint"),
    ("TRUNCATE audit_checkpoint", "permission denied for table audit_checkpoint"),
    ("DELETE FROM audit_chainhead", "permission denied for table audit_chainhead"),
    ("ALTER TABLE audit_auditevent OWNER TO CURRENT_USER", "must be owner"),
    ("DROP TABLE audit_auditevent", "must be owner"),
    ("CREATE TABLE audit_shadow (id int)", "permission denied for schema"),
    ("SET ROLE {owner}", "permission denied to set role"),
]


@pytest.mark.parametrize(("statement", "refusal"), ATTACK, ids=[s.split(" ON ")[0][:60] for s, _ in ATTACK])
def test_the_application_role_cannot_rewrite_the_audit_chain(two_roles, chain, statement, refusal):
    app, owner = two_roles
    assert _one("SELECT current_user") == (app,)
    with pytest.raises(DatabaseError, match=refusal), transaction.atomic():
        _one(statement.replace("{owner}", connection.ops.quote_name(owner)))
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", "hash", "changes", "actor_label")) == chain
    assert Checkpoint.objects.count() == 1
    assert _one("SELECT current_user") == (app,)
    assert services.verify().ok


def test_the_application_role_appends_and_moves_the_head(two_roles, chain, make_model):
    """What it may do is exactly what the log needs: insert events and checkpoints, move the head."""
    make_model("one-more")
    head = ChainHead.objects.get(id=1)
    assert head.seq == AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() == len(chain) + 1
    services.checkpoint_create()
    assert Checkpoint.objects.count() == 2
    assert services.verify().ok


def test_other_tables_get_ordinary_dml_now_and_after_later_migrations(two_roles, db):
    app, _ = two_roles
    for table in ("registry_registeredmodel", "accounts_membership", "django_session"):
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            assert _one("SELECT has_table_privilege(current_user, %s, %s)", [table, privilege]) == (True,), table
        assert _one("SELECT has_table_privilege(current_user, %s, 'TRUNCATE')", [table]) == (False,)
    # a table a later migration creates (as the owner) gets the same, through the default privileges
    with owner_connection() as owner:
        owner.execute("CREATE TABLE charter_later_migration_probe (id bigint GENERATED BY DEFAULT AS IDENTITY)")
        try:
            rows = _one(
                "SELECT has_table_privilege(%s, c.oid, 'UPDATE'), has_table_privilege(%s, c.oid, 'DELETE'), "
                "has_table_privilege(%s, c.oid, 'TRUNCATE') FROM pg_class c WHERE c.relname = %s",
                [app, app, app, "charter_later_migration_probe"],
            )
            assert rows == (True, True, False)
        finally:
            owner.execute("DROP TABLE charter_later_migration_probe")


@pytest.mark.django_db(transaction=True)
def test_migrate_runs_as_the_owner_and_takes_back_privileges_loosened_by_hand(two_roles):
    app, _ = two_roles
    quoted = connection.ops.quote_name(app)
    with owner_connection() as owner:
        owner.execute(f"GRANT UPDATE, DELETE, TRUNCATE ON audit_auditevent, audit_checkpoint TO {quoted}")
    [loose] = checks.role_warnings()
    assert loose.id == "charter.W003" and "UPDATE on audit_auditevent" in loose.msg
    call_command("migrate", verbosity=0, stdout=io.StringIO())  # grants after every migrate, as the owner
    assert checks.role_warnings() == []
    assert _one("SELECT current_user") == (app,)  # and the application's connection is its own again


def test_the_system_check_warns_about_a_role_that_could_rewrite_the_log(two_roles, db):
    app, owner = two_roles
    assert checks.role_warnings() == []
    assert checks.role_warnings(role=app) == []
    [owns] = checks.role_warnings(role=owner)
    assert owns.id == "charter.W002" and "audit_auditevent" in owns.msg
    (superuser,) = _one("SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY oid LIMIT 1")
    [almighty] = checks.role_warnings(role=superuser)
    assert almighty.id == "charter.W001"
    err = io.StringIO()
    call_command("check", "--database", "default", stdout=io.StringIO(), stderr=err)
    assert "charter.W" not in err.getvalue()


def test_the_system_check_is_quiet_on_sqlite(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'check.sqlite3'}",
        "CHARTER_VAR_DIR": str(tmp_path),
        "DATABASE_OWNER_URL": "postgres://owner@127.0.0.1:1/unused",  # no roles on SQLite: ignored
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout and "charter.W" not in done.stdout + done.stderr
