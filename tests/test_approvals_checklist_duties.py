"""Issue 10, finding 10: whoever produced a version does not tick its pre-deployment checklist.

The attempt reproduced: the version's author, through a CI token, ticked every checklist item with
``POST /api/v1/versions/<id>/checklist/``. Ticks are separation of duties like decisions: the
version's author and the open review's requester are refused (403 ``separation_of_duties``,
audited as ``checklist.tick.refused``), and an API token ticks only an item whose policy names
that automation (the tick then records the token). The gate panel says who may tick each item.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from governance.accounts import services as accounts
from governance.accounts.models import Membership, Role
from governance.approvals import rules as R
from governance.approvals import services
from governance.approvals.models import ChecklistTick
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from tests.conftest import assert_error
from tests.test_approvals import request

pytestmark = pytest.mark.usefixtures("fast_passwords")

ITEMS = [key for key, _ in R.DEFAULT_CHECKLIST]


def _token(user, name="ci", scopes=("read", "write", "transition")) -> str:
    with audit_context(source="cli", actor=user):
        _, secret = accounts.token_create(actor=user, name=name, scopes=list(scopes))
    return secret


def _refused(version) -> list[dict]:
    events = AuditEvent.objects.filter(action="checklist.tick.refused", object_id=str(version.pk)).order_by("seq")
    return [json.loads(e.changes) for e in events]


@pytest.fixture
def high_risk_version(make_model, make_version):
    """A version under the high-risk default policy: the six checklist items of seed 000."""
    return make_version(make_model("credit-limit", risk_tier="high"))


def test_the_author_cannot_tick_the_checklist_even_through_a_ci_token(api, users, high_risk_version):
    version = high_risk_version
    url = f"/api/v1/versions/{version.pk}/checklist/"
    ci = _token(users.author)
    for item in ITEMS:
        assert_error(api.with_token(ci).post(url, {"item": item, "note": "all good"}, format="json"), 403,
                     "separation_of_duties")  # fmt: skip
    assert_error(api.as_user(users.author).post(url, {"item": ITEMS[0]}, format="json"), 403, "separation_of_duties")
    assert not ChecklistTick.objects.exists()
    refused = _refused(version)
    assert len(refused) == len(ITEMS) + 1 and {e["code"] for e in refused} == {"separation_of_duties"}
    assert {e["item"] for e in refused} == set(ITEMS)
    events = AuditEvent.objects.filter(action="checklist.tick.refused", object_id=str(version.pk))
    assert {e.actor for e in events} == {users.author}
    # the reviewer, in person, may
    r = api.as_user(users.reviewer).post(url, {"item": ITEMS[0], "note": "checked"}, format="json")
    assert r.status_code == 200 and r.json() == {"item": ITEMS[0], "ticked": True}


def test_the_requester_of_the_open_review_cannot_tick_nor_untick(api, users, high_risk_version):
    version = high_risk_version
    url = f"/api/v1/versions/{version.pk}/checklist/"
    assert api.as_user(users.admin).post(url, {"item": ITEMS[1]}, format="json").status_code == 200  # before a review
    request(version, users.admin, ["production"])  # the admin (not the author) asks for the review
    assert_error(api.as_user(users.admin).post(url, {"item": ITEMS[0]}, format="json"), 403, "separation_of_duties")
    assert_error(api.as_user(users.admin).post(url, {"item": ITEMS[1], "ticked": False}, format="json"), 403,
                 "separation_of_duties")  # fmt: skip
    assert set(ChecklistTick.objects.values_list("item", flat=True)) == {ITEMS[1]}
    assert [e["code"] for e in _refused(version)] == ["separation_of_duties", "separation_of_duties"]
    assert api.as_user(users.approver).post(url, {"item": ITEMS[0]}, format="json").status_code == 200


def _checklist_line(api, user, version, item: str) -> dict:
    r = api.as_user(user).get(f"/api/v1/versions/{version.pk}/gate/?environment=production")
    assert r.status_code == 200, r.content[:300]
    text = dict(R.DEFAULT_CHECKLIST)[item]
    [line] = [g for g in r.json()["gates"] if g["kind"] == "checklist" and g["label"] == text]
    return line


def test_ticks_made_before_requesting_the_review_do_not_count_for_the_requester(api, users, team, high_risk_version):
    """The loophole: tick first (allowed: no review is open yet), then request the review. The
    ticks stay, but the gate does not count them: the requester does not attest their own review."""
    version = high_risk_version
    Membership.objects.create(user=users.reviewer, team=team, role=Role.AUTHOR)  # a colleague who may also request
    colleague = api.as_user(users.reviewer)
    url = f"/api/v1/versions/{version.pk}/checklist/"
    for item in ITEMS[:2]:
        r = colleague.post(url, {"item": item, "note": "checked"}, format="json")
        assert r.status_code == 200, r.content[:300]
    assert api.as_user(users.approver).post(url, {"item": ITEMS[2]}, format="json").status_code == 200
    assert _checklist_line(api, users.viewer, version, ITEMS[0])["status"] == "passed"  # no review yet

    r = colleague.post("/api/v1/approval-requests/", {"version": version.pk, "environments": ["production"]},
                       format="json")  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    for item in ITEMS[:2]:
        line = _checklist_line(api, users.viewer, version, item)
        assert line["status"] == "missing", line
        assert line["detail"] == "Ticked by reviewer, who requested this review: needs someone else.", line
    assert _checklist_line(api, users.viewer, version, ITEMS[2])["status"] == "passed"  # the approver's counts
    assert ChecklistTick.objects.filter(ticked_by=users.reviewer).count() == 2  # nothing was deleted

    # the panel offers the tick to someone else, and their tick counts
    page = api.as_user(users.approver).get(reverse("version-detail", args=[version.pk])).content.decode()
    assert "who requested this review: needs someone else" in page
    assert api.as_user(users.approver).post(url, {"item": ITEMS[0]}, format="json").status_code == 200
    line = _checklist_line(api, users.viewer, version, ITEMS[0])
    assert line["status"] == "passed" and line["detail"].startswith("Ticked by approver"), line
    assert _checklist_line(api, users.viewer, version, ITEMS[1])["status"] == "missing"


def test_a_tick_by_the_versions_author_never_counts(api, users, high_risk_version):
    """A tick the author made before ticking was refused to authors (stored then, kept now)."""
    version = high_risk_version
    ChecklistTick.objects.create(version=version, item=ITEMS[0], ticked_by=users.author)  # the state to start from
    line = _checklist_line(api, users.viewer, version, ITEMS[0])
    assert line["status"] == "missing"
    assert line["detail"] == "Ticked by author, who registered this version: needs someone else."


def test_a_token_ticks_only_an_item_whose_policy_names_that_automation(api, users, model, version, superuser):
    rules = {
        "environments": {"production": {"min_approvals": 1, "roles": [{"role": "approver"}]}},
        "gates": [
            {"kind": "checklist", "item": "rollback-plan", "text": "Rollback ready."},
            {
                "kind": "checklist",
                "item": "infra",
                "text": "Infra checked by the pipeline.",
                "automation": ["ci-infra"],
            },
            {"kind": "checklist", "item": "monitoring", "text": "Dashboards exist.", "automation": True},
        ],
    }
    with audit_context(source="cli", actor=superuser):
        policy = services.policy_create(actor=superuser, name="Automated", rules=rules)
        services.policy_assign(actor=superuser, policy=policy, model=model)
    url = f"/api/v1/versions/{version.pk}/checklist/"
    bot, other = _token(users.reviewer, "ci-infra"), _token(users.reviewer, "nightly")
    assert_error(api.with_token(bot).post(url, {"item": "rollback-plan"}, format="json"), 403,
                 "checklist_requires_person")  # fmt: skip
    assert_error(api.with_token(other).post(url, {"item": "infra"}, format="json"), 403, "checklist_requires_person")
    r = api.with_token(bot).post(url, {"item": "infra", "note": "terraform plan clean"}, format="json")
    assert r.status_code == 200, r.content[:300]
    tick = ChecklistTick.objects.get(item="infra")
    assert (tick.ticked_by, tick.token_name, tick.token.name) == (users.reviewer, "ci-infra", "ci-infra")
    event = AuditEvent.objects.get(action="checklist.tick", object_id=str(version.pk))
    assert json.loads(event.changes)["after"]["token"] == "ci-infra"
    assert api.with_token(other).post(url, {"item": "monitoring"}, format="json").status_code == 200
    # automation never lifts separation of duties: the author's token is refused on the automated items too
    assert_error(api.with_token(_token(users.author, "ci-infra")).post(url, {"item": "infra"}, format="json"), 403,
                 "separation_of_duties")  # fmt: skip
    assert [e["code"] for e in _refused(version)] == [
        "checklist_requires_person", "checklist_requires_person", "separation_of_duties"
    ]  # fmt: skip
    # the gate panel says who may tick each item, and which token ticked
    page = api.as_user(users.viewer).get(reverse("version-detail", args=[version.pk])).content.decode()
    assert "Who may tick:" in page and "or an API token named ci-infra (recorded with the tick)" in page
    assert "no API token" in page and "any API token with the transition scope" in page
    assert "through the API token “ci-infra”" in page


def test_the_tick_form_refuses_the_author_and_says_why(login, users, high_risk_version):
    version = high_risk_version
    client = login(users.author)
    page = client.get(reverse("version-detail", args=[version.pk])).content.decode()
    assert reverse("checklist-tick", args=[version.pk]) not in page
    assert "Separation of duties: you registered this version, so you cannot tick its checklist" in page
    response = client.post(reverse("checklist-tick", args=[version.pk]), {"item": ITEMS[0], "ticked": "1"})
    assert response.status_code == 403 and "Separation of duties" in response.content.decode()
    assert not ChecklistTick.objects.exists()
    event = AuditEvent.objects.get(action="checklist.tick.refused", object_id=str(version.pk))
    assert event.source == "ui" and event.actor == users.author


def test_the_api_schema_documents_who_may_tick():
    import io

    import yaml
    from django.core.management import call_command

    out = io.StringIO()
    call_command("spectacular", stdout=out)
    operation = yaml.safe_load(out.getvalue())["paths"]["/api/v1/versions/{id}/checklist/"]["post"]
    assert "separation_of_duties" in operation["description"]
    assert "checklist_requires_person" in operation["description"] and '"automation": true' in operation["description"]
    assert "403" in operation["responses"]
