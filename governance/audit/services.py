"""Appending to and verifying the audit chain. Every governed write calls ``record``.

Lock order
----------
``record`` locks the chain head (one row, ``audit_chainhead``) until the transaction ends, so
every governed write serialises on it. A transaction that also locks other rows must take them
*before* the chain head, in this order, or two of them can each hold what the other waits for
(PostgreSQL then aborts one: ``DeadlockDetected``):

1. the registered model row, when the write changes it or allocates a version number;
2. the model version row(s), in id order: ``FOR UPDATE`` to change a version,
   ``FOR KEY SHARE`` (``governance.core.locks.key_share``) to insert a row that references it,
   such as an evaluation run. PostgreSQL's deferred foreign-key check would take that same lock
   at commit, after the chain head: the deadlock between requesting an evaluation and finishing
   a run of the same version;
3. the version's own rows: its evaluation runs, approval requests and their decisions,
   checklist ticks, cards. Signal receivers that lock them (``evidence_changed``: the approvals
   re-freeze) are sent before ``record``, not after;
4. the audit chain head, last: ``record`` is the last locking statement of the transaction.

A deadlock or serialization failure that happens anyway is retried once by the service
(``governance.core.retry.retry_once``) and then answered 503 ``busy_retry``, never 500.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from governance.audit import chain, checkpoints
from governance.audit.actions import AuditAction
from governance.audit.models import GENESIS_HASH, AuditEvent, ChainHead, Checkpoint
from governance.core import sql
from governance.core.context import current


class AuditContextMissing(RuntimeError):
    """A governed write ran outside any audit context (no request, task or command)."""


def snapshot(obj: models.Model, fields: list[str] | None = None) -> dict[str, Any]:
    """JSON-safe values of the concrete fields (foreign keys as ids), for before/after records."""
    names = fields or getattr(obj, "AUDIT_FIELDS", None)
    out: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if names is not None and field.name not in names:
            continue
        value = getattr(obj, field.attname)
        if isinstance(value, dt.datetime | dt.date):
            value = value.isoformat()
        elif not isinstance(value, str | int | float | bool | list | dict | type(None)):
            value = str(value)
        out[field.name] = value
    return out


def _object_ref(obj: models.Model | None, object_type: str | None, object_id: str | None) -> tuple[str, str]:
    if obj is not None:
        return object_type or obj._meta.label_lower, object_id or str(obj.pk)
    if not object_type:
        raise ValueError("An audit record needs an object or an object_type.")
    return object_type, object_id or ""


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an event landed in the chain (cheaper to hand back than a model instance)."""

    pk: int
    seq: int
    prev_hash: str
    hash: str
    created_at: dt.datetime


def record(
    *,
    action: AuditAction,
    obj: models.Model | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    team_id: int | None = None,
    before: dict | None = None,
    after: dict | None = None,
    changes: dict | None = None,
    actor=None,
) -> Appended:
    """Append one event to the chain, inside the caller's transaction.

    Call it last in a service: the chain head stays locked from here to commit, so the
    shorter that stretch, the less concurrent writers wait on each other. ``action`` is an
    ``AuditAction`` member, never a plain string: what is recorded is what the log can describe.
    """
    if not isinstance(action, AuditAction):
        raise TypeError(f"audit.record takes an AuditAction member, not {type(action).__name__} {action!r}.")
    ctx = current()
    if ctx is None:
        raise AuditContextMissing(f"Governed write {action!r} has no audit context.")
    if not connection.in_atomic_block:
        raise RuntimeError("audit.record must run inside the transaction of the change it records.")
    object_type, object_id = _object_ref(obj, object_type, object_id)
    if team_id is None and obj is not None:
        team_id = getattr(obj, "audit_team_id", None)
    body: dict[str, Any] = dict(changes or {})
    if before is not None:
        body["before"] = before
    if after is not None:
        body["after"] = after
    if ctx.token_id is not None:
        body["token_id"] = ctx.token_id
    actor_id = actor.pk if actor is not None else ctx.actor_id
    now = timezone.now()
    fields = dict(
        created_at=chain.format_ts(now),
        actor_id=actor_id,
        actor_label=actor.get_username() if actor is not None else ctx.actor_label,
        source=ctx.source,
        request_id=ctx.request_id,
        action=action.value,  # the stored, hashed code: a plain str for the driver and the hash
        object_type=object_type,
        object_id=object_id.replace("|", "/"),
        team_id=team_id,
        changes=chain.canonical_json(body),
    )
    append = _append_postgresql if connection.vendor == "postgresql" else _append_portable
    return append(fields, now)


_PG_APPEND = """
WITH head AS (
    UPDATE audit_chainhead
       SET seq = seq + 1,
           prev_hash = hash,
           hash = encode(sha256(convert_to(concat_ws('|', hash, (seq + 1)::text, %(created_at)s::text,
                  %(actor_text)s::text, %(actor_label)s::text, %(source)s::text, %(request_id)s::text,
                  %(action)s::text, %(object_type)s::text, %(object_id)s::text, %(team_text)s::text,
                  %(changes)s::text), 'UTF8')), 'hex')
     WHERE id = 1
 RETURNING seq, prev_hash, hash
)
INSERT INTO audit_auditevent (seq, created_at, actor_id, actor_label, source, request_id, action,
                              object_type, object_id, team_id, changes, prev_hash, hash)
SELECT head.seq, %(created_at)s::timestamptz, %(actor_id)s, %(actor_label)s, %(source)s, %(request_id)s,
       %(action)s, %(object_type)s, %(object_id)s, %(team_id)s, %(changes)s, head.prev_hash, head.hash
  FROM head
RETURNING id, seq, prev_hash, hash
"""


def _append_postgresql(fields: dict, now: dt.datetime) -> Appended:
    """One round trip: lock the head, hash in the server, insert the event, move the head.

    A prepared statement with server-side parameters (Django's own cursors bind on the client
    and make PostgreSQL parse and plan the CTE on every write).
    """
    params = dict(
        fields,
        actor_text="" if fields["actor_id"] is None else str(fields["actor_id"]),
        team_text="" if fields["team_id"] is None else str(fields["team_id"]),
    )
    with sql.cursor() as cursor:
        cursor.execute(_PG_APPEND, params)
        row = cursor.fetchone()
        if row is None:  # an empty database: create the genesis head, then append
            ChainHead.objects.get_or_create(id=1)
            cursor.execute(_PG_APPEND, params)
            row = cursor.fetchone()
    pk, seq, prev_hash, digest = row
    return Appended(pk=pk, seq=seq, prev_hash=prev_hash, hash=digest, created_at=now)


def _append_portable(fields: dict, now: dt.datetime) -> Appended:
    head, _ = ChainHead.objects.select_for_update().get_or_create(id=1)
    seq = head.seq + 1
    digest = chain.event_hash(prev_hash=head.hash, seq=seq, **fields)
    event = AuditEvent.objects.create(seq=seq, prev_hash=head.hash, hash=digest, **dict(fields, created_at=now))
    ChainHead.objects.filter(id=1).update(seq=seq, prev_hash=head.hash, hash=digest)
    return Appended(pk=event.pk, seq=seq, prev_hash=head.hash, hash=digest, created_at=now)


@transaction.atomic
def export_record(*, actor, fmt: str, filters: dict) -> Appended:
    """Record an export of the log (who, which format, which filters) before a byte of it is sent.

    Filed under the team the export was filtered to, when the exporter may read that team, so the
    team's own auditors see it; otherwise under no team, like a sign-in: the exporter's own event
    and the site administrators'.
    """
    from governance.accounts.permissions import team_ids_visible_to

    team_id = filters.get("team")
    visible = team_ids_visible_to(actor)
    if team_id is not None and visible is not None and team_id not in visible:
        team_id = None
    return record(
        action=AuditAction.AUDIT_EXPORT, object_type="audit.export", object_id=fmt, team_id=team_id,
        changes={"format": fmt, "filters": filters}, actor=actor,
    )  # fmt: skip


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events_checked: int
    head_seq: int
    first_broken_seq: int | None = None
    first_broken_id: int | None = None
    reason: str = ""
    checkpoints_checked: int = 0

    def as_dict(self) -> dict:
        return self.__dict__.copy()


_PG_VERIFY = f"""
SELECT id, seq, reason FROM (
    SELECT e.id, e.seq,
           CASE
             WHEN e.seq <> coalesce(lag(e.seq) OVER w, 0) + 1 THEN 'sequence gap before this event'
             WHEN e.prev_hash <> coalesce(lag(e.hash) OVER w, '{GENESIS_HASH}') THEN 'prev_hash does not match the previous event'
             WHEN e.hash <> {chain.SQL_HASH} THEN 'content does not match its hash'
           END AS reason
      FROM audit_auditevent e
    WINDOW w AS (ORDER BY e.seq)
) checked
WHERE reason IS NOT NULL
ORDER BY seq
LIMIT 1
"""


def verify(
    *, in_database: bool | None = None, checkpoint_dir: Path | None = None, checkpoint_file: Path | None = None
) -> VerifyResult:
    """Check every link, then the tail against the chain head and every signed checkpoint.

    The head row moves on every append, so the application's role may update it: it names a
    truncated tail only when nobody moved it too. The checkpoints exported outside the database
    (``checkpoint_dir``, else the configured storage) are what a rewrite cannot get past.
    ``checkpoint_file``: hold the log against that one signed checkpoint instead (a copy kept apart,
    an export's), before the head, so that the answer says which: intact, a tail removed or rewritten;
    ``ValueError`` when the file is no checkpoint.
    """
    if in_database is None:
        in_database = connection.vendor == "postgresql"
    broken = _first_broken_sql() if in_database else _first_broken_python()
    stats = AuditEvent.objects.aggregate(n=models.Count("id"), last=models.Max("seq"))
    count, last_seq = stats["n"], stats["last"] or 0
    if broken:
        pk, seq, reason = broken
        return VerifyResult(False, count, last_seq, seq, pk, reason)
    if checkpoint_file is not None:
        report = checkpoints.check_file(checkpoint_file, last_seq=last_seq)
        if report.problem:
            seq, reason = report.problem
            pk = AuditEvent.objects.filter(seq=seq).values_list("id", flat=True).first()
            return VerifyResult(False, count, last_seq, seq, pk, reason, report.checked)
    last = AuditEvent.objects.filter(seq=last_seq).values_list("hash", flat=True).first() or GENESIS_HASH
    head = ChainHead.objects.filter(id=1).first()
    if head is not None and head.seq != last_seq:
        return VerifyResult(
            False, count, last_seq, min(head.seq, last_seq) + 1, None,
            f"chain head says #{head.seq} but the log ends at #{last_seq}",
        )  # fmt: skip
    if head is not None and head.hash != last:
        last_id = AuditEvent.objects.filter(seq=last_seq).values_list("id", flat=True).first()
        return VerifyResult(
            False, count, last_seq, last_seq, last_id, f"event #{last_seq} does not match the chain head's hash"
        )
    if checkpoint_file is not None:
        return VerifyResult(True, count, last_seq, checkpoints_checked=report.checked)
    report = checkpoints.check(last_seq=last_seq, location=checkpoint_dir)
    if report.problem:
        seq, reason = report.problem
        pk = AuditEvent.objects.filter(seq=seq).values_list("id", flat=True).first()
        return VerifyResult(False, count, last_seq, seq, pk, reason, report.checked)
    return VerifyResult(True, count, last_seq, checkpoints_checked=report.checked)


def _first_broken_sql():
    with connection.cursor() as cursor:
        cursor.execute(_PG_VERIFY)
        return cursor.fetchone()


_LINE_FIELDS = (
    "id", "seq", "created_at", "actor_id", "actor_label", "source", "request_id", "action", "object_type",
    "object_id", "team_id", "changes", "prev_hash", "hash",
)  # fmt: skip


def _event_rows():
    """Every event in chain order, streamed. On PostgreSQL through a server-side cursor, with the
    timestamp already in the chain's text form (parsing and re-formatting 1M datetimes in
    Python costs more than hashing them)."""
    table = AuditEvent._meta.db_table
    if connection.vendor == "postgresql":
        ts = f"to_char(created_at AT TIME ZONE 'UTC', {chain.SQL_TS_FORMAT})"
        columns = ", ".join(ts if f == "created_at" else f for f in _LINE_FIELDS)
        with transaction.atomic(), connection.chunked_cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {table} ORDER BY seq")
            while rows := cursor.fetchmany(10_000):
                yield from rows
        return
    yield from (AuditEvent.objects.order_by("seq").values_list(*_LINE_FIELDS).iterator(chunk_size=5000))


def _first_broken_python():
    expected_prev, expected_seq = GENESIS_HASH, 1
    for (
        pk,
        seq,
        created_at,
        actor_id,
        label,
        source,
        rid,
        action,
        otype,
        oid,
        team,
        changes,
        prev,
        digest,
    ) in _event_rows():
        if seq != expected_seq:
            return pk, seq, "sequence gap before this event"
        if prev != expected_prev:
            return pk, seq, "prev_hash does not match the previous event"
        computed = chain.event_hash(
            prev_hash=prev, seq=seq, created_at=created_at, actor_id=actor_id, actor_label=label, source=source,
            request_id=rid, action=action, object_type=otype, object_id=oid, team_id=team, changes=changes,
        )  # fmt: skip
        if computed != digest:
            return pk, seq, "content does not match its hash"
        expected_prev, expected_seq = digest, seq + 1
    return None


# --- checkpoints ----------------------------------------------------------------------------


def checkpoint_create(*, export_dir: Path | None = None) -> Checkpoint:
    """Sign the current head with the Ed25519 key and export it outside the database (``export_dir``,
    else the configured checkpoint storage, which verification reads back): see ``checkpoints``."""
    return checkpoints.create(location=export_dir)
