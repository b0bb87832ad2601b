"""Row locks taken ahead of time, in the order ``governance/audit/services.py`` writes down."""

from __future__ import annotations

from django.db import connection, models


def key_share(model: type[models.Model], pk: int) -> None:
    """Lock one row ``FOR KEY SHARE`` now.

    Inserting a row that references another (a run of a version) makes PostgreSQL's deferred
    foreign-key check take this lock at commit: after the audit chain head, the wrong order.
    Taken first, it is the same lock in the right place. It does not block readers or other
    inserts referencing the row, only writers holding it ``FOR UPDATE``.
    """
    if connection.vendor != "postgresql":  # SQLite: one writer at a time, nothing to order
        return
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT 1 FROM "{model._meta.db_table}" WHERE "id" = %s FOR KEY SHARE', [pk])
