"""One list of audit actions: everything the code records is in it, and the log filters by it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from governance.approvals.models import RequestStatus
from governance.audit import actions
from governance.audit.actions import Action
from governance.audit.models import AuditEvent
from governance.core.errors import GOVERNED_WRITES
from tests.conftest import move

ROOT = Path(__file__).resolve().parent.parent

# Actions built at run time, and every value they take: keep in step with the code.
DYNAMIC_ACTIONS = {
    'f"review.{status}"': {f"review.{s}" for s in RequestStatus.values if s != RequestStatus.OPEN},
    # governance/core/errors.py: a refused governed write
    'f"{action}.refused"': {f"{w.action}.refused" for w in GOVERNED_WRITES.values()},
}


def _recorded_actions() -> tuple[set[str], set[str]]:
    """Every ``action=`` of a ``record(...)`` call in governance/, workers/ and bench/: string
    literals (each branch of a conditional), and the source of any f-string."""
    literals, dynamic = set(), set()
    for path in [*ROOT.joinpath("governance").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py"),
                 *ROOT.joinpath("bench").rglob("*.py")]:  # fmt: skip
        if "migrations" in path.parts:
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name != "record":
                continue
            for keyword in node.keywords:
                if keyword.arg != "action":
                    continue
                for part in ast.walk(keyword.value):
                    if isinstance(part, ast.JoinedStr):
                        dynamic.add(ast.get_source_segment(source, part))
                    elif isinstance(part, ast.Constant) and isinstance(part.value, str):
                        literals.add(part.value)
                    elif isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name):
                        if part.value.id == "Action":
                            literals.add(Action[part.attr].value)
    # the pieces of an f-string are constants too: they are not actions of their own
    literals -= {piece for expr in dynamic for piece in _fstring_pieces(expr)}
    return literals, dynamic


def _fstring_pieces(expr: str) -> set[str]:
    tree = ast.parse(expr, mode="eval").body
    return {v.value for v in tree.values if isinstance(v, ast.Constant)}


def test_every_recorded_action_is_in_the_registry():
    literals, dynamic = _recorded_actions()
    assert len(literals) > 30, "the scan found too few record() calls: is it still reading the code?"
    registered = {a.value for a in Action}
    assert literals - registered == set(), "add these actions to governance/audit/actions.py"
    assert dynamic <= set(DYNAMIC_ACTIONS), f"list the values of {dynamic - set(DYNAMIC_ACTIONS)} in DYNAMIC_ACTIONS"
    built = set().union(*(DYNAMIC_ACTIONS[d] for d in dynamic))
    assert built - registered == set(), "add these actions to governance/audit/actions.py"
    # Not the other way round: an action the code no longer records stays listed, because old
    # events still carry it and the log must still filter and describe them.


def test_every_action_has_a_verb_and_a_known_domain():
    for action in Action:
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
