"""One enum of audit actions: ``audit.record`` takes nothing else, and the log filters and words by it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from governance.approvals.models import RequestStatus
from governance.audit import actions, services
from governance.audit.actions import AuditAction
from governance.audit.models import AuditEvent
from governance.audit.refusals import GOVERNED_WRITES
from governance.core.context import audit_context
from tests.conftest import move

ROOT = Path(__file__).resolve().parent.parent


def test_record_refuses_a_plain_string(users):
    before = AuditEvent.objects.count()
    with audit_context(source="cli", actor=users.admin), transaction.atomic():
        for plain in ("model.create", "legacy.thing", str(AuditAction.MODEL_CREATE)):
            with pytest.raises(TypeError, match="AuditAction"):
                services.record(action=plain, object_type="test")
        services.record(action=AuditAction("model.create"), object_type="test")  # a lookup is a member
    assert AuditEvent.objects.count() == before + 1
    assert AuditEvent.objects.filter(object_type="test").get().action == "model.create"


def _action_arguments() -> list[tuple[str, ast.expr]]:
    """The ``action=`` of every ``record(...)`` and ``record_refusal(...)`` call in governance/,
    workers/ and bench/, with where it is."""
    found = []
    for path in [*ROOT.joinpath("governance").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py"),
                 *ROOT.joinpath("bench").rglob("*.py")]:  # fmt: skip
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("record", "record_refusal"):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found.extend((where, k.value) for k in node.keywords if k.arg == "action")
    return found


def test_no_record_call_passes_a_string():
    """The type check refuses a string when the call runs; this catches the calls no test runs."""
    found = _action_arguments()
    assert len(found) > 30, "the scan found too few record() calls: is it still reading the code?"
    strings = [where for where, value in found if _strings_outside_a_lookup(value)]
    assert strings == [], "pass an AuditAction member (or a lookup, AuditAction(code)), not a string"


def _strings_outside_a_lookup(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "AuditAction":
        return False
    if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return True
    return any(_strings_outside_a_lookup(child) for child in ast.iter_child_nodes(node))


def test_actions_built_from_a_status_or_a_write_are_members():
    from governance.approvals.services.reviews import _CLOSED_AS

    assert set(_CLOSED_AS) == set(RequestStatus) - {RequestStatus.OPEN}
    assert all(_CLOSED_AS[s].value == f"review.{s}" for s in _CLOSED_AS)
    for write in GOVERNED_WRITES.values():
        assert write.refused is AuditAction(f"{write.action}.refused")
    with pytest.raises(ValueError):
        _ = AuditAction.MODEL_CREATE.refused  # no such member: refusing it cannot be recorded


def test_every_action_has_a_verb_and_a_known_domain():
    for action in AuditAction:
        assert action.verb and action.verb != action.value
        assert actions.domain(action.value) in actions.DOMAINS, action
    assert actions.verb("version.create") == "registered" and actions.verb("legacy.thing") == "legacy.thing"
    assert actions.under("review.*") == actions.under("review")
    assert set(actions.under("review.*")) >= {"review.request", "review.decide", "review.approved"}


# --- the filter: an exact code, or a domain's ``<domain>.*`` ---------------------------------


@pytest.fixture
def reviewed(users, version):
    move(version, "in_review", actor=users.author)
    return version


def _actions_of(response) -> list[str]:
    assert response.status_code == 200, response.content[:300]
    return [e["action"] for e in response.json()["results"]]


def test_api_action_filter_takes_a_code_or_a_prefix(api, users, reviewed):
    client = api.as_user(users.auditor)
    url = "/api/v1/audit-events/"
    assert set(_actions_of(client.get(url, {"action": "version.*"}))) == {"version.create", "version.transition"}
    assert _actions_of(client.get(url, {"action": "version.transition"})) == ["version.transition"]
    assert _actions_of(client.get(url, {"action": "review.*"})) == []
    assert set(_actions_of(client.get(url, {"action_prefix": "model."}))) == {"model.create"}
    bad = client.get(url, {"action": "review"})  # neither a code nor a prefix: say so, do not return nothing
    assert bad.status_code == 400 and bad.json()["detail"].startswith("action:")


def test_ui_action_filter_is_a_grouped_choice_list(login, users, reviewed):
    client = login(users.auditor)
    url = reverse("audit-log")
    page = client.get(url).content.decode()
    assert '<optgroup label="Reviews">' in page and '<option value="review.*">' in page
    assert '<option value="evaluation.request">' in page
    events = client.get(url, {"action": "version.*"}).context["events"]
    assert {e.action for e in events} == {"version.create", "version.transition"}
    chosen = client.get(url, {"action": "version.*"}).content.decode()
    assert '<option value="version.*" selected>' in chosen
    ignored = client.get(url, {"action": "review"})
    assert ignored.status_code == 200 and b"Some filters were ignored" in ignored.content


def test_prefix_filter_is_an_index_equality_list(users):
    from governance.audit import selectors
    from governance.audit.filters import AuditEventFilter

    sql = str(AuditEventFilter({"action": "review.*"}, queryset=selectors.event_list(user=users.auditor)).qs.query)
    assert '"action" IN (' in sql and "LIKE" not in sql


# --- the gaps of a page ---------------------------------------------------------------------


def test_auditor_sees_why_sequence_numbers_skip(login, users, make_model, make_version, other_team):
    mine = make_model("mine")
    make_version(mine)
    theirs = make_model("theirs", owner_team=other_team, actor=users.superuser)
    make_version(theirs, actor=users.superuser)
    make_version(mine)
    client = login(users.auditor)
    response = client.get(reverse("audit-log"))
    rows = response.context["events"]
    hidden = response.context["hidden"]
    shown = {e.seq for e in rows}
    first, last = min(shown), max(shown)
    expected = AuditEvent.objects.filter(seq__gte=first, seq__lte=last).exclude(seq__in=shown).count()
    assert expected >= 2 and hidden == {"count": expected, "oldest": first, "newest": last, "why": "other_teams"}
    assert f"{expected} events of other teams" in response.content.decode()
    filtered = client.get(reverse("audit-log"), {"action": "version.*"})
    assert filtered.context["hidden"]["why"] == "filtered" and b"do not match the filters" in filtered.content
    # the note is arithmetic on the page: more hidden events cost no query
    with CaptureQueriesContext(connection) as before:
        client.get(reverse("audit-log"))
    for _ in range(3):
        make_version(theirs, actor=users.superuser)
    make_version(mine)
    with CaptureQueriesContext(connection) as after:
        assert client.get(reverse("audit-log")).context["hidden"]["count"] == expected + 3
    assert len(after.captured_queries) == len(before.captured_queries)
    # someone who reads every event sees no gap: the chain has none
    assert login(users.superuser).get(reverse("audit-log")).context["hidden"] is None
