"""The audit log on PostgreSQL: append-only, and any break of the chain is found and named.

Tampering needs the rights of the tables' owner (a DBA, an insider) or a superuser, who can switch
the append-only triggers off (``ALTER TABLE ... DISABLE TRIGGER USER``), delete checkpoint rows and
move the chain head: these tests run as the owner (the application's own role can do none of it:
tests/test_audit_roles.py). Each way of breaking the chain is then caught by ``manage.py
audit_verify``, both by the set-based check inside PostgreSQL and by the replay in Python
(``--in-python``); what the rows in the database no longer show, the signed checkpoints exported
outside it do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import threading

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from governance.accounts.models import Team
from governance.audit import chain, roles, services
from governance.audit.actions import AuditAction
from governance.audit.models import GENESIS_HASH, AuditEvent, ChainHead, Checkpoint
from governance.core.context import audit_context
from governance.registry import services as registry
from governance.registry.models import RegisteredModel

pytestmark = [pytest.mark.usefixtures("fast_passwords")]
User = get_user_model()


@pytest.fixture(scope="module", autouse=True)
def _as_the_owner(django_db_setup):
    """The whole module connects as the owner of the audit tables, where one is configured."""
    with roles.as_owner():
        yield


def exported_files() -> list:
    return sorted(settings.AUDIT_CHECKPOINT_DIR.glob("checkpoint-*.json"))


@pytest.fixture
def events(users, make_model):
    """A chain of a dozen events from ordinary registry writes."""
    for i in range(8):
        make_model(f"model-{i}", description=f"model number {i} | with a pipe", use_case="ünïcødé ✓")
    assert AuditEvent.objects.count() >= 10
    return list(AuditEvent.objects.order_by("seq"))


def _sql(statement: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


@contextlib.contextmanager
def triggers_off():
    """What an attacker with database superuser rights would do first."""
    _sql("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
    try:
        yield
    finally:
        _sql("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


def tamper(statement: str, params=None) -> None:
    with triggers_off():
        _sql(statement, params)


def _verify_command(in_python: bool) -> str:
    out = io.StringIO()
    call_command("audit_verify", *(["--in-python"] if in_python else []), stdout=out)
    return out.getvalue()


def assert_intact() -> None:
    for in_python in (False, True):
        assert "Audit chain intact" in _verify_command(in_python)
        assert services.verify(in_database=not in_python).ok


def assert_broken_at(seq: int, reason: str) -> None:
    """Both verifiers name the same first broken event, and the command fails naming it."""
    for in_python in (False, True):
        result = services.verify(in_database=not in_python)
        assert not result.ok
        assert result.first_broken_seq == seq, (in_python, result)
        assert reason in result.reason, (in_python, result)
        with pytest.raises(CommandError, match=rf"BROKEN at event #{seq}\b") as raised:
            _verify_command(in_python)
        assert reason in str(raised.value)


def _rehash_from(seq: int) -> None:
    """Recompute hashes from ``seq`` to the end so that every link is valid again (a consistent rewrite)."""
    rows = list(AuditEvent.objects.filter(seq__gte=seq).order_by("seq"))
    prev = AuditEvent.objects.get(seq=seq - 1).hash if seq > 1 else GENESIS_HASH
    with triggers_off():
        for row in rows:
            digest = chain.event_hash(
                prev_hash=prev, seq=row.seq, created_at=row.created_at, actor_id=row.actor_id,
                actor_label=row.actor_label, source=row.source, request_id=row.request_id, action=row.action,
                object_type=row.object_type, object_id=row.object_id, team_id=row.team_id, changes=row.changes,
            )  # fmt: skip
            _sql("UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE id = %s", [prev, digest, row.pk])
            prev = digest


def _move_head_to_the_log_end() -> None:
    last = AuditEvent.objects.order_by("-seq").first()
    seq, digest, prev = (last.seq, last.hash, last.prev_hash) if last else (0, GENESIS_HASH, GENESIS_HASH)
    ChainHead.objects.filter(id=1).update(seq=seq, hash=digest, prev_hash=prev)


# --- append-only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET action = 'model.delete' WHERE seq = 3",
        "UPDATE audit_auditevent SET changes = '{}'",
        "UPDATE audit_auditevent SET hash = prev_hash WHERE seq = (SELECT max(seq) FROM audit_auditevent)",
        "DELETE FROM audit_auditevent WHERE seq = 3",
        "DELETE FROM audit_auditevent",
    ],
)
def test_raw_sql_cannot_update_or_delete_audit_events(events, statement):
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            connection.cursor().execute(statement)
    assert list(AuditEvent.objects.order_by("seq")) == events
    assert [(e.action, e.changes, e.hash) for e in AuditEvent.objects.order_by("seq")] == [
        (e.action, e.changes, e.hash) for e in events
    ]
    assert_intact()


def test_the_orm_cannot_update_or_delete_audit_events_either(events):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=2).update(actor_label="mallory")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        events[1].delete()
    event = AuditEvent.objects.get(seq=2)
    event.actor_label = "mallory"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.save()
    assert AuditEvent.objects.get(seq=2).actor_label == events[1].actor_label
    assert_intact()


# --- tampering is found -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "expression"),
    [
        ("changes", '\'{"after":{"name":"forged"}}\''),
        ("changes", "replace(changes, 'model-4', 'model-X')"),
        ("actor_label", "'mallory'"),
        ("actor_id", "NULL"),
        ("action", "'model.delete'"),
        ("source", "'ui'"),
        ("request_id", "'forged-request'"),
        ("object_type", "'accounts.team'"),
        ("object_id", "object_id || '0'"),
        ("team_id", "NULL"),
        ("created_at", "created_at + interval '1 microsecond'"),
        ("hash", "md5(hash) || md5(hash)"),
    ],
)
def test_a_tampered_row_is_named(events, column, expression):
    target = events[6].seq
    tamper(f"UPDATE audit_auditevent SET {column} = {expression} WHERE seq = %s", [target])
    assert AuditEvent.objects.filter(seq=target).exclude(**{column: getattr(events[6], column)}).exists()
    # For ``hash`` the next row no longer links to it either; the first broken one is named.
    assert_broken_at(target, "content does not match its hash")


def test_a_deleted_middle_row_is_named(events):
    middle = events[5].seq
    tamper("DELETE FROM audit_auditevent WHERE seq = %s", [middle])
    assert_broken_at(middle + 1, "sequence gap before this event")


def test_a_deleted_first_row_is_named(events):
    tamper("DELETE FROM audit_auditevent WHERE seq = 1")
    assert_broken_at(2, "sequence gap before this event")


def test_a_renumbered_gap_is_still_found_by_its_links(events):
    """Delete a row and shift the later seqs down: no gap, but the next row points at the deleted one."""
    middle = events[5].seq
    tamper("DELETE FROM audit_auditevent WHERE seq = %s", [middle])
    tamper("UPDATE audit_auditevent SET seq = -seq WHERE seq > %s", [middle])  # unique seq: shift in two moves
    tamper("UPDATE audit_auditevent SET seq = -seq - 1 WHERE seq < 0")
    assert_broken_at(middle, "prev_hash does not match the previous event")


def test_swapped_hashes_are_named(events):
    a, b = events[3], events[4]
    tamper("UPDATE audit_auditevent SET hash = %s WHERE id = %s", [b.hash, a.pk])
    tamper("UPDATE audit_auditevent SET hash = %s WHERE id = %s", [a.hash, b.pk])
    assert_broken_at(a.seq, "content does not match its hash")


def test_swapped_rows_are_named(events):
    """Two events exchange their places in the sequence."""
    a, b = events[3], events[4]
    tamper("UPDATE audit_auditevent SET seq = -1 WHERE id = %s", [a.pk])
    tamper("UPDATE audit_auditevent SET seq = %s WHERE id = %s", [a.seq, b.pk])
    tamper("UPDATE audit_auditevent SET seq = %s WHERE id = %s", [b.seq, a.pk])
    assert_broken_at(a.seq, "prev_hash does not match the previous event")


def test_a_consistently_rewritten_middle_is_found_at_the_first_changed_row(events):
    """Rewrite from row k onwards with every link recomputed, the head moved too: the
    signed checkpoint taken before still pins the old tail."""
    call_command("audit_checkpoint", stdout=io.StringIO())
    k = events[4].seq
    tamper("UPDATE audit_auditevent SET changes = %s WHERE seq = %s", ['{"after":{"name":"innocent"}}', k])
    _rehash_from(k)
    _move_head_to_the_log_end()
    cp = Checkpoint.objects.get()
    assert services._first_broken_sql() is None and services._first_broken_python() is None  # every link checks out
    assert_broken_at(cp.seq, "differs from the signed checkpoint")


def test_a_consistently_rewritten_tail_is_caught_by_the_chain_head(events):
    last = events[-1]
    tamper(
        "UPDATE audit_auditevent SET changes = %s, actor_label = 'mallory' WHERE seq >= %s",
        ['{"after":{"name":"innocent"}}', last.seq - 1],
    )
    _rehash_from(last.seq - 1)
    assert services._first_broken_sql() is None and services._first_broken_python() is None
    head = ChainHead.objects.get(id=1)
    assert head.seq == last.seq and head.hash == last.hash  # the head still holds the true newest hash
    # The newest event is the one that no longer matches the head.
    assert_broken_at(last.seq, "chain head")


def test_a_rewritten_tail_with_a_forged_head_is_caught_by_the_checkpoint(events):
    out = io.StringIO()
    call_command("audit_checkpoint", stdout=out)
    cp = Checkpoint.objects.get()
    assert f"Checkpoint #{cp.seq}" in out.getvalue()
    exported = json.loads((settings.AUDIT_CHECKPOINT_DIR / f"checkpoint-{cp.seq:012d}.json").read_text())
    assert (exported["seq"], exported["hash"], exported["signature"]) == (cp.seq, cp.hash, cp.signature)
    assert (cp.seq, cp.hash) == (events[-1].seq, events[-1].hash)

    tamper("UPDATE audit_auditevent SET changes = %s WHERE seq >= %s", ['{"after":{}}', cp.seq - 2])
    _rehash_from(cp.seq - 2)
    _move_head_to_the_log_end()
    assert_broken_at(cp.seq, "differs from the signed checkpoint")


def test_a_rewrite_that_also_covers_later_events_is_caught_by_the_checkpoint(events, make_model):
    call_command("audit_checkpoint", stdout=io.StringIO())
    cp = Checkpoint.objects.get()
    make_model("after-the-checkpoint-1")
    make_model("after-the-checkpoint-2")
    assert_intact()
    tamper("UPDATE audit_auditevent SET actor_label = 'mallory' WHERE seq >= %s", [cp.seq])
    _rehash_from(cp.seq)
    _move_head_to_the_log_end()
    assert_broken_at(cp.seq, "differs from the signed checkpoint")


def test_a_truncated_tail_is_caught_by_the_chain_head(events):
    last = events[-1].seq
    tamper("DELETE FROM audit_auditevent WHERE seq >= %s", [last - 1])
    assert_broken_at(last - 1, "chain head says #")


def test_a_truncated_tail_with_a_forged_head_is_caught_by_the_checkpoint(events):
    call_command("audit_checkpoint", stdout=io.StringIO())
    last = events[-1].seq
    tamper("DELETE FROM audit_auditevent WHERE seq >= %s", [last - 1])
    _move_head_to_the_log_end()
    assert_broken_at(last - 1, "the tail was removed")


def test_a_truncated_table_is_caught_by_the_checkpoint(events):
    """TRUNCATE passes the row triggers (the test harness needs it); the checkpoint is the guard."""
    call_command("audit_checkpoint", stdout=io.StringIO())
    _sql("TRUNCATE audit_auditevent")
    assert_broken_at(1, "chain head says #")
    _move_head_to_the_log_end()
    assert_broken_at(1, "the tail was removed")


def test_a_forged_checkpoint_is_refused(events):
    call_command("audit_checkpoint", stdout=io.StringIO())
    cp = Checkpoint.objects.get()
    Checkpoint.objects.filter(pk=cp.pk).update(seq=cp.seq - 3)
    assert_broken_at(cp.seq - 3, "invalid signature")


def test_verify_over_the_api_names_the_broken_event(api, users, events):
    client = api.as_user(users.auditor)
    assert client.post("/api/v1/audit-events/verify/").json()["ok"] is True
    tamper("UPDATE audit_auditevent SET actor_label = 'mallory' WHERE seq = %s", [events[2].seq])
    body = client.post("/api/v1/audit-events/verify/").json()
    assert body["ok"] is False
    assert (body["first_broken_seq"], body["first_broken_id"]) == (events[2].seq, events[2].pk)
    assert body["reason"] == "content does not match its hash"


def test_checkpoints_keep_verifying_as_the_log_grows(events, make_model):
    call_command("audit_checkpoint", stdout=io.StringIO())
    make_model("later")
    call_command("audit_checkpoint", stdout=io.StringIO())
    make_model("later-still")
    assert Checkpoint.objects.count() == 2
    assert len(exported_files()) == 2
    assert_intact()


# --- what the database no longer shows, the exported checkpoints do -----------------------------


def test_a_truncated_tail_with_deleted_checkpoint_rows_is_caught_by_the_exported_checkpoint(events, make_model):
    """The insider's whole attack: the checkpoint rows deleted, the tail cut, the head moved back to
    the new end. Nothing in the database disagrees any more; the signed file outside it still
    covers the removed events, and the first of them is named."""
    call_command("audit_checkpoint", stdout=io.StringIO())
    [exported] = exported_files()
    make_model("after-the-checkpoint")  # events newer than the checkpoint go with the tail
    cut = events[-1].seq - 2
    tamper("DELETE FROM audit_auditevent WHERE seq >= %s", [cut])
    _sql("DELETE FROM audit_checkpoint")
    _move_head_to_the_log_end()
    assert services._first_broken_sql() is None and services._first_broken_python() is None
    assert not Checkpoint.objects.exists() and ChainHead.objects.get(id=1).seq == cut - 1
    assert_broken_at(cut, "the tail was removed")
    assert exported.name in services.verify().reason


def test_a_rewritten_tail_with_deleted_checkpoint_rows_is_caught_between_two_checkpoints(events, make_model):
    """Rewritten after one checkpoint and re-hashed to the end, rows gone: the next exported checkpoint
    no longer matches, and the one before still does, which bounds where the rewrite began."""
    call_command("audit_checkpoint", stdout=io.StringIO())
    still_good = Checkpoint.objects.get().seq
    make_model("later-1")
    make_model("later-2")
    call_command("audit_checkpoint", stdout=io.StringIO())
    pinned = Checkpoint.objects.order_by("-seq").first().seq
    tamper("UPDATE audit_auditevent SET actor_label = 'mallory' WHERE seq = %s", [still_good + 1])
    _rehash_from(still_good + 1)
    _move_head_to_the_log_end()
    _sql("DELETE FROM audit_checkpoint")
    assert_broken_at(pinned, "differs from the signed checkpoint file")
    assert f"events up to #{still_good} still match a signed checkpoint" in services.verify().reason


def test_deleted_checkpoint_rows_are_reported_by_their_exported_files(events, make_model):
    call_command("audit_checkpoint", stdout=io.StringIO())
    first = Checkpoint.objects.get()
    make_model("later")
    call_command("audit_checkpoint", stdout=io.StringIO())
    assert_intact()
    _sql("DELETE FROM audit_checkpoint WHERE id = %s", [first.pk])
    assert_broken_at(first.seq, "checkpoint rows were deleted")


def test_a_checkpoint_file_edited_to_fit_a_rewritten_tail_is_refused(events):
    """Whoever can write the exports but has no key cannot make a file agree with a forged tail."""
    call_command("audit_checkpoint", stdout=io.StringIO())
    [exported] = exported_files()
    last = events[-1].seq
    tamper("UPDATE audit_auditevent SET actor_label = 'mallory' WHERE seq = %s", [last])
    _rehash_from(last)
    _move_head_to_the_log_end()
    _sql("DELETE FROM audit_checkpoint")
    document = json.loads(exported.read_text())
    document["hash"] = AuditEvent.objects.get(seq=last).hash
    exported.write_text(json.dumps(document))
    assert_broken_at(last, "has an invalid signature")


# --- the two hash formulas agree -------------------------------------------------------------


def _recomputed(event: AuditEvent) -> str:
    return chain.event_hash(
        prev_hash=event.prev_hash, seq=event.seq, created_at=event.created_at, actor_id=event.actor_id,
        actor_label=event.actor_label, source=event.source, request_id=event.request_id, action=event.action,
        object_type=event.object_type, object_id=event.object_id, team_id=event.team_id, changes=event.changes,
    )  # fmt: skip


def test_events_hashed_by_postgresql_verify_in_python(users, team):
    awkward = [
        dict(changes={"text": "a|b|c", "uni": "é ✓ 日本語", "nl": "line\nbreak", "q": "'\"\\"}, team_id=team.pk),
        dict(changes={}, team_id=None),
        dict(changes={"n": 1.5, "big": 10**20, "nested": {"z": 1, "a": [None, True]}}, object_id="x|y"),
    ]
    with audit_context(source="api", request_id="awkward-1"):  # no actor at all
        for extra in awkward:
            with transaction.atomic():
                services.record(action=AuditAction.MODEL_UPDATE, object_type="test", **extra)
    with audit_context(source="cli", actor=users.admin):
        with transaction.atomic():
            returned = services.record(
                action=AuditAction.MODEL_CREATE, object_type="test", object_id="1", team_id=team.pk
            )
    stored = AuditEvent.objects.get(pk=returned.pk)
    assert (returned.seq, returned.hash, returned.prev_hash) == (stored.seq, stored.hash, stored.prev_hash)
    assert returned.created_at == stored.created_at
    for event in AuditEvent.objects.order_by("seq"):
        assert _recomputed(event) == event.hash, event
    piped = AuditEvent.objects.get(object_type="test", object_id="x/y")
    assert piped.actor_id is None and piped.actor_label == ""
    assert_intact()


def test_events_hashed_in_python_verify_in_postgresql(users, team):
    """The portable append (SQLite's path) computes the hash in Python; PostgreSQL must agree."""
    with audit_context(source="cli", actor=users.admin):
        for i, changes in enumerate(['{"a":"é|✓"}', "{}", '{"x":[1,2,3]}']):
            when = dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=dt.UTC) if i == 0 else timezone.now()
            fields = dict(
                created_at=chain.format_ts(when),
                actor_id=users.admin.pk if i != 1 else None,
                actor_label="admin" if i != 1 else "",
                source="cli",
                request_id=f"portable-{i}",
                action="test.portable",
                object_type="test",
                object_id=str(i),
                team_id=team.pk if i != 2 else None,
                changes=changes,
            )
            with transaction.atomic():
                services._append_portable(fields, when)
    with transaction.atomic():
        with audit_context(source="cli"):
            services.record(action=AuditAction.MODEL_UPDATE, object_type="test")
    assert services._first_broken_sql() is None
    assert services._first_broken_python() is None
    assert_intact()


# --- concurrent writers -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_chain_stays_valid_under_concurrent_writers(users, team):
    writers, per_writer = 8, 4
    barrier = threading.Barrier(writers)
    failures: list[BaseException] = []
    author_pk, team_pk = users.author.pk, team.pk
    seq_before = AuditEvent.objects.count()

    def write(n: int) -> None:
        from django.db import connection as thread_connection

        try:
            author = User.objects.get(pk=author_pk)
            owner = Team.objects.get(pk=team_pk)
            barrier.wait(timeout=30)
            for i in range(per_writer):
                with audit_context(source="cli", actor=author, request_id=f"writer-{n}-{i}"):
                    registry.model_create(actor=author, team=owner, name=f"model-{n}-{i}")
        except BaseException as exc:  # surfaced in the main thread
            failures.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert RegisteredModel.objects.count() == writers * per_writer
    created = AuditEvent.objects.filter(action="model.create", request_id__startswith="writer-")
    assert created.count() == writers * per_writer
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) == seq_before + writers * per_writer
    prevs = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(set(prevs)) == len(prevs)  # no fork: every event has its own predecessor
    head = ChainHead.objects.get(id=1)
    assert head.seq == seqs[-1]
    assert_intact()
