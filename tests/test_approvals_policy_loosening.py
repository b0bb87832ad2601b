"""Issue 10, finding 8: loosening a policy takes two people.

The attempt reproduced: a team admin who also registered the version loosened the model's policy,
withdrew the open review and requested it again under the new revision, and one approval then
approved it. Now a looser revision is only *proposed*: the policy keeps its revision until a
second admin of the team (or a site administrator) approves it, the proposer cannot approve it,
and the proposer neither requests nor decides a review judged under it. Tightening still takes
effect at once. ``rules.loosens`` is the one judgement of "looser", unit-tested at the bottom.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from governance.accounts import services as accounts
from governance.accounts.models import Membership, Role
from governance.approvals import rules as R
from governance.approvals import services
from governance.approvals.models import ApprovalRequest, Decision, Policy, PolicyRevision, RequestStatus
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.registry.models import Stage
from tests.conftest import assert_error

pytestmark = pytest.mark.usefixtures("fast_passwords")
User = get_user_model()

TWO_PEOPLE = {
    "environments": {"production": {"min_approvals": 2, "roles": [{"role": "approver"}, {"role": "reviewer"}]}},
    "gates": [],
}
ONE_APPROVER = {"environments": {"production": {"min_approvals": 1, "roles": [{"role": "approver"}]}}, "gates": []}


def _refusals(action: str, object_id) -> list[dict]:
    events = AuditEvent.objects.filter(action=action, object_id=str(object_id)).order_by("seq")
    return [json.loads(e.changes) for e in events]


@pytest.fixture
def second_admin(team):
    user = User.objects.create_user("admin2", "admin2@example.com", "pw-admin2-long")
    Membership.objects.create(user=user, team=team, role=Role.ADMIN)
    return user


@pytest.fixture
def team_policy(superuser, team, model):
    with audit_context(source="cli", actor=superuser):
        policy = services.policy_create(actor=superuser, team=team, name="Credit rules", rules=TWO_PEOPLE)
        services.policy_assign(actor=superuser, policy=policy, model=model)
    return policy


def test_an_admin_author_cannot_loosen_the_policy_alone_and_approve_with_one_approval(
    api, users, team, model, make_version, team_policy, second_admin
):
    admin = users.admin  # a team admin who also registers the version
    version = make_version(model, actor=admin)
    client = api.as_user(admin)
    r = client.post("/api/v1/approval-requests/", {"version": version.pk, "environments": ["production"]},
                    format="json")  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    first = r.json()["id"]

    # the loosening is stored as proposed; the policy keeps revision 1
    r = client.patch(f"/api/v1/policies/{team_policy.pk}/", {"rules": ONE_APPROVER, "comment": "faster"}, format="json")
    assert r.status_code == 202, r.content[:300]
    body = r.json()
    assert body["revision"] == 1 and body["rules"]["environments"]["production"]["min_approvals"] == 2
    proposal = body["pending_proposal"]
    assert proposal["number"] == 2 and proposal["based_on"] == 1 and proposal["proposed_by"] == "admin"
    assert "production: approvals needed lowered from 2 to 1." in proposal["loosens"]
    assert any("no reviewer of the owning team is required" in reason for reason in proposal["loosens"])
    assert AuditEvent.objects.filter(action="policy.revision.propose", actor=admin).count() == 1

    # withdraw and request again: still judged under revision 1, so one approval is not enough
    assert client.post(f"/api/v1/approval-requests/{first}/withdraw/", {}, format="json").status_code == 200
    r = client.post("/api/v1/approval-requests/", {"version": version.pk, "environments": ["production"]},
                    format="json")  # fmt: skip
    assert r.status_code == 201 and r.json()["policy"]["revision"] == 1
    again = ApprovalRequest.objects.get(pk=r.json()["id"])
    r = api.as_user(users.approver).post(f"/api/v1/approval-requests/{again.pk}/decide/", {"decision": "approve"},
                                         format="json")  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "open"
    version.refresh_from_db()
    assert version.stage == Stage.IN_REVIEW

    # the proposer cannot approve their own loosening, in any way
    url = f"/api/v1/policies/{team_policy.pk}/revisions/2/approve/"
    assert_error(client.post(url, {}, format="json"), 403, "separation_of_duties")
    team_policy.refresh_from_db()
    assert team_policy.revision == 1
    refused = _refusals("policy.revision.refused", PolicyRevision.objects.get(policy=team_policy, number=2).pk)
    assert [e["code"] for e in refused] == ["separation_of_duties"]


def test_a_second_admin_adopts_the_loosening_and_its_proposer_neither_requests_nor_decides_under_it(
    api, users, team, model, make_version, team_policy, second_admin
):
    Membership.objects.create(user=users.admin, team=team, role=Role.APPROVER)  # the proposer could approve reviews
    proposer = api.as_user(users.admin)
    assert proposer.patch(f"/api/v1/policies/{team_policy.pk}/", {"rules": ONE_APPROVER}, format="json").status_code \
        == 202  # fmt: skip
    # nothing else changes the rules while a proposal waits
    assert_error(proposer.patch(f"/api/v1/policies/{team_policy.pk}/", {"rules": {**TWO_PEOPLE, "gates": [
        {"kind": "card_completeness", "min": 10}]}}, format="json"), 409, "proposal_pending")  # fmt: skip

    # an API token never adopts a loosening, whoever owns it
    with audit_context(source="cli", actor=second_admin):
        _, secret = accounts.token_create(actor=second_admin, name="ops", scopes=["read", "write", "admin"])
    url = f"/api/v1/policies/{team_policy.pk}/revisions/2/approve/"
    assert_error(api.with_token(secret).post(url, {}, format="json"), 403, "decision_requires_person")
    # nor does someone who is no admin of the team; another team's member does not even see it
    assert_error(api.as_user(users.approver).post(url, {}, format="json"), 403)
    assert_error(api.as_user(users.outsider).post(url, {}, format="json"), 404)
    assert_error(api.as_user(second_admin).post(f"/api/v1/policies/{team_policy.pk}/revisions/9/approve/", {},
                                                format="json"), 404, "revision_not_found")  # fmt: skip

    r = api.as_user(second_admin).post(url, {"comment": "Agreed for low-volume use."}, format="json")
    assert r.status_code == 200, r.content[:300]
    assert r.json()["state"] == "adopted" and r.json()["decided_by"] == "admin2"
    team_policy.refresh_from_db()
    assert team_policy.revision == 2
    event = AuditEvent.objects.get(action="policy.revision.approve")
    assert event.actor == second_admin and json.loads(event.changes)["proposed_by"] == users.admin.pk
    assert_error(api.as_user(second_admin).post(url, {}, format="json"), 409, "proposal_closed")

    # the proposer may not request a review judged under the revision they loosened
    version = make_version(model)
    body = assert_error(proposer.post("/api/v1/approval-requests/", {"version": version.pk,
                        "environments": ["production"]}, format="json"), 403, "separation_of_duties")  # fmt: skip
    assert "proposed revision 2" in body["detail"]
    assert not ApprovalRequest.objects.filter(version=version).exists()
    assert [e["code"] for e in _refusals("review.request.refused", version.pk)] == ["separation_of_duties"]

    # someone else requests it; the proposer may not decide on it, and is not asked to
    r = api.as_user(users.author).post("/api/v1/approval-requests/", {"version": version.pk,
                                       "environments": ["production"]}, format="json")  # fmt: skip
    assert r.status_code == 201 and r.json()["policy"]["revision"] == 2
    req = r.json()["id"]
    awaiting = proposer.get("/api/v1/approval-requests/", {"awaiting_me": "true"}).json()["results"]
    assert req not in [row["id"] for row in awaiting]
    assert_error(proposer.post(f"/api/v1/approval-requests/{req}/decide/", {"decision": "approve"}, format="json"),
                 403, "separation_of_duties")  # fmt: skip
    assert not Decision.objects.filter(request_id=req).exists()
    assert "separation_of_duties" in [e["code"] for e in _refusals("review.decide.refused", req)]
    # the approver who had nothing to do with the loosening approves under it
    r = api.as_user(users.approver).post(f"/api/v1/approval-requests/{req}/decide/", {"decision": "approve"},
                                         format="json")  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == RequestStatus.APPROVED


def test_tightening_takes_effect_at_once_and_a_proposal_can_be_rejected(api, users, team_policy, second_admin):
    client = api.as_user(users.admin)
    stricter = {**TWO_PEOPLE, "gates": [{"kind": "card_completeness", "min": 80}]}
    r = client.patch(f"/api/v1/policies/{team_policy.pk}/", {"rules": stricter}, format="json")
    assert r.status_code == 200 and r.json()["revision"] == 2 and r.json()["pending_proposal"] is None
    r = client.patch(f"/api/v1/policies/{team_policy.pk}/", {"rules": TWO_PEOPLE}, format="json")  # drops the gate
    assert r.status_code == 202 and r.json()["pending_proposal"]["loosens"] == [
        "production: the card completeness gate was removed."
    ]
    # the proposer withdraws it by rejecting it
    r = client.post(f"/api/v1/policies/{team_policy.pk}/revisions/3/reject/", {"comment": "on second thought"},
                    format="json")  # fmt: skip
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    team_policy.refresh_from_db()
    assert team_policy.revision == 2
    states = {row["number"]: row["state"] for row in client.get(f"/api/v1/policies/{team_policy.pk}/revisions/").json()
              ["results"]}  # fmt: skip
    assert states == {1: "adopted", 2: "adopted", 3: "rejected"}
    assert AuditEvent.objects.filter(action="policy.revision.reject", actor=users.admin).count() == 1


def test_the_policy_page_shows_the_proposal_and_the_second_admin_approves_it_there(
    login, users, team_policy, second_admin
):
    with audit_context(source="cli", actor=users.admin):
        services.policy_update(actor=users.admin, policy=team_policy, rules=ONE_APPROVER, comment="faster")
    page_url = reverse("policy-detail", args=[team_policy.pk])
    approve_url = reverse("policy-revision-approve", args=[team_policy.pk, 2])
    proposer = login(users.admin)
    page = proposer.get(page_url).content.decode()
    assert "Proposed: revision 2" in page and "approvals needed lowered from 2 to 1" in page
    assert approve_url not in page and "you proposed this loosening" in page
    response = proposer.post(approve_url)
    assert response.status_code == 403 and "you proposed this loosening" in response.content.decode()
    team_policy.refresh_from_db()
    assert team_policy.revision == 1

    second = login(second_admin)
    page = second.get(page_url).content.decode()
    assert approve_url in page and reverse("policy-revision-reject", args=[team_policy.pk, 2]) in page
    response = second.post(approve_url, {"comment": "ok"})
    assert response.status_code == 302 and response["Location"] == page_url
    team_policy.refresh_from_db()
    assert team_policy.revision == 2
    assert AuditEvent.objects.get(action="policy.revision.approve").source == "ui"


def test_the_edit_form_says_a_loosening_waits_for_a_second_admin(login, users, team_policy):
    client = login(users.admin)
    response = client.post(
        reverse("policy-edit", args=[team_policy.pk]),
        {"name": team_policy.name, "description": "", "rules": json.dumps(ONE_APPROVER), "comment": "faster"},
        follow=True,
    )
    assert response.status_code == 200 and "revision 2 is proposed and takes effect once a second admin" in (
        response.content.decode()
    )
    team_policy.refresh_from_db()
    assert team_policy.revision == 1


def test_a_site_wide_loosening_needs_a_second_site_administrator(api, superuser):
    with audit_context(source="cli", actor=superuser):
        policy = services.policy_create(actor=superuser, name="Site rules", rules=TWO_PEOPLE)
    other = User.objects.create_superuser("root2", "root2@example.com", "pw-root2-long")
    r = api.as_user(superuser).patch(f"/api/v1/policies/{policy.pk}/", {"rules": ONE_APPROVER}, format="json")
    assert r.status_code == 202
    url = f"/api/v1/policies/{policy.pk}/revisions/2/approve/"
    assert_error(api.as_user(superuser).post(url, {}, format="json"), 403, "separation_of_duties")
    assert api.as_user(other).post(url, {}, format="json").status_code == 200
    assert Policy.objects.get(pk=policy.pk).revision == 2


# --- rules.loosens, the one judgement of "looser" ------------------------------------------------

BASE = {
    "environments": {
        "staging": {"min_approvals": 1, "roles": [{"role": "approver"}], "expiry_days": 90},
        "production": {
            "min_approvals": 3,
            "roles": [{"role": "approver"}, {"role": "reviewer", "other_team": True}],
            "expiry_days": 90,
        },
    },
    "gates": [
        {"kind": "card_completeness", "min": 80},
        {"kind": "metric", "metric": "accuracy", "min": 0.85},
        {"kind": "metric", "metric": "latency_ms", "max": 50},
        {"kind": "evaluation", "evaluation": "fairness"},
        {"kind": "fairness", "features": ["sex"], "dp_ratio_min": 0.8, "eo_diff_max": 0.1},
        {"kind": "latency", "host_class": "a100", "p95_ms_max": 30},
        {"kind": "rollback_target", "environments": ["production"]},
        {"kind": "checklist", "item": "rollback-plan", "text": "Rollback ready."},
        {"kind": "checklist", "item": "infra", "text": "Infra checked.", "automation": ["ci-infra"]},
    ],
}


def _with(path: str, value):
    """BASE with one value replaced (``a.b.0.c``; ``None`` as value deletes the key)."""
    doc = json.loads(json.dumps(BASE))
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key = int(last) if last.isdigit() else last
    if value is _DROP:
        del node[key]
    else:
        node[key] = value
    return doc


_DROP = object()


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        (_with("environments.production.min_approvals", 2), "production: approvals needed lowered from 3 to 2."),
        (
            _with("environments.production.roles.1", _DROP),
            "production: role slot removed: no reviewer from another team is required any more (was 1).",
        ),
        (
            _with("environments.production.roles.1.other_team", False),
            "production: role slot removed: no reviewer from another team is required any more (was 1).",
        ),
        (
            _with("environments.production.expiry_days", 365),
            "production: approvals expire after 365 days instead of after 90 days.",
        ),
        (
            _with("environments.production.expiry_days", None),
            "production: approvals expire never instead of after 90 days.",
        ),
        (
            _with("gates.0.min", 50),
            "staging: the card completeness gate was relaxed: minimum completeness lowered from 80 to 50.",
        ),
        (_with("gates.1", _DROP), "production: the metric gate 'accuracy' was removed."),
        (_with("gates.2.max", 80), "staging: the metric gate 'latency_ms' was relaxed: maximum raised from 50 to 80."),
        (
            _with("gates.3.newer_than_artifact", False),
            "staging: the evaluation gate 'fairness' was relaxed: an evaluation of an earlier artifact now counts.",
        ),
        (
            _with("gates.4.dp_ratio_min", None),
            "production: the fairness gate over sex was relaxed: demographic-parity ratio minimum of 0.8 dropped.",
        ),
        (_with("gates.4.features", ["age"]), "production: the fairness gate over sex was removed."),
        (
            _with("gates.5.p95_ms_max", 60),
            "staging: the latency gate 'a100' was relaxed: p95 latency maximum (ms) raised from 30 to 60.",
        ),
        (_with("gates.6.environments", _DROP), None),  # applies to more environments: tighter
        (_with("gates.0.environments", ["staging"]), "production: the card completeness gate was removed."),
        (
            _with("gates.7.text", "Roll back if you like."),
            "production: the checklist gate 'rollback-plan' was relaxed: its text changed, so ticks attest something "
            "else.",
        ),
        (
            _with("gates.7.automation", True),
            "production: the checklist gate 'rollback-plan' was relaxed: more API tokens may tick it.",
        ),
        (
            _with("gates.8.automation", ["ci-infra", "ci-other"]),
            "production: the checklist gate 'infra' was relaxed: more API tokens may tick it.",
        ),
        (_with("gates.8.automation", False), None),
        (_with("environments.production.min_approvals", 4), None),
        (_with("environments.production.expiry_days", 30), None),
        (_with("gates.0.min", 95), None),
        (_with("environments.staging", _DROP), None),  # nothing is approved for staging any more
    ],
)
def test_loosens_names_each_way_rules_get_looser(new, reason):
    reasons = R.loosens(BASE, new)
    if reason is None:
        assert reasons == []
    else:
        assert reason in reasons, reasons


def test_a_newly_covered_environment_loosens_and_identical_rules_do_not():
    only_production = _with("environments", {"production": BASE["environments"]["production"]})
    only_production["gates"] = [g for g in BASE["gates"] if g.get("environments") != ["staging"]]
    assert R.loosens(BASE, BASE) == []
    assert R.loosens(only_production, BASE) == [
        "staging: the policy now approves versions for staging, which it did not cover before."
    ]
    assert R.loosens(BASE, {"environments": {}, "gates": []}) == []  # a prohibited use approves nothing


def test_a_gate_kept_at_least_as_strict_by_another_gate_of_the_same_key_is_kept():
    doubled = _with("gates.1.min", 0.5)
    doubled["gates"].append({"kind": "metric", "metric": "accuracy", "min": 0.9})
    assert R.loosens(BASE, doubled) == []


def test_checklist_automation_is_validated_by_the_rules_schema():
    for bad in ("yes", [], [""], 1):
        doc = _with("gates.7.automation", bad)
        with pytest.raises(Exception) as refused:
            R.parse(doc)
        assert getattr(refused.value, "code", "") == "invalid_rules", bad
