"""Two PostgreSQL roles: the schema's owner runs migrations, the application only appends to the audit log.

The append-only triggers stop an ``UPDATE`` or ``DELETE`` from anyone, but the owner of a table may
``ALTER TABLE ... DISABLE TRIGGER``, rewrite events, re-hash the chain in SQL and truncate it. So the
application does not connect as the owner: ``DATABASE_URL`` names a role that may ``SELECT`` and
``INSERT`` on the audit events and checkpoints, and ``UPDATE`` the one chain-head row (every append
moves it, which is why verification never trusts that row alone: ``services.verify`` checks the
exported signed checkpoints). It has ordinary DML on every other table and owns nothing.

``DATABASE_OWNER_URL`` (settings.DATABASE_OWNER) is the same database as the owner. ``migrate`` and
``flush`` (management commands of this app that wrap Django's) switch the ``default`` alias to the
owner's credentials for their run, so every migration, data migration and ``post_migrate`` handler
runs as the owner with no second alias to route; then ``grant_app_role`` (after every migrate) grants
the application role its privileges, re-asserting them each time, and sets the owner's default
privileges so that tables of later migrations get ordinary DML too.

Without an owner URL (SQLite, or one PostgreSQL role for everything) nothing here does anything.
"""

from __future__ import annotations

import contextlib
import threading

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

_CREDENTIALS = ("USER", "PASSWORD", "HOST", "PORT")
# alias -> the application's credentials, while that alias is switched to the owner's
_app_credentials: dict[str, dict] = {}
_lock = threading.Lock()


def separated() -> bool:
    """Whether the application and the owner are two roles (an owner URL is configured)."""
    return settings.DATABASE_OWNER is not None


def app_role(alias: str = DEFAULT_DB_ALIAS) -> str:
    """The application's role name, even while the alias is connected as the owner."""
    saved = _app_credentials.get(alias)
    return (saved or connections[alias].settings_dict)["USER"]


def owner_role() -> str | None:
    return settings.DATABASE_OWNER["USER"] if separated() else None


def connect_as(which: str, alias: str = DEFAULT_DB_ALIAS) -> None:
    """Point ``alias`` at the owner's (``"owner"``) or the application's (``"app"``) credentials.

    The connection is closed; the next query opens one as the chosen role. Not inside a transaction.
    The settings dict is shared by every thread's connection, so threads follow too.
    """
    if which not in ("owner", "app"):
        raise ValueError(which)
    if not separated():
        return
    with _lock:
        if (which == "owner") == (alias in _app_credentials):
            return
        connection = connections[alias]
        if connection.in_atomic_block:
            raise RuntimeError("The database role cannot change inside a transaction.")
        connection.close()
        if which == "owner":
            _app_credentials[alias] = {key: connection.settings_dict.get(key) for key in _CREDENTIALS}
            connection.settings_dict.update(settings.DATABASE_OWNER)
        else:
            connection.settings_dict.update(_app_credentials.pop(alias))


@contextlib.contextmanager
def as_owner(alias: str = DEFAULT_DB_ALIAS):
    """Connected as the owner for the block (nested: stays the owner), then as the application again."""
    already = alias in _app_credentials
    connect_as("owner", alias)
    try:
        yield
    finally:
        if not already:
            connect_as("app", alias)


def grant_app_role(*, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """The application role's privileges, granted by the owner after every ``migrate`` (post_migrate).

    Re-asserted each time, so a grant loosened by hand is tightened again by the next deploy.
    """
    from governance.audit.models import AuditEvent, ChainHead, Checkpoint

    connection = connections[using]
    if connection.vendor != "postgresql" or not separated():
        return
    app = app_role(using)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_schema()")
        current, schema = cursor.fetchone()
        if current == app:
            return  # not connected as the owner (an app-role flush in a test, say): nothing it may grant
        q = connection.ops.quote_name
        role, schema = q(app), q(schema)
        append_only = ", ".join(q(m._meta.db_table) for m in (AuditEvent, Checkpoint))
        head = q(ChainHead._meta.db_table)
        for statement in (
            # nothing of the application's own in the schema (PostgreSQL 15's default; a warning where
            # an older one's public schema belongs to a superuser)
            f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC",
            f"GRANT USAGE ON SCHEMA {schema} TO {role}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
            # tables and sequences the owner creates later (the next migrations) get the same
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}",
            # the audit log: read and append, nothing else; the head row moves on every append
            f"REVOKE ALL ON {append_only}, {head} FROM {role}, PUBLIC",
            f"GRANT SELECT, INSERT ON {append_only} TO {role}",
            f"GRANT SELECT, INSERT, UPDATE ON {head} TO {role}",
        ):
            cursor.execute(statement)
