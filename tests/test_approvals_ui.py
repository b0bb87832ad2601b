"""The approvals pages: who sees what (404 for other teams, 403 for roles that may not act), the
forms go through the services and show their refusals, and the queue keeps a fixed query count."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from governance.accounts.models import Membership, Role
from governance.approvals import services
from governance.approvals.models import ApprovalRequest, ChecklistTick, Decision, Policy, PolicyRevision
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.registry import services as registry
from governance.registry.models import ModelVersion, Stage
from tests.conftest import move
from tests.test_approvals import APPROVER_AND_REVIEWER, NO_GATES_ONE_APPROVER, accounts_user, decide, request

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

INDEPENDENT = {
    "environments": {
        "production": {"min_approvals": 2, "roles": [{"role": "approver"}, {"role": "reviewer", "other_team": True}]}
    },
    "gates": [],
}


@pytest.fixture
def use_policy(superuser):
    def use(model, rules: dict, name: str = "Test policy") -> Policy:
        with audit_context(source="cli", actor=superuser):
            policy = services.policy_create(actor=superuser, name=name, rules=rules)
            services.policy_assign(actor=superuser, policy=policy, model=model)
        return policy

    return use


@pytest.fixture
def review(users, model, version, use_policy):
    """An open review of ``version`` for production: one approver and one reviewer needed."""
    use_policy(model, APPROVER_AND_REVIEWER)
    return request(version, users.author)


def _text(response) -> str:
    return response.content.decode()


# --- pages and who may see them -------------------------------------------------------------------


def test_every_approvals_page_renders_for_a_member(login, users, version, review):
    client = login(users.author)
    policy = review.policy_revision.policy
    pages = {
        "queue": reverse("reviews"),
        "queue-open": reverse("reviews") + "?tab=open",
        "queue-closed": reverse("reviews") + "?tab=closed",
        "review": reverse("review-detail", args=[review.pk]),
        "request": reverse("review-request", args=[version.pk]),
        "policies": reverse("policies"),
        "policy": reverse("policy-detail", args=[policy.pk]),
        "version": reverse("version-detail", args=[version.pk]),
    }
    for name, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, (name, response.status_code)
    page = _text(client.get(pages["review"]))
    assert review.artifact_sha256[:12] in page and f'title="{review.artifact_sha256}"' in page
    assert "Freeze" in page and "Production" in page and "Evidence manifest" in page
    assert "No version of credit-scoring is deployed" in page
    # the author registered the version: no form, the reason instead, and a withdraw button
    assert 'id="decision-form"' not in page and "Separation of duties" in page
    assert reverse("review-withdraw", args=[review.pk]) in page
    version_page = _text(client.get(pages["version"]))
    assert 'id="gate"' in version_page and 'id="gate-production"' in version_page
    assert f"open review #{review.pk}" in version_page


def test_anonymous_is_sent_to_sign_in(client, version, review):
    for url in (reverse("reviews"), reverse("review-detail", args=[review.pk]), reverse("policies"),
                reverse("review-request", args=[version.pk])):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_other_teams_get_404(login, users, team, version, review, superuser):
    with audit_context(source="cli", actor=superuser):
        team_policy = services.policy_create(actor=superuser, team=team, name="Team only", rules=NO_GATES_ONE_APPROVER)
    client = login(users.outsider)
    assert client.get(reverse("review-detail", args=[review.pk])).status_code == 404
    assert client.get(reverse("review-request", args=[version.pk])).status_code == 404
    assert client.get(reverse("policy-detail", args=[team_policy.pk])).status_code == 404
    assert client.get(reverse("policy-edit", args=[team_policy.pk])).status_code == 404
    before = Decision.objects.count(), ApprovalRequest.objects.count(), ChecklistTick.objects.count()
    assert client.post(reverse("review-decide", args=[review.pk]), {"decision": "approve"}).status_code == 404
    assert client.post(reverse("review-withdraw", args=[review.pk])).status_code == 404
    assert (
        client.post(reverse("review-request", args=[version.pk]), {"environments": ["production"]}).status_code == 404
    )
    assert client.post(reverse("checklist-tick", args=[version.pk]), {"item": "rollback-plan"}).status_code == 404
    assert (Decision.objects.count(), ApprovalRequest.objects.count(), ChecklistTick.objects.count()) == before
    # the queue does not list it either
    assert client.get(reverse("reviews") + "?tab=open").context["rows"] == []


def test_roles_that_may_not_act_get_403_and_nothing_changes(login, users, model, version, review):
    viewer = login(users.viewer)
    assert viewer.get(reverse("review-request", args=[version.pk])).status_code == 403
    response = viewer.post(reverse("review-withdraw", args=[review.pk]))
    assert response.status_code == 403 and "You need one of these roles" in _text(response)
    review.refresh_from_db()
    assert review.is_open
    assert AuditEvent.objects.filter(action="permission.denied", actor=users.viewer, source="ui").exists()
    response = viewer.post(reverse("review-decide", args=[review.pk]), {"decision": "approve"})
    assert response.status_code == 403 and not Decision.objects.exists()
    # policies: only site administrators write site-wide ones, team admins their team's
    author = login(users.author)
    assert author.get(reverse("policy-create")).status_code == 403
    response = author.post(reverse("policy-create"), {"name": "Mine", "rules": json.dumps(NO_GATES_ONE_APPROVER)})
    assert response.status_code == 403 and "Only site administrators" in _text(response)
    assert not Policy.objects.filter(name="Mine").exists()
    assert AuditEvent.objects.filter(action="permission.denied", actor=users.author, source="ui").exists()
    site_policy = review.policy_revision.policy
    admin = login(users.admin)
    assert admin.get(reverse("policy-edit", args=[site_policy.pk])).status_code == 403
    response = admin.post(
        reverse("policy-edit", args=[site_policy.pk]),
        {"name": "Renamed", "rules": json.dumps(NO_GATES_ONE_APPROVER), "comment": "x"},
    )
    assert response.status_code == 403 and "Only site administrators" in _text(response)
    site_policy.refresh_from_db()
    assert site_policy.name == "Test policy" and site_policy.revision == 1


def test_a_viewer_sees_no_request_button_and_no_tick_buttons(login, users, make_model, make_version):
    version = make_version(make_model("credit-limit", risk_tier="high"))
    page = _text(login(users.viewer).get(reverse("version-detail", args=[version.pk])))
    assert "Deployment gate" in page and reverse("review-request", args=[version.pk]) not in page
    assert reverse("checklist-tick", args=[version.pk]) not in page
    author_page = _text(login(users.author).get(reverse("version-detail", args=[version.pk])))
    assert reverse("review-request", args=[version.pk]) in author_page
    # the author registered the version: no tick buttons (separation of duties), the reason instead
    assert reverse("checklist-tick", args=[version.pk]) not in author_page
    assert "Separation of duties: you registered this version" in author_page
    reviewer_page = _text(login(users.reviewer).get(reverse("version-detail", args=[version.pk])))
    assert reviewer_page.count(reverse("checklist-tick", args=[version.pk])) == 12  # six items, two environments


# --- deciding -------------------------------------------------------------------------------------


def test_reviewer_and_approver_decide_through_the_form(login, users, version, review):
    url = reverse("review-detail", args=[review.pk])
    reviewer = login(users.reviewer)
    page = _text(reviewer.get(url))
    assert 'id="decision-form"' in page and 'accesskey="a"' in page and "<kbd>Ctrl</kbd>" in page
    response = reviewer.post(reverse("review-decide", args=[review.pk]), {"decision": "approve"})
    assert response.status_code == 302 and response["Location"] == url
    made = Decision.objects.get(request=review)
    assert made.decided_by == users.reviewer and made.team_roles == ["reviewer"]
    assert AuditEvent.objects.get(action="review.decide", object_id=str(made.pk)).source == "ui"
    review.refresh_from_db()
    assert review.is_open
    # decided: the form is gone, the decision is listed
    page = _text(reviewer.get(url))
    assert 'id="decision-form"' not in page and "already decided on this review (freeze 1)" in page
    response = login(users.approver).post(reverse("review-decide", args=[review.pk]), {"decision": "approve"})
    assert response.status_code == 302
    review.refresh_from_db()
    version.refresh_from_db()
    assert review.status == "approved" and version.stage == Stage.APPROVED
    follow = login(users.viewer).get(reverse("version-detail", args=[version.pk]))
    assert "Version 1 may be served in production" in _text(follow)


def test_reject_without_a_comment_shows_the_error_and_changes_nothing(login, users, version, review):
    client = login(users.reviewer)
    before = ModelVersion.objects.get(pk=version.pk).stage
    response = client.post(reverse("review-decide", args=[review.pk]), {"decision": "reject", "comment": "  "})
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["comment"] == ["Required for this decision."]
    page = _text(response)
    assert "Required for this decision." in page and 'value="reject" accesskey="r" checked' in page
    assert not Decision.objects.exists() and ModelVersion.objects.get(pk=version.pk).stage == before
    # the service recorded the refused attempt
    assert AuditEvent.objects.filter(action="review.decide.refused", object_id=str(review.pk)).count() == 1
    response = client.post(
        reverse("review-decide", args=[review.pk]), {"decision": "reject", "comment": "Trained on the wrong year."}
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.stage == Stage.REJECTED
    page = _text(client.get(reverse("review-detail", args=[review.pk])))
    assert "Trained on the wrong year." in page and "is rejected; its decisions are final" in page


def test_a_missing_decision_is_a_form_error(login, users, review):
    response = login(users.reviewer).post(reverse("review-decide", args=[review.pk]), {"comment": "hm"})
    assert response.status_code == 400 and "This field is required." in _text(response)
    assert not Decision.objects.exists()


def test_the_author_is_refused_by_separation_of_duties(login, users, team, review):
    Membership.objects.create(user=users.author, team=team, role=Role.APPROVER)
    response = login(users.author).post(reverse("review-decide", args=[review.pk]), {"decision": "approve"})
    assert response.status_code == 403
    assert "Separation of duties" in _text(response)
    assert not Decision.objects.exists()
    assert AuditEvent.objects.filter(action="review.decide.refused", actor=users.author).count() == 1
    assert AuditEvent.objects.filter(action="permission.denied", actor=users.author, source="ui").count() == 1


def test_a_closed_review_refuses_a_late_decision_with_409(login, users, version, review):
    decide(review, users.reviewer, "request_changes", "Please add the evaluation data.")
    response = login(users.approver).post(reverse("review-decide", args=[review.pk]), {"decision": "approve"})
    assert response.status_code == 409 and "decisions are final" in _text(response)
    assert Decision.objects.count() == 1


def test_withdraw_sends_the_version_back_to_draft(login, users, version, review):
    response = login(users.author).post(reverse("review-withdraw", args=[review.pk]), {"reason": "wrong data"})
    assert response.status_code == 302 and response["Location"] == reverse("version-detail", args=[version.pk])
    version.refresh_from_db()
    review.refresh_from_db()
    assert version.stage == Stage.DRAFT and review.status == "withdrawn"


def test_stale_evidence_is_announced_and_earlier_decisions_are_dimmed(login, users, version, review):
    decide(review, users.reviewer)
    with audit_context(source="task"):
        registry.version_record_inspection(
            version_id=version.pk, metadata={"sha256": version.artifact_sha256, "format": "joblib", "size": 66}
        )
    review.refresh_from_db()
    assert review.freeze == 2
    response = login(users.reviewer).get(reverse("review-detail", args=[review.pk]))
    page = _text(response)
    assert "The evidence changed after the review was requested" in page and review.stale_reason in page
    assert "dismissed: made on freeze 1" in page and 'class="decision dismissed"' in page
    # the reviewer may decide again on the new freeze
    assert 'id="decision-form"' in page


def test_an_independent_reviewer_reaches_the_version_through_the_review(login, users, other_team, model, version,
                                                                         use_policy):  # fmt: skip
    use_policy(model, INDEPENDENT)
    req = request(version, users.author)
    independent = login(accounts_user("risk-office", other_team, Role.REVIEWER))
    assert independent.get(reverse("version-detail", args=[version.pk])).status_code == 404
    queue = independent.get(reverse("reviews"))
    assert [row["request"].pk for row in queue.context["rows"]] == [req.pk]
    page = _text(independent.get(reverse("review-detail", args=[req.pk])))
    assert 'id="decision-form"' in page and version.artifact_sha256 in page
    assert reverse("version-detail", args=[version.pk]) + '"' not in page.replace("#gate", "").replace("#card", "")
    response = independent.post(reverse("review-decide", args=[req.pk]), {"decision": "approve"})
    assert response.status_code == 302
    assert Decision.objects.get(request=req).other_team_roles == ["reviewer"]


def test_the_review_page_compares_with_the_deployed_version(login, users, superuser, model, make_version, use_policy):
    v1 = make_version(model, metrics={"accuracy": 0.88, "auc": 0.8})
    move(v1, "in_review", "approved", "deployed", actor=superuser)
    v2 = make_version(model, metrics={"accuracy": 0.91, "auc": 0.8})
    use_policy(model, APPROVER_AND_REVIEWER)
    req = request(v2, users.author)
    page = _text(login(users.reviewer).get(reverse("review-detail", args=[req.pk])))
    assert "v1 (deployed)" in page and "+0.03" in page
    assert 'id="metrics-chart"' in page and "metrics-chart-data" in page and "plotly-charter.min.js" in page


# --- the queue ------------------------------------------------------------------------------------


def test_the_queue_shows_only_what_awaits_the_user(login, users, other_team, model, make_model, make_version,
                                                   use_policy, version, review):  # fmt: skip
    foreign = make_version(make_model("campaign-uplift", owner_team=other_team, actor=users.outsider),
                           actor=users.outsider)  # fmt: skip
    with audit_context(source="cli", actor=users.superuser):
        Membership.objects.create(user=users.outsider, team=other_team, role=Role.ADMIN)
    use_policy(foreign.model, NO_GATES_ONE_APPROVER, name="Marketing rules")
    foreign_review = request(foreign, users.outsider)

    def rows(client, **params):
        return [row["request"].pk for row in client.get(reverse("reviews"), params).context["rows"]]

    reviewer, author = login(users.reviewer), login(users.author)
    assert rows(reviewer) == [review.pk]
    assert foreign_review.pk not in rows(reviewer, tab="open")
    assert rows(author) == [] and rows(author, tab="open") == [review.pk]
    assert "Nothing awaits your review" in _text(author.get(reverse("reviews")))
    assert reviewer.get(reverse("reviews")).context["reviews_awaiting"] == 1
    assert '<span class="nav-count">1</span>' in _text(reviewer.get(reverse("home")))
    decide(review, users.reviewer)
    assert rows(reviewer) == [] and rows(reviewer, tab="open") == [review.pk]
    decide(review, users.approver)
    assert rows(reviewer, tab="open") == [] and rows(reviewer, tab="closed") == [review.pk]
    row = reviewer.get(reverse("reviews"), {"tab": "closed"}).context["rows"][0]
    assert (row["given"], row["needed"]) == (2, 2)


def test_the_queue_filters_by_team_tier_and_age(login, users, team, make_model, make_version, use_policy):
    made = {}
    for name, tier in (("alpha", "high"), ("beta", "minimal")):
        model = make_model(name, risk_tier=tier)
        use_policy(model, NO_GATES_ONE_APPROVER, name=f"{name} rules")
        made[name] = request(make_version(model), users.author)
    ApprovalRequest.objects.filter(pk=made["alpha"].pk).update(requested_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    client = login(users.approver)

    def rows(**params):
        return [row["request"].pk for row in client.get(reverse("reviews"), params).context["rows"]]

    assert rows() == [made["alpha"].pk, made["beta"].pk]  # oldest first
    assert rows(risk_tier="minimal") == [made["beta"].pk]
    assert rows(older_than="7") == [made["alpha"].pk]
    assert rows(team=team.pk) == [made["alpha"].pk, made["beta"].pk]
    assert rows(team="999999") == [made["alpha"].pk, made["beta"].pk]  # not a choice: ignored, and said so
    assert "Some filters were ignored" in _text(client.get(reverse("reviews"), {"team": "999999"}))
    assert "No review matches these filters" in _text(client.get(reverse("reviews"), {"older_than": "1",
                                                                                     "risk_tier": "minimal"}))  # fmt: skip


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_the_queue_runs_a_fixed_number_of_queries(login, users, make_model, make_version, use_policy, superuser):
    with audit_context(source="cli", actor=superuser):
        policy = services.policy_create(actor=superuser, name="Queue rules", rules=APPROVER_AND_REVIEWER)

    def add(start, stop):
        for i in range(start, stop):
            model = make_model(f"queued-{i:03d}")
            with audit_context(source="cli", actor=superuser):
                services.policy_assign(actor=superuser, policy=policy, model=model)
            req = request(make_version(model), users.author)
            if i % 3 == 0:
                decide(req, users.approver)

    client = login(users.reviewer)
    url = reverse("reviews")
    add(0, 3)
    small = {tab: _queries(client, url, {"tab": tab}) for tab in ("awaiting", "open", "closed")}
    filtered = _queries(client, url, {"tab": "open", "risk_tier": "limited", "older_than": "1"})
    add(3, 30)
    response = client.get(url, {"tab": "open"})
    assert len(response.context["rows"]) == 25 and response.context["page"].paginator.num_pages == 2
    assert {tab: _queries(client, url, {"tab": tab}) for tab in ("awaiting", "open", "closed")} == small
    assert _queries(client, url, {"tab": "open", "page": 2}) == small["open"]
    assert _queries(client, url, {"tab": "open", "risk_tier": "limited", "older_than": "1"}) == filtered


# --- asking for a review --------------------------------------------------------------------------


def test_the_request_form_offers_only_the_policys_environments(login, users, model, version, use_policy):
    use_policy(model, APPROVER_AND_REVIEWER)  # production only
    client = login(users.author)
    url = reverse("review-request", args=[version.pk])
    page = client.get(url)
    choices = [value for value, _ in page.context["form"].fields["environments"].choices]
    assert choices == ["production"]
    text = _text(page)
    assert "Production needs 2 approvals from different people" in text and "No gates" in text
    response = client.post(url, {"environments": ["staging"], "comment": "x"})
    assert response.status_code == 400 and not ApprovalRequest.objects.exists()
    response = client.post(url, {"environments": ["production"], "comment": "Ready: see the card."})
    made = ApprovalRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("review-detail", args=[made.pk])
    assert made.environments == ["production"] and made.comment == "Ready: see the card."
    assert AuditEvent.objects.get(action="review.request", object_id=str(made.pk)).source == "ui"
    # a second request while one is open is the service's refusal, shown on the form
    response = client.post(url, {"environments": ["production"]})
    assert response.status_code == 409 and "a review can be requested for a draft" in _text(response)
    assert ApprovalRequest.objects.count() == 1


def test_a_prohibited_use_cannot_be_put_up_for_review(login, users, make_model, make_version):
    version = make_version(make_model("social-scoring", risk_tier="unacceptable"))
    page = login(users.author).get(reverse("review-request", args=[version.pk]))
    assert page.status_code == 200 and "cannot be approved for any environment" in _text(page)


# --- the checklist ----------------------------------------------------------------------------------


def test_ticking_a_checklist_item_works_and_is_audited(login, users, make_model, make_version):
    version = make_version(make_model("credit-limit", risk_tier="high"))
    client = login(users.reviewer)
    url = reverse("checklist-tick", args=[version.pk])
    response = client.post(url, {"item": "rollback-plan", "ticked": "1"})
    assert (
        response.status_code == 302 and response["Location"] == reverse("version-detail", args=[version.pk]) + "#gate"
    )
    tick = ChecklistTick.objects.get(version=version)
    assert tick.item == "rollback-plan" and tick.ticked_by == users.reviewer
    event = AuditEvent.objects.get(action="checklist.tick", object_id=str(version.pk))
    assert event.source == "ui" and event.actor == users.reviewer
    page = _text(client.get(reverse("version-detail", args=[version.pk])))
    assert "Ticked by reviewer" in page and "Untick: Error handling and a rollback" in page
    assert client.post(url, {"item": "rollback-plan", "ticked": "0"}).status_code == 302
    assert not ChecklistTick.objects.exists()
    assert AuditEvent.objects.filter(action="checklist.untick", source="ui").count() == 1


def test_a_refused_tick_is_403_or_400_on_the_version_page(login, users, make_model, make_version):
    version = make_version(make_model("credit-limit", risk_tier="high"))
    url = reverse("checklist-tick", args=[version.pk])
    response = login(users.viewer).post(url, {"item": "rollback-plan"})
    assert response.status_code == 403 and "Deployment gate" in _text(response)
    assert AuditEvent.objects.filter(action="permission.denied", actor=users.viewer).exists()
    response = login(users.reviewer).post(url, {"item": "no-such-item"})
    assert response.status_code == 400 and "is not a checklist item" in _text(response)
    assert not ChecklistTick.objects.exists()


def test_a_tick_from_the_review_page_returns_there(login, users, make_model, make_version):
    version = make_version(make_model("credit-limit", risk_tier="high"))
    req = request(version, users.author, ["staging", "production"])
    client = login(users.reviewer)
    back = reverse("review-detail", args=[req.pk])
    page = _text(client.get(back))
    assert f'name="next" value="{back}"' in page
    response = client.post(reverse("checklist-tick", args=[version.pk]), {"item": "infrastructure", "next": back})
    assert response.status_code == 302 and response["Location"] == back
    response = client.post(reverse("checklist-tick", args=[version.pk]), {"item": "privacy-security",
                                                                          "next": "https://evil.example/"})  # fmt: skip
    assert response["Location"] == reverse("version-detail", args=[version.pk]) + "#gate"


# --- policies -----------------------------------------------------------------------------------------


def test_policy_pages_read_the_rules_as_sentences(login, users, team, superuser):
    with audit_context(source="cli", actor=superuser):
        policy = services.policy_create(
            actor=superuser, team=team, name="Credit rules", comment="first",
            rules={**INDEPENDENT, "gates": [{"kind": "metric", "metric": "auc", "min": 0.75},
                                            {"kind": "checklist", "item": "rollback-plan", "text": "Rollback ready."}]},
        )  # fmt: skip
    client = login(users.viewer)
    listing = _text(client.get(reverse("policies")))
    assert "Credit rules" in listing and "High risk" in listing  # the team's own and the tier defaults
    page = _text(client.get(reverse("policy-detail", args=[policy.pk])))
    assert "Production needs 2 approvals from different people, including 1 approver of the owning team and " \
           "1 reviewer from another team." in page  # fmt: skip
    assert (
        "The metric “auc” is at least 0.75 (from" in page
        and "newest performance evaluation" in page
        and "Checklist: Rollback ready." in page
    )
    assert "r1" in page and "“first”" in page and reverse("policy-edit", args=[policy.pk]) not in page
    assert reverse("policy-edit", args=[policy.pk]) in _text(login(users.admin).get(policy.get_absolute_url()))


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        pytest.param("{oops", "The rules must be valid JSON", id="bad-json"),
        pytest.param("[1, 2]", "must be a JSON object", id="not-an-object"),
        pytest.param(
            json.dumps(
                {
                    "environments": {
                        "production": {"min_approvals": 1, "roles": [{"role": "approver"}, {"role": "reviewer"}]}
                    }
                }
            ),
            "rules.environments.production: Value error, impossible quorum",
            id="impossible-quorum",
        ),  # fmt: skip
        pytest.param(
            json.dumps(
                {
                    "environments": {"production": {"min_approvals": 1}},
                    "gates": [{"kind": "card_completeness", "min": "80"}],
                }
            ),
            "rules.gates.0.card_completeness.min:",
            id="string-threshold",
        ),  # fmt: skip
    ],
)
def test_bad_policy_rules_are_field_errors_and_store_nothing(login, users, rules, expected):
    client = login(users.superuser)
    governed = AuditEvent.objects.exclude(action__endswith=".refused")  # a refusal is recorded on purpose
    before = Policy.objects.count(), PolicyRevision.objects.count(), governed.count()
    response = client.post(reverse("policy-create"), {"name": "Strict", "rules": rules, "comment": "try"})
    assert response.status_code == 400
    assert response.context["form"].errors["rules"], response.context["form"].errors
    page = _text(response)
    assert expected.replace("“", "&ldquo;") in page or expected in page, page[page.find("errorlist") - 200 :][:1200]
    assert (Policy.objects.count(), PolicyRevision.objects.count(), governed.count()) == before


def test_every_bad_field_is_listed_under_the_textarea(login, users):
    rules = {"environments": {"production": {"min_approvals": 0}}, "gates": [{"kind": "vibes"}]}
    response = login(users.superuser).post(reverse("policy-create"), {"name": "Strict", "rules": json.dumps(rules)})
    errors = response.context["form"].errors["rules"]
    assert len(errors) == 2 and errors[0].startswith("rules.environments.production.min_approvals:")
    assert errors[1].startswith("rules.gates.0")


def test_team_admin_creates_and_edits_a_team_policy_as_new_revisions(login, users, team, model, version):
    client = login(users.admin)
    page = client.get(reverse("policy-create"))
    assert page.status_code == 200 and "risk_tier" not in page.context["form"].fields
    response = client.post(
        reverse("policy-create"),
        {"team": team.pk, "name": "Credit rules", "description": "Stricter.", "rules": json.dumps(NO_GATES_ONE_APPROVER),
         "comment": "first"},
    )  # fmt: skip
    policy = Policy.objects.get(name="Credit rules")
    assert response.status_code == 302 and response["Location"] == policy.get_absolute_url()
    assert policy.team == team and policy.revision == 1
    assert AuditEvent.objects.get(action="policy.create", object_id=str(policy.pk)).source == "ui"
    with audit_context(source="cli", actor=users.admin):
        proposed = services.policy_assign(actor=users.admin, policy=policy, model=model)
    # looser than the limited tier's default (one approval, no gates): a second admin makes it take effect
    assert proposed.is_proposed and proposed.loosens
    second_admin = accounts_user("admin2", team, Role.ADMIN)
    with audit_context(source="cli", actor=second_admin):
        services.policy_assignment_approve(actor=second_admin, assignment=proposed)
    open_review = request(version, users.author)
    assert open_review.policy_revision.policy == policy
    edit_url = reverse("policy-edit", args=[policy.pk])
    page = _text(client.get(edit_url))
    assert "saved as revision 2" in page and "1 open review under this policy keeps revision 1" in page
    stricter = {**NO_GATES_ONE_APPROVER, "gates": [{"kind": "metric", "metric": "accuracy", "min": 0.99}]}
    response = client.post(edit_url, {"name": "Credit rules", "description": "Stricter.", "rules": json.dumps(stricter),
                                      "comment": "tighter"})  # fmt: skip
    assert response.status_code == 302
    policy.refresh_from_db()
    open_review.refresh_from_db()
    assert policy.revision == 2 and open_review.policy_revision.number == 1
    assert PolicyRevision.objects.get(policy=policy, number=2).comment == "tighter"
    detail = _text(client.get(policy.get_absolute_url()))
    assert "at least 0.99" in detail and "“tighter”" in detail and "“first”" in detail
    # an impossible quorum on edit changes nothing
    bad = {"environments": {"production": {"min_approvals": 1, "roles": [{"role": "approver"}, {"role": "reviewer"}]}}}
    response = client.post(edit_url, {"name": "Credit rules", "rules": json.dumps(bad)})
    assert response.status_code == 400 and "impossible quorum" in _text(response)
    policy.refresh_from_db()
    assert policy.revision == 2 and PolicyRevision.objects.filter(policy=policy).count() == 2


def test_a_team_admin_chooses_a_models_policy_on_its_page(login, users, team, model, superuser):
    from governance.approvals import services as approval_services
    from governance.approvals.models import ModelPolicy, Policy, PolicyAssignment
    from governance.audit.models import AuditEvent
    from governance.core.context import audit_context

    with audit_context(source="cli", actor=superuser):
        strict = approval_services.policy_create(
            actor=superuser, name="Strict credit", rules={"environments": {"production": {"min_approvals": 2}}}
        )
    second_admin = accounts_user("admin2", team, Role.ADMIN)
    url = reverse("model-policy", args=[model.pk])
    page = login(users.admin).get(model.get_absolute_url()).content.decode()
    assert "default of its risk tier" in page and "Strict credit" in page and url in page
    assert url not in login(users.author).get(model.get_absolute_url()).content.decode()
    assert login(users.author).post(url, {"policy": strict.pk}).status_code == 403
    assert login(users.outsider).post(url, {"policy": strict.pk}).status_code == 404
    assert not ModelPolicy.objects.exists()

    # "Strict credit" drops the tier default's role slots and gates: proposed, the default still governs
    response = login(users.admin).post(url, {"policy": strict.pk}, follow=True)
    page = response.content.decode()
    assert "takes effect once a second admin approves it" in page and "Proposed:" in page
    assert "default of its risk tier" in page and not ModelPolicy.objects.exists()
    proposal = PolicyAssignment.objects.get(model=model, state="proposed")
    approve_url = reverse("model-policy-approve", args=[model.pk, proposal.pk])
    assert approve_url not in page and "so a second admin of the team (or a site administrator) must approve it" in page
    assert login(users.admin).post(approve_url).status_code == 403  # the proposer never approves it
    assert not ModelPolicy.objects.exists()
    assert AuditEvent.objects.get(action="policy.assign.proposed", object_id=str(model.pk)).actor == users.admin

    second = login(second_admin)
    assert approve_url in second.get(model.get_absolute_url()).content.decode()
    response = second.post(approve_url, {"comment": "Agreed."}, follow=True)
    page = response.content.decode()
    assert "now governed by" in page and "chosen for this model" in page
    assert ModelPolicy.objects.get(model=model).policy == strict
    event = AuditEvent.objects.get(action="policy.assign.approved", object_id=str(model.pk))
    assert event.actor == second_admin and event.source == "ui"

    # back to the tier's default, which also approves for staging: looser again, so proposed again
    login(users.admin).post(url, {"policy": ""})
    assert ModelPolicy.objects.get(model=model).policy == strict
    proposal = PolicyAssignment.objects.get(model=model, state="proposed")
    assert proposal.policy is None and any("staging" in reason for reason in proposal.loosens)
    second.post(reverse("model-policy-approve", args=[model.pk, proposal.pk]))
    assert not ModelPolicy.objects.exists()
    assert AuditEvent.objects.filter(action="policy.assign.approved", object_id=str(model.pk)).count() == 2
    assert login(users.admin).post(url, {"policy": "nonsense"}).status_code == 302
    assert Policy.objects.filter(pk=strict.pk).exists()
