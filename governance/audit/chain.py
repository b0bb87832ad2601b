"""The hash chain: one canonical line per event, the same in Python and in PostgreSQL.

Line layout, fields joined by ``|``::

    prev_hash|seq|created_at|actor_id|actor_label|source|request_id|action|object_type|object_id|team_id|changes

Only ``changes`` (canonical JSON) may contain ``|``, and it comes last, so the line is
unambiguous. ``created_at`` is UTC with microseconds, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
SQL_TS_FORMAT = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""

# The same line as an SQL expression over an audit_auditevent row (aliased ``e``).
SQL_LINE = (
    "concat_ws('|', e.prev_hash, e.seq::text, "
    f"to_char(e.created_at AT TIME ZONE 'UTC', {SQL_TS_FORMAT}), "
    "coalesce(e.actor_id::text, ''), e.actor_label, e.source, e.request_id, e.action, "
    "e.object_type, e.object_id, coalesce(e.team_id::text, ''), e.changes)"
)
SQL_HASH = f"encode(sha256(convert_to({SQL_LINE}, 'UTF8')), 'hex')"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def format_ts(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime(TS_FORMAT)


def canonical_line(
    *,
    prev_hash: str,
    seq: int,
    created_at: dt.datetime | str,
    actor_id: int | None,
    actor_label: str,
    source: str,
    request_id: str,
    action: str,
    object_type: str,
    object_id: str,
    team_id: int | None,
    changes: str,
) -> str:
    ts = created_at if isinstance(created_at, str) else format_ts(created_at)
    fields = [
        prev_hash,
        str(seq),
        ts,
        "" if actor_id is None else str(actor_id),
        actor_label,
        source,
        request_id,
        action,
        object_type,
        object_id,
        "" if team_id is None else str(team_id),
        changes,
    ]
    return "|".join(fields)


def event_hash(**fields) -> str:
    return hashlib.sha256(canonical_line(**fields).encode()).hexdigest()
