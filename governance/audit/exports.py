"""Audit log exports: the events a person may read, through the list's filters, as CSV or JSON Lines,
streamed with flat memory whatever their number, and checkable against the chain without Charter.

Every row carries what its hash covers, in the chain's own text (``chain.canonical_line``): the
timestamp as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, ``changes`` exactly as hashed (the canonical JSON text,
a string in JSON Lines too), ``prev_hash`` and ``hash``. Rows come in chain order (oldest first), so
each row's ``prev_hash`` is the ``hash`` of the row before it wherever the sequence numbers follow on.

Columns (CSV header; the keys of each JSON line)::

    id, seq, created_at, actor_id, actor_label, source, request_id, action, object_type, object_id,
    team_id, changes, prev_hash, hash

The last line is the trailer: in CSV a row whose first field is ``#trailer`` and whose second is
the trailer's JSON; in JSON Lines ``{"trailer": {...}}``. It holds the export's own chain facts
(``events``, ``first_seq`` and ``first_prev_hash``, ``last_seq`` and ``last_hash``, ``contiguous``:
whether the rows are one unbroken stretch of the chain), the filters, and the newest signed
checkpoint (``checkpoints.document``: seq, hash, signed_at, key id, message, Ed25519 signature),
which pins every event up to its ``seq``: recompute each row's hash, follow the links from
``first_prev_hash`` to ``last_hash``, and, where the checkpoint lies past the export, on through
the events between (another export, ``seq_from``/``seq_to``) to the signed hash (README, "Audit
exports"). A file cut short has no trailer, or one that does not match its rows.

On PostgreSQL the database writes the rows, ``COPY (SELECT ...) TO STDOUT`` over the filtered,
user-scoped query, read row by row and sent in blocks, so memory stays flat (bench/audit_export.py);
the trailer is counted from the very rows sent. Elsewhere (SQLite) a Python writer reads the rows
through the queryset's iterator and writes the same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from governance.audit import chain, checkpoints, signing
from governance.audit.models import AuditEvent, Checkpoint

FORMAT = "charter-audit-export/1"
TRAILER_MARK = "#trailer"
CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
COLUMNS = (
    "id", "seq", "created_at", "actor_id", "actor_label", "source", "request_id", "action", "object_type",
    "object_id", "team_id", "changes", "prev_hash", "hash",
)  # fmt: skip
BLOCK_BYTES = 64 * 1024  # what one write to the client carries: one row per write costs a syscall each
FETCH_ROWS = 2000  # rows per round trip where Python writes the file

_TABLE = AuditEvent._meta.db_table
_TS_SQL = f'to_char("{_TABLE}"."created_at" AT TIME ZONE \'UTC\', {chain.SQL_TS_FORMAT})'


# JSON Lines: PostgreSQL escapes every text of a row in one call, ``to_json(ARRAY[...])`` (one call a
# row costs a third of one per field), and sends it after the numbers, separated by \x03, which no
# JSON text holds unescaped; Python splices them into the line, while the database reads on. In
# escaped JSON no string holds ``","``, so it splits the array unambiguously.
_TEXTS = ("actor_label", "source", "request_id", "action", "object_type", "object_id", "changes", "prev_hash", "hash")
_JSON_ROW_SQL = (
    "concat("
    + ", E'\\x03', ".join(
        [
            f'"{_TABLE}"."id"',
            f'"{_TABLE}"."seq"',
            _TS_SQL,
            f'coalesce("{_TABLE}"."actor_id"::text, \'null\')',
            f'coalesce("{_TABLE}"."team_id"::text, \'null\')',
            "to_json(ARRAY[" + ", ".join(f'"{_TABLE}"."{name}"' for name in _TEXTS) + "])",
        ]
    )
    + ")"
)
_JSON_LINE = (
    "{"
    + ",".join(f'"{name}":"%s"' if name in _TEXTS or name == "created_at" else f'"{name}":%s' for name in COLUMNS)
    + "}\n"
).encode()


def _json_line(row) -> bytes:
    """One event's JSON line from the row PostgreSQL sent (``_JSON_ROW_SQL``)."""
    id_, seq, created_at, actor_id, team_id, texts = bytes(row).rstrip(b"\n").split(b"\x03", 5)
    label, source, request_id, action, object_type, object_id, changes, prev_hash, digest = texts[2:-2].split(b'","')
    return _JSON_LINE % (
        id_, seq, created_at, actor_id, label, source, request_id, action, object_type, object_id, team_id, changes,
        prev_hash, digest,
    )  # fmt: skip


# COPY's CSV format with a quote and a delimiter that a JSON text never holds unescaped (control
# characters): each row goes out exactly as built, with no quoting added (COPY's text format would
# double every backslash).
_COPY_LINES = "FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01'"


@dataclass
class Trailer:
    filters: dict
    exported_by: str
    exported_at: str = field(default_factory=lambda: chain.format_ts(timezone.now()))
    events: int = 0
    first_seq: int | None = None
    first_prev_hash: str | None = None
    last_seq: int | None = None
    last_hash: str | None = None

    def saw(self, seq: int, prev_hash: str, digest: str) -> None:
        if self.first_seq is None:
            self.first_seq, self.first_prev_hash = seq, prev_hash
        self.last_seq, self.last_hash = seq, digest
        self.events += 1

    def ends(self, *, events: int, first: dict, last: dict) -> None:
        self.events = events
        self.first_seq, self.first_prev_hash = int(first["seq"]), first["prev_hash"]
        self.last_seq, self.last_hash = int(last["seq"]), last["hash"]

    def as_dict(self, checkpoint: Checkpoint | None) -> dict:
        contiguous = self.events == 0 or self.last_seq - self.first_seq + 1 == self.events
        return {
            "format": FORMAT,
            "exported_at": self.exported_at,
            "exported_by": self.exported_by,
            "filters": self.filters,
            "events": self.events,
            "first_seq": self.first_seq,
            "first_prev_hash": self.first_prev_hash,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "contiguous": contiguous,
            "columns": list(COLUMNS),
            "checkpoint": checkpoints.document(checkpoint) if checkpoint is not None else None,
        }


def filters_used(cleaned: dict) -> dict:
    """The filters an export was asked with, as JSON (for its audit event and its trailer)."""
    used = {}
    for name, value in cleaned.items():
        if value in (None, ""):
            continue
        used[name] = chain.format_ts(value) if isinstance(value, dt.datetime) else value
    return used


def stream(
    *, events: QuerySet[AuditEvent], fmt: str, filters: dict, exported_by: str, in_database: bool | None = None
) -> Iterator[bytes]:
    """The export of ``events`` (already scoped to the requester and filtered), block by block.

    ``in_database``: let PostgreSQL write the rows (the default there), or write them here.
    """
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown export format {fmt!r}")
    if in_database is None:
        in_database = connection.vendor == "postgresql"
    events = events.order_by("seq")
    trailer = Trailer(filters=filters, exported_by=exported_by)
    with transaction.atomic():  # the Python writer's server-side cursor lives in a transaction
        if fmt == "csv":
            yield _csv_line(COLUMNS)
        if in_database:
            yield from _copy(events, fmt, trailer)
        else:
            yield from _written_here(events, fmt, trailer)
        checkpoint = Checkpoint.objects.filter(algorithm=signing.ED25519).order_by("-seq", "-id").first()
    document = trailer.as_dict(checkpoint)
    if fmt == "csv":
        yield _csv_line((TRAILER_MARK, _json(document)))
    else:
        yield (_json({"trailer": document}) + "\n").encode()


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _csv_line(values) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue().encode()


# --- PostgreSQL writes the rows ------------------------------------------------------------------


def copy_statement(events: QuerySet[AuditEvent], fmt: str) -> tuple[str, tuple]:
    """``COPY (<the rows of events, in chain order>) TO STDOUT (...)`` and its parameters: CSV rows as
    they are sent, or the rows ``_json_line`` makes JSON lines of."""
    events = events.order_by("seq")
    if fmt == "csv":
        rows = events.annotate(created_at_text=RawSQL(_TS_SQL, ())).values_list(
            *("created_at_text" if name == "created_at" else name for name in COLUMNS)
        )
        options = "FORMAT csv"
    else:
        rows = events.annotate(json_row=RawSQL(_JSON_ROW_SQL, ())).values_list("json_row")
        options = _COPY_LINES
    sql, params = rows.query.sql_with_params()
    return f"COPY ({sql}) TO STDOUT ({options})", params


def _copy(events: QuerySet[AuditEvent], fmt: str, trailer: Trailer) -> Iterator[bytes]:
    """The rows as PostgreSQL writes them, in blocks of about ``BLOCK_BYTES``. COPY sends one row per
    message, so the trailer counts them and reads its ends from the first and the last."""
    statement, params = copy_statement(events, fmt)
    line = _json_line if fmt == "jsonl" else bytes
    connection.ensure_connection()
    block = bytearray()
    first = last = None
    count = 0
    with connection.connection.cursor() as cursor, cursor.copy(statement, params) as copy:
        for row in copy:
            last = line(row)
            if first is None:
                first = last
            count += 1
            block += last
            if len(block) >= BLOCK_BYTES:
                yield bytes(block)
                block.clear()
    if block:
        yield bytes(block)
    if count:
        trailer.ends(events=count, first=_parsed(first, fmt), last=_parsed(last, fmt))


def _parsed(line: bytes, fmt: str) -> dict:
    if fmt == "jsonl":
        return json.loads(line)
    return dict(zip(COLUMNS, next(csv.reader([line.decode()])), strict=True))


# --- Python writes the rows (SQLite, and the check that both agree) ---------------------------------


def _written_here(events: QuerySet[AuditEvent], fmt: str, trailer: Trailer) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in events.values_list(*COLUMNS).iterator(chunk_size=FETCH_ROWS):
        values = dict(zip(COLUMNS, row, strict=True))
        values["created_at"] = chain.format_ts(values["created_at"])
        trailer.saw(values["seq"], values["prev_hash"], values["hash"])
        if fmt == "csv":
            writer.writerow(["" if v is None else v for v in values.values()])
        else:
            out.write(_json(values) + "\n")
        if out.tell() >= BLOCK_BYTES:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    if out.tell():
        yield out.getvalue().encode()
