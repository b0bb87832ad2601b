"""System checks: the application's database role must not be able to rewrite the audit log.

Database checks, as Django runs them: ``manage.py check --database default``, and every ``migrate``.
Quiet on SQLite (no roles) and before the audit tables exist.
"""

from __future__ import annotations

from django.core.checks import Tags, Warning, register
from django.db import DatabaseError, connections

from governance.audit import roles

HINT = (
    "Connect the application (DATABASE_URL) as a role that owns nothing and is no superuser, and run "
    "migrations as the owner (DATABASE_OWNER_URL): see 'Running on PostgreSQL and Redis' in the README."
)


@register(Tags.database)
def audit_role_check(app_configs=None, databases=None, **kwargs) -> list[Warning]:
    issues: list[Warning] = []
    for alias in databases or ():
        if connections[alias].vendor != "postgresql":
            continue
        try:
            issues += role_warnings(alias=alias)
        except DatabaseError:
            continue  # an unreachable database is migrate's (or the app's) error to report, not this check's
    return issues


def role_warnings(*, alias: str = "default", role: str | None = None) -> list[Warning]:
    """What ``role`` (the application's, by default) could do to the audit log beyond reading and appending."""
    from governance.audit.models import AuditEvent, ChainHead, Checkpoint

    role = role or roles.app_role(alias)
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
        row = cursor.fetchone()
        if row is None:
            return []
        if row[0]:
            return [
                Warning(
                    f"The application's database role {role!r} is a superuser: it can switch off the audit "
                    "log's append-only triggers and rewrite the hash chain.",
                    hint=HINT,
                    id="charter.W001",
                )
            ]
        owned, loose = [], []
        forbidden = {
            AuditEvent: "UPDATE DELETE TRUNCATE",
            Checkpoint: "UPDATE DELETE TRUNCATE",
            ChainHead: "DELETE TRUNCATE",
        }
        for model, privileges in forbidden.items():
            table = model._meta.db_table
            cursor.execute(
                "SELECT pg_has_role(%s, relowner, 'MEMBER'), "
                + ", ".join(f"has_table_privilege(%s, oid, '{p}')" for p in privileges.split())
                + " FROM pg_class WHERE oid = to_regclass(%s)",
                [role] * (1 + len(privileges.split())) + [table],
            )
            found = cursor.fetchone()
            if found is None:
                continue  # not migrated yet
            if found[0]:
                owned.append(table)
            loose += [f"{p} on {table}" for p, granted in zip(privileges.split(), found[1:], strict=True) if granted]
    if owned:
        return [
            Warning(
                f"The application's database role {role!r} owns {', '.join(owned)} (or is a member of the "
                "role that does): it can ALTER the audit tables, disable their triggers and rewrite the chain.",
                hint=HINT,
                id="charter.W002",
            )
        ]
    if loose:
        return [
            Warning(
                f"The application's database role {role!r} holds {', '.join(loose)}: the audit log should "
                "only be read and appended to.",
                hint="Run `manage.py migrate` (as the owner): it grants the application role exactly what it needs.",
                id="charter.W003",
            )
        ]
    return []
