"""Issue 14, audit exports: the log taken away as CSV or JSON Lines, checkable without Charter.

``GET /api/v1/audit-events/export/?format=csv|jsonl`` streams the events the list would show (same
filters, same scope) in chain order, each row with what its hash covers, and a trailer with the
export's chain ends and the newest signed checkpoint. The checks below are what an auditor would
run on the file: recompute each row's hash with ``governance.audit.chain``, follow the links, check
the checkpoint's Ed25519 signature with the published key, and chain on to the signed hash.
"""

from __future__ import annotations

import base64
import csv
import io
import json

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.core.management import call_command
from django.urls import reverse

from governance.accounts.models import Membership, Role
from governance.audit import chain, exports
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.registry import services as registry
from tests.conftest import assert_error

pytestmark = pytest.mark.usefixtures("fast_passwords")

URL = "/api/v1/audit-events/export/"


# --- reading an export as an auditor would ---------------------------------------------------------


def _typed(row: dict) -> dict:
    """A row with numbers as numbers and an empty number as None, whichever format it came in."""
    out = dict(row)
    for name in ("id", "seq", "actor_id", "team_id"):
        value = out[name]
        out[name] = None if value in (None, "") else int(value)
    return out


def parse(body: bytes, fmt: str) -> tuple[list[dict], dict | None]:
    """(rows, trailer) of an export; the trailer is None when the file has none (cut short)."""
    text = body.decode()
    if fmt == "csv":
        lines = list(csv.reader(io.StringIO(text)))
        header, lines = lines[0], lines[1:]
        assert header == list(exports.COLUMNS)
        trailer = None
        if lines and lines[-1][0] == exports.TRAILER_MARK:
            trailer = json.loads(lines.pop()[1])
        return [_typed(dict(zip(header, line, strict=True))) for line in lines], trailer
    docs = [json.loads(line) for line in text.splitlines()]
    trailer = docs.pop()["trailer"] if docs and "trailer" in docs[-1] else None
    return [_typed(doc) for doc in docs], trailer


def export(client, fmt: str = "csv", **params) -> tuple[list[dict], dict | None, object]:
    response = client.get(URL, {"format": fmt, **params})
    assert response.status_code == 200, response.content[:500]
    fmt = fmt or "csv"  # empty, like absent, is the default
    assert response["Content-Type"].split(";")[0] == exports.CONTENT_TYPES[fmt]
    rows, trailer = parse(b"".join(response.streaming_content), fmt)
    return rows, trailer, response


def recomputed(row: dict) -> str:
    return chain.event_hash(
        prev_hash=row["prev_hash"], seq=row["seq"], created_at=row["created_at"], actor_id=row["actor_id"],
        actor_label=row["actor_label"], source=row["source"], request_id=row["request_id"], action=row["action"],
        object_type=row["object_type"], object_id=row["object_id"], team_id=row["team_id"], changes=row["changes"],
    )  # fmt: skip


def chain_problems(rows: list[dict], *, start_prev: str | None = None) -> list[str]:
    """What an auditor finds wrong with a run of rows: a row whose content is not its hash, or a row
    that follows on from the one before (next seq) without linking to it."""
    problems = []
    prev = None
    if start_prev is not None:
        prev = {"seq": rows[0]["seq"] - 1, "hash": start_prev} if rows else None
    for row in rows:
        if recomputed(row) != row["hash"]:
            problems.append(f"#{row['seq']} content does not match its hash")
        if prev is not None and row["seq"] == prev["seq"] + 1 and row["prev_hash"] != prev["hash"]:
            problems.append(f"#{row['seq']} does not link to #{prev['seq']}")
        prev = row
    return problems


def trailer_problems(rows: list[dict], trailer: dict) -> list[str]:
    problems = []
    if trailer["events"] != len(rows):
        problems.append("count")
    if rows and (trailer["first_seq"], trailer["first_prev_hash"]) != (rows[0]["seq"], rows[0]["prev_hash"]):
        problems.append("first")
    if rows and (trailer["last_seq"], trailer["last_hash"]) != (rows[-1]["seq"], rows[-1]["hash"]):
        problems.append("last")
    return problems


def signature_ok(client, checkpoint: dict) -> bool:
    """The checkpoint's Ed25519 signature, checked with the key Charter publishes (as anyone would)."""
    published = client.get("/api/v1/audit/public-key/").json()
    assert checkpoint["key_id"] == published["key_id"]
    key = load_pem_public_key(published["public_key_pem"].encode())
    message = f"charter-audit-checkpoint:v2|{checkpoint['seq']}|{checkpoint['hash']}|{checkpoint['signed_at']}"
    try:
        key.verify(base64.b64decode(checkpoint["signature"]), message.encode())
    except Exception:
        return False
    return True


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def history(users, team, other_team, make_model, make_version):
    """Events of both teams, by several people: models, versions, cards, edits."""
    models = [make_model(f"model-{i}") for i in range(3)]
    foreign = make_model("foreign", owner_team=other_team, actor=users.outsider)
    for model in models:
        version = make_version(model)
        with audit_context(source="cli", actor=users.author):
            registry.card_save(actor=users.author, version=version, sections={"model_details": f"About {model.name}."})
            registry.model_update(actor=users.author, model=model, description=f"{model.name} | with a pipe, ünïcødé")
    make_version(foreign, actor=users.outsider)
    return {"models": models, "foreign": foreign}


# --- the export matches the list -------------------------------------------------------------------


def _list_all(client, **params) -> list[dict]:
    found, url = [], "/api/v1/audit-events/"
    page = client.get(url, {**params, "page_size": 200}).json()
    while True:
        found += page["results"]
        if not page["next"]:
            return found
        page = client.get(page["next"]).json()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"action": "model.*"},
        {"action": "card.save"},
        {"object_type": "registry.registeredmodel", "action_prefix": "model."},
        {"actor_label": "author", "source": "cli"},
    ],
    ids=["everything", "one-domain", "one-action", "object-type", "actor"],
)
def test_csv_and_jsonl_exports_with_filters_match_the_list_api(api, users, team, history, fmt, params):
    client = api.as_user(users.auditor)
    params = {**params, "team": team.pk}
    rows, trailer, response = export(client, fmt, **params)
    listed = _list_all(client, **params)  # after: the export's own event, filed under the team, is in both
    assert len(listed) >= 3
    # the same events, in chain order: the list's newest-first order, reversed
    assert [r["id"] for r in rows] == [e["id"] for e in reversed(listed)]
    by_id = {e["id"]: e for e in listed}
    for row in rows:
        event = by_id[row["id"]]
        for name in ("seq", "actor", "actor_label", "source", "request_id", "action", "object_type", "object_id",
                     "team_id", "prev_hash", "hash"):  # fmt: skip
            assert row["actor_id" if name == "actor" else name] == event[name], (name, row, event)
        assert json.loads(row["changes"]) == event["changes"]
    assert chain_problems(rows) == [] and trailer_problems(rows, trailer) == []
    assert trailer["filters"] == {**params, "team": team.pk}
    assert trailer["exported_by"] == "auditor"
    assert 'attachment; filename="charter-audit-' in response["Content-Disposition"]


def test_both_formats_carry_the_same_rows_and_the_database_writes_what_python_would(users, team, history):
    """The rows PostgreSQL writes (COPY) are, field for field, the rows the portable writer writes."""
    events = AuditEvent.objects.filter(team_id=team.pk)

    def run(fmt, in_database):
        body = b"".join(exports.stream(events=events, fmt=fmt, filters={}, exported_by="test", in_database=in_database))
        rows, trailer = parse(body, fmt)
        del trailer["exported_at"]
        return body, rows, trailer

    jsonl_db, rows, trailer = run("jsonl", True)
    jsonl_py, rows_py, trailer_py = run("jsonl", False)
    assert (rows, trailer) == (rows_py, trailer_py)
    # JSON lines byte for byte, up to the trailer's timestamp
    assert jsonl_db.splitlines()[:-1] == jsonl_py.splitlines()[:-1]
    for in_database in (True, False):
        _, csv_rows, csv_trailer = run("csv", in_database)
        assert (csv_rows, csv_trailer) == (rows, trailer)
    assert len(rows) == events.count() and rows[0]["created_at"].endswith("Z")


AWKWARD = 'a "quoted", back\\slash\\ | pipe, tab\t, new\nline, \x01 control, ünïcødé ✓, 🚀'


def test_any_text_in_the_log_comes_out_exact_and_well_formed(users, team):
    """What the hash covers comes out as stored, whatever it holds (quotes, backslashes, a separator
    of either format, control characters), and each line stays one valid CSV row or JSON object."""
    from django.db import transaction

    from governance.audit import services as audit
    from governance.audit.actions import AuditAction

    with audit_context(source="cli", actor=users.author), transaction.atomic():
        audit.record(action=AuditAction.PERMISSION_DENIED, object_type="request", object_id=AWKWARD,
                     team_id=team.pk, changes={"detail": AWKWARD, AWKWARD: [1.5, None, True]})  # fmt: skip
        audit.record(action=AuditAction.PERMISSION_DENIED, object_type="request", object_id="", team_id=team.pk)
    events = AuditEvent.objects.filter(team_id=team.pk)
    stored = list(events.order_by("seq").values_list("object_id", "changes"))
    for fmt in ("csv", "jsonl"):
        outputs = []
        for in_database in (True, False):
            body = b"".join(
                exports.stream(events=events, fmt=fmt, filters={}, exported_by="t", in_database=in_database)
            )
            rows, trailer = parse(body, fmt)
            assert [(r["object_id"], r["changes"]) for r in rows] == stored
            assert chain_problems(rows) == [] and trailer_problems(rows, trailer) == []
            outputs.append(body.splitlines()[:-1] if fmt == "jsonl" else rows)
        # the same rows; in JSON Lines the same bytes (CSV quotes an empty text only when COPY writes it)
        assert outputs[0] == outputs[1], fmt


# --- checkable against the chain ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_of_a_middle_slice_still_verifies_against_the_signed_checkpoint(api, users, history, make_model, fmt):
    call_command("audit_checkpoint", stdout=io.StringIO())
    make_model("after-the-checkpoint")
    client = api.as_user(users.superuser)
    last = AuditEvent.objects.order_by("-seq").first().seq
    middle = {"seq_from": 4, "seq_to": last // 2}
    rows, trailer, _ = export(client, fmt, **middle)

    # 1. the slice itself: every row is its hash, every row links to the one before, the trailer matches
    assert [r["seq"] for r in rows] == list(range(4, last // 2 + 1)) and trailer["contiguous"] is True
    assert chain_problems(rows) == [] and trailer_problems(rows, trailer) == []
    # 2. the checkpoint in the trailer is signed by the published key, and lies past the slice
    checkpoint = trailer["checkpoint"]
    assert signature_ok(client, checkpoint)
    assert checkpoint["seq"] > trailer["last_seq"]
    # 3. from the slice's last hash, the events up to the checkpoint chain to the signed hash
    bridge, bridge_trailer, _ = export(client, fmt, seq_from=trailer["last_seq"] + 1, seq_to=checkpoint["seq"])
    assert bridge_trailer["first_prev_hash"] == trailer["last_hash"]
    assert chain_problems(bridge, start_prev=trailer["last_hash"]) == []
    assert bridge[-1]["seq"] == checkpoint["seq"] and bridge[-1]["hash"] == checkpoint["hash"]

    # the same checks catch an edited row, a forged checkpoint and a file cut short
    edited = [dict(r) for r in rows]
    edited[2]["actor_label"] = "mallory"
    assert chain_problems(edited) == [f"#{edited[2]['seq']} content does not match its hash"]
    assert not signature_ok(client, {**checkpoint, "hash": bridge[-2]["hash"]})
    body = b"".join(client.get(URL, {"format": fmt, **middle}).streaming_content)
    cut_rows, cut_trailer = parse(body[: len(body) // 2].rsplit(b"\n", 1)[0] + b"\n", fmt)
    assert cut_trailer is None and 0 < len(cut_rows) < len(rows)


def test_a_filtered_export_says_it_is_not_one_stretch_of_the_chain(api, users, team, history):
    rows, trailer, _ = export(api.as_user(users.auditor), "jsonl", action="card.save", team=team.pk)
    assert len(rows) == 3 and trailer["contiguous"] is False
    assert chain_problems(rows) == [] and trailer_problems(rows, trailer) == []


# --- only what the requester may see ----------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AUDITOR])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_viewer_or_auditor_of_another_team_gets_nothing_of_this_team(
    api, users, team, other_team, history, role, fmt
):
    Membership.objects.filter(user=users.outsider).update(role=role)
    client = api.as_user(users.outsider)
    for params in ({}, {"team": team.pk}, {"object_type": "registry.registeredmodel"}):
        rows, trailer, _ = export(client, fmt, **params)
        assert not [r for r in rows if r["team_id"] == team.pk], params
        assert all(r["team_id"] == other_team.pk or r["actor_id"] == users.outsider.pk for r in rows)
        assert trailer["events"] == len(rows)
    everything, _, _ = export(client, fmt)
    assert {r["object_id"] for r in everything if r["object_type"] == "registry.registeredmodel"} == {
        str(history["foreign"].pk)
    }


def test_a_token_restricted_to_another_team_exports_nothing_of_this_team(api, users, team, other_team, history):
    from governance.accounts.services import token_create

    with audit_context(source="cli", actor=users.superuser):
        _, secret = token_create(actor=users.superuser, name="other", scopes=["read"], team=other_team)
    rows, _, _ = export(api.with_token(secret), "jsonl")
    assert rows and {r["team_id"] for r in rows} <= {other_team.pk, None}


# --- the export is audited -----------------------------------------------------------------------------


def test_the_export_is_audited_with_its_format_and_filters(api, users, team, history):
    client = api.as_user(users.auditor)
    response = client.get(URL, {"format": "jsonl", "team": team.pk, "action": "model.*", "since": "2020-01-01T00:00Z"})
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="audit.export")  # recorded before a byte is sent
    changes = json.loads(event.changes)
    assert changes == {
        "format": "jsonl",
        "filters": {"team": team.pk, "action": "model.*", "since": "2020-01-01T00:00:00.000000Z"},
    }
    assert (event.actor, event.team_id, event.source) == (users.auditor, team.pk, "api")
    assert event.request_id == response["X-Request-ID"]
    b"".join(response.streaming_content)
    # the team's own auditors see it in the log; an export of everything goes under no team (the exporter's)
    assert [e["id"] for e in _list_all(api.as_user(users.admin), action="audit.export")] == [event.pk]
    export(client, "csv")
    unfiltered = AuditEvent.objects.filter(action="audit.export").order_by("-seq").first()
    assert unfiltered.team_id is None and json.loads(unfiltered.changes) == {"format": "csv", "filters": {}}
    assert _list_all(api.as_user(users.admin), action="audit.export") == _list_all(
        api.as_user(users.admin), action="audit.export", team=team.pk
    )


def test_an_export_filtered_to_a_team_the_exporter_cannot_see_is_not_filed_under_that_team(
    api, users, team, other_team, history
):
    rows, _, _ = export(api.as_user(users.outsider), "csv", team=team.pk)
    assert rows == []
    assert AuditEvent.objects.get(action="audit.export").team_id is None


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ({"format": "xml"}, "format", "invalid_format"),
        ({"format": "csv", "team": "abc"}, "team", None),
        ({"format": "jsonl", "since": "yesterday"}, "since", None),
        ({"format": "csv", "seq_from": "0"}, "seq_from", None),
        ({"format": "csv", "action": "nothing.such"}, "action", None),
    ],
)
def test_a_bad_format_or_filter_is_a_400_in_json_and_nothing_is_recorded(api, users, history, query, field, code):
    client = api.as_user(users.auditor)  # signing in is an event too
    before = AuditEvent.objects.count()
    body = assert_error(client.get(URL, query), 400, code)
    assert field in body["fields"]
    assert AuditEvent.objects.count() == before


def test_an_empty_format_means_csv_and_anonymous_requests_are_refused(api, users, history):
    rows, trailer, _ = export(api.as_user(users.auditor), "", team="")
    assert rows and trailer["filters"] == {}
    assert api.as_user(None).get(URL).status_code in (401, 403)


# --- the page's button ---------------------------------------------------------------------------------


def test_the_audit_log_page_links_to_the_export_with_its_filters(login, users, team, history):
    page = login(users.auditor).get(reverse("audit-log"), {"action": "card.save", "team": team.pk, "since": "bad"})
    html = page.content.decode()
    for fmt in ("csv", "jsonl"):
        assert f"/api/v1/audit-events/export/?action=card.save&amp;team={team.pk}&amp;format={fmt}" in html
    # the link answers what the page shows (the filter the page ignored as invalid is left out)
    client = login(users.auditor)
    response = client.get(f"{URL}?action=card.save&team={team.pk}&format=jsonl")
    rows, _ = parse(b"".join(response.streaming_content), "jsonl")
    assert len(rows) == 3 and {r["action"] for r in rows} == {"card.save"}


# --- the trailer and the rows agree ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_trailer_counts_the_rows_sent_while_the_log_grows(api, users, team, history, make_model):
    """Events appended after the rows went out, before the trailer is written, are in neither (a
    trailer counted by a second query, under READ COMMITTED, counted them)."""
    import threading

    from django.db import connection

    response = api.as_user(users.auditor).get(URL, {"format": "csv", "team": team.pk})
    chunks = iter(response.streaming_content)
    sent = [next(chunks), next(chunks)]  # the header, then every row (a small export is one block)

    def append():
        try:
            for i in range(3):
                make_model(f"meanwhile-{i}")
        finally:
            connection.close()

    writer = threading.Thread(target=append)
    writer.start()
    writer.join()
    rows, trailer = parse(b"".join([*sent, *chunks]), "csv")
    assert AuditEvent.objects.filter(team_id=team.pk).count() == len(rows) + 3
    assert trailer_problems(rows, trailer) == [] and chain_problems(rows) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_download_cut_short_leaves_the_process_able_to_answer(api, users, team, history, monkeypatch, fmt):
    """The client goes away mid-COPY (the server closes the response): the COPY is cancelled and its
    transaction rolled back, and the next requests answer as usual."""
    monkeypatch.setattr(exports, "BLOCK_BYTES", 1)  # one row per block, so the COPY is mid-way
    client = api.as_user(users.auditor)
    response = client.get(URL, {"format": fmt, "team": team.pk})
    chunks = iter(response.streaming_content)
    next(chunks), next(chunks)
    response.close()  # what the WSGI server does when the client disconnects
    for _ in range(3):
        rows, trailer, _ = export(client, fmt, team=team.pk)
        assert trailer["events"] == len(rows) > 5 and chain_problems(rows) == []
