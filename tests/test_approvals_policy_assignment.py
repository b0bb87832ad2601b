"""Issue 10, finding 8 (the assignment side): choosing a looser policy for a model takes two people.

The attempt reproduced: a team admin who also registered the version assigned a looser policy to
the model (``POST /api/v1/policies/assign/``), withdrew the open review and requested it again
under the new policy, and one approval then approved it. Now, as for a looser revision of a
policy (``tests/test_approvals_policy_loosening.py``), a choice whose rules ``rules.loosens``
judges looser than the ones governing the model is only *proposed*: the model keeps its policy
until a second admin of the team (or a site administrator) approves it, the proposer cannot
approve it, and the proposer neither requests nor decides a review judged under it. Sending the
model back to its tier's default is judged the same way; a tightening choice takes effect at once.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from governance.accounts import services as accounts
from governance.accounts.models import Membership, Role
from governance.approvals import selectors, services
from governance.approvals.models import ApprovalRequest, Decision, ModelPolicy, PolicyAssignment, RequestStatus
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
STRICTER = {**TWO_PEOPLE, "gates": [{"kind": "card_completeness", "min": 10}]}
ASSIGN = "/api/v1/policies/assign/"


def _events(action: str, model) -> list[dict]:
    events = AuditEvent.objects.filter(action=action, object_id=str(model.pk)).order_by("seq")
    return [json.loads(e.changes or "{}") | {"actor": e.actor_id} for e in events]


def _approve_url(change_id: int, verb: str = "approve") -> str:
    return f"/api/v1/policies/assignments/{change_id}/{verb}/"


@pytest.fixture
def second_admin(team):
    user = User.objects.create_user("admin2", "admin2@example.com", "pw-admin2-long")
    Membership.objects.create(user=user, team=team, role=Role.ADMIN)
    return user


@pytest.fixture
def policies(superuser, team, model):
    """The model governed by a two-person team policy (chosen by the site administrator), and a
    one-approver team policy an admin may want instead."""
    with audit_context(source="cli", actor=superuser):
        strict = services.policy_create(actor=superuser, team=team, name="Two people", rules=TWO_PEOPLE)
        loose = services.policy_create(actor=superuser, team=team, name="One approver", rules=ONE_APPROVER)
        stricter = services.policy_create(actor=superuser, team=team, name="Stricter", rules=STRICTER)
        services.policy_assign(actor=superuser, policy=strict, model=model)
    assert selectors.policy_for_model(model) == strict
    return strict, loose, stricter


def _request(client, version) -> dict:
    r = client.post("/api/v1/approval-requests/", {"version": version.pk, "environments": ["production"]},
                    format="json")  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    return r.json()


def test_an_admin_author_cannot_choose_a_looser_policy_alone_and_approve_with_one_approval(
    api, users, model, make_version, policies, second_admin
):
    strict, loose, _ = policies
    admin = users.admin  # a team admin who also registers the version
    version = make_version(model, actor=admin)
    client = api.as_user(admin)
    first = _request(client, version)

    r = client.post(ASSIGN, {"model": model.pk, "policy": loose.pk}, format="json")
    assert r.status_code == 202, r.content[:300]
    body = r.json()
    assert body["policy"] == strict.pk  # the two-person policy still governs
    change = body["pending_assignment"]
    assert change["state"] == "proposed" and change["proposed_by"] == "admin" and change["policy"] == loose.pk
    assert "production: approvals needed lowered from 2 to 1." in change["loosens"]
    assert change["based_on"]["policy"] == strict.pk and change["target"]["policy"] == loose.pk
    assert ModelPolicy.objects.get(model=model).policy == strict
    [proposed] = _events("policy.assign.proposed", model)
    assert proposed["actor"] == admin.pk and proposed["assignment"] == change["id"]
    # nothing else changes the model's policy while the proposal waits
    assert_error(client.post(ASSIGN, {"model": model.pk, "policy": None}, format="json"), 409, "proposal_pending")

    # withdraw and request again: still judged under the two-person policy, one approval is not enough
    assert client.post(f"/api/v1/approval-requests/{first['id']}/withdraw/", {}, format="json").status_code == 200
    again = _request(client, version)
    assert again["policy"]["id"] == strict.pk
    r = api.as_user(users.approver).post(f"/api/v1/approval-requests/{again['id']}/decide/", {"decision": "approve"},
                                         format="json")  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "open"
    version.refresh_from_db()
    assert version.stage == Stage.IN_REVIEW

    # the proposer cannot approve their own choice, through the API or the page
    body = assert_error(client.post(_approve_url(change["id"]), {}, format="json"), 403, "separation_of_duties")
    assert "second admin" in body["detail"]
    page = api.as_user(admin).get(model.get_absolute_url()).content.decode()
    assert reverse("model-policy-approve", args=[model.pk, change["id"]]) not in page and "Proposed:" in page
    assert api.as_user(admin).post(reverse("model-policy-approve", args=[model.pk, change["id"]])).status_code == 403
    assert ModelPolicy.objects.get(model=model).policy == strict
    assert PolicyAssignment.objects.get(pk=change["id"]).state == "proposed"
    assert [e["code"] for e in _events("policy.assign.refused", model)] == ["separation_of_duties"] * 2


def test_a_second_admin_approves_and_the_proposer_neither_requests_nor_decides_under_it(
    api, users, team, model, make_version, policies, second_admin
):
    strict, loose, _ = policies
    Membership.objects.create(user=users.admin, team=team, role=Role.APPROVER)  # the proposer could approve reviews
    proposer = api.as_user(users.admin)
    change = proposer.post(ASSIGN, {"model": model.pk, "policy": loose.pk}, format="json").json()["pending_assignment"]
    url = _approve_url(change["id"])

    # an API token never approves it, whoever owns it; no one but an admin of the team; other teams see nothing
    with audit_context(source="cli", actor=second_admin):
        _, secret = accounts.token_create(actor=second_admin, name="ops", scopes=["read", "write", "admin"])
    assert_error(api.with_token(secret).post(url, {}, format="json"), 403, "decision_requires_person")
    assert_error(api.as_user(users.approver).post(url, {}, format="json"), 403)
    assert_error(api.as_user(users.outsider).post(url, {}, format="json"), 404, "assignment_not_found")
    assert api.as_user(users.outsider).get("/api/v1/policies/assignments/").json()["results"] == []
    assert api.as_user(users.viewer).get("/api/v1/policies/assignments/", {"state": "proposed"}).json()["results"][0][
        "id"] == change["id"]  # fmt: skip
    assert ModelPolicy.objects.get(model=model).policy == strict

    r = api.as_user(second_admin).post(url, {"comment": "Agreed for low-volume use."}, format="json")
    assert r.status_code == 200, r.content[:300]
    assert r.json()["state"] == "adopted" and r.json()["decided_by"] == "admin2"
    assert selectors.policy_for_model(model) == loose
    [approved] = _events("policy.assign.approved", model)
    assert approved["actor"] == second_admin.pk and approved["proposed_by"] == users.admin.pk
    assert_error(api.as_user(second_admin).post(url, {}, format="json"), 409, "proposal_closed")
    listed = api.as_user(users.viewer).get("/api/v1/policies/assignments/", {"model": model.pk}).json()["results"]
    assert [(c["id"], c["state"]) for c in listed][0] == (change["id"], "adopted")

    # the proposer may not request a review judged under the policy they chose
    version = make_version(model)
    body = assert_error(proposer.post("/api/v1/approval-requests/", {"version": version.pk,
                        "environments": ["production"]}, format="json"), 403, "separation_of_duties")  # fmt: skip
    assert "One approver" in body["detail"] and "loosened" in body["detail"]
    assert not ApprovalRequest.objects.filter(version=version).exists()
    assert [e["code"] for e in _events("review.request.refused", version)] == ["separation_of_duties"]

    # someone else requests it; the proposer may not decide on it, and is not asked to
    req = _request(api.as_user(users.author), version)
    assert req["policy"]["id"] == loose.pk
    awaiting = proposer.get("/api/v1/approval-requests/", {"awaiting_me": "true"}).json()["results"]
    assert req["id"] not in [row["id"] for row in awaiting]
    awaiting = api.as_user(users.approver).get("/api/v1/approval-requests/", {"awaiting_me": "true"}).json()["results"]
    assert req["id"] in [row["id"] for row in awaiting]
    assert users.admin not in services.eligible_reviewers(ApprovalRequest.objects.get(pk=req["id"]))
    assert_error(proposer.post(f"/api/v1/approval-requests/{req['id']}/decide/", {"decision": "approve"},
                               format="json"), 403, "separation_of_duties")  # fmt: skip
    assert not Decision.objects.filter(request_id=req["id"]).exists()
    review_page = proposer.get(reverse("review-detail", args=[req["id"]])).content.decode()
    assert "so you cannot decide on this review judged under it" in review_page
    # an approver who had nothing to do with the choice approves under it
    r = api.as_user(users.approver).post(f"/api/v1/approval-requests/{req['id']}/decide/", {"decision": "approve"},
                                         format="json")  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == RequestStatus.APPROVED


def test_a_tighter_choice_takes_effect_at_once_and_a_proposal_can_be_rejected(
    api, users, model, policies, second_admin
):
    strict, loose, stricter = policies
    client = api.as_user(users.admin)
    r = client.post(ASSIGN, {"model": model.pk, "policy": stricter.pk}, format="json")
    assert r.status_code == 200 and r.json() == {"model": model.pk, "policy": stricter.pk, "pending_assignment": None}
    [changed] = [e for e in _events("model.policy", model) if e["actor"] == users.admin.pk]
    assert "reasons" not in changed
    # back to the two-person policy drops the card gate: proposed; its proposer withdraws it by rejecting it
    r = client.post(ASSIGN, {"model": model.pk, "policy": strict.pk}, format="json")
    assert r.status_code == 202
    change = r.json()["pending_assignment"]
    assert change["loosens"] == ["production: the card completeness gate was removed."]
    r = client.post(_approve_url(change["id"], "reject"), {"comment": "on second thought"}, format="json")
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    assert selectors.policy_for_model(model) == stricter
    assert [e["actor"] for e in _events("policy.assign.rejected", model)] == [users.admin.pk]
    # the same choice is proposed again and a second admin approves it
    change = client.post(ASSIGN, {"model": model.pk, "policy": strict.pk}, format="json").json()["pending_assignment"]
    assert api.as_user(second_admin).post(_approve_url(change["id"]), {}, format="json").status_code == 200
    assert selectors.policy_for_model(model) == strict


def test_a_proposal_made_under_other_rules_is_stale(api, users, superuser, model, policies, second_admin):
    strict, loose, _ = policies
    change = api.as_user(users.admin).post(ASSIGN, {"model": model.pk, "policy": loose.pk},
                                           format="json").json()["pending_assignment"]  # fmt: skip
    with audit_context(source="cli", actor=superuser):  # the governing policy is tightened meanwhile
        services.policy_update(actor=superuser, policy=strict, rules=STRICTER)
    assert_error(api.as_user(second_admin).post(_approve_url(change["id"]), {}, format="json"), 409, "proposal_stale")
    assert selectors.policy_for_model(model) == strict
    assert PolicyAssignment.objects.get(pk=change["id"]).state == "proposed"
    assert [e["code"] for e in _events("policy.assign.refused", model)] == ["proposal_stale"]


def test_the_policy_page_and_the_model_page_show_the_proposal_to_the_second_admin(
    login, users, model, policies, second_admin
):
    strict, loose, _ = policies
    response = login(users.admin).post(reverse("model-policy", args=[model.pk]), {"policy": loose.pk}, follow=True)
    assert "loosens the rules its versions are reviewed under" in response.content.decode()
    change = PolicyAssignment.objects.get(model=model, state="proposed")
    approve_url = reverse("model-policy-approve", args=[model.pk, change.pk])
    policy_page = loose.get_absolute_url()

    page = login(users.admin).get(policy_page).content.decode()
    assert "Proposed for 1 model" in page and model.name in page and "approvals needed lowered from 2 to 1" in page
    assert approve_url not in page
    second = login(second_admin)
    page = second.get(policy_page).content.decode()
    assert approve_url in page and reverse("model-policy-reject", args=[model.pk, change.pk]) in page
    assert approve_url in second.get(model.get_absolute_url()).content.decode()
    response = second.post(approve_url, {"next": policy_page})
    assert response.status_code == 302 and response["Location"] == policy_page
    assert ModelPolicy.objects.get(model=model).policy == loose
    assert AuditEvent.objects.get(action="policy.assign.approved").source == "ui"
    page = second.get(model.get_absolute_url()).content.decode()
    assert "A looser choice, proposed by admin and approved by admin2" in page
    assert "Proposed for" not in second.get(policy_page).content.decode()


def test_a_site_administrators_choice_takes_effect_at_once(api, superuser, model, policies):
    """A site administrator is the second admin a team's proposal waits for: their own choice
    takes effect at once, is recorded with why it loosens, and bars them from its reviews."""
    strict, loose, _ = policies
    r = api.as_user(superuser).post(ASSIGN, {"model": model.pk, "policy": loose.pk}, format="json")
    assert r.status_code == 200 and r.json()["policy"] == loose.pk
    change = selectors.assignment_governing(model)
    assert change.proposed_by == superuser and change.loosens and change.state == "adopted"
    assert _events("model.policy", model)[-1]["reasons"] == change.loosens
