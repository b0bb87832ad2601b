"""Approval workflows on PostgreSQL: requests freeze the artifact and evidence, decisions follow the
policy's quorum and separation of duties, the gate says pass / fail / pending with reasons, and
every decision and refused attempt is in the audit log."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from django.db import connection, transaction

from governance.accounts import services as accounts
from governance.accounts.models import Membership, Role
from governance.approvals import rules as R
from governance.approvals import selectors, services
from governance.approvals.models import ApprovalRequest, Decision, Policy, RequestStatus
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.registry import services as registry
from governance.registry.models import CARD_SECTION_KEYS, ModelVersion, Stage
from tests.conftest import assert_error, governed_state

pytestmark = pytest.mark.usefixtures("fast_passwords")

NO_GATES_ONE_APPROVER = {
    "environments": {
        "staging": {"min_approvals": 1, "roles": [{"role": "approver"}]},
        "production": {"min_approvals": 1, "roles": [{"role": "approver"}]},
    },
    "gates": [],
}
APPROVER_AND_REVIEWER = {
    "environments": {"production": {"min_approvals": 2, "roles": [{"role": "approver"}, {"role": "reviewer"}]}},
    "gates": [],
}


def full_card(version, actor):
    with audit_context(source="cli", actor=actor):
        return registry.card_save(
            actor=actor,
            version=version,
            sections={k: f"The {k.replace('_', ' ')} of this model, in full." for k in CARD_SECTION_KEYS},
        )


@pytest.fixture
def use_policy(superuser, users):
    """Give the model a site-wide policy with these rules (created by the site administrator)."""

    def use(model, rules: dict, name: str = "Test policy") -> Policy:
        with audit_context(source="cli", actor=superuser):
            policy = services.policy_create(actor=superuser, name=name, rules=rules)
            services.policy_assign(actor=superuser, policy=policy, model=model)
        return policy

    return use


def request(version, actor, environments=("production",), comment="Ready for review."):
    with audit_context(source="cli", actor=actor):
        return services.request_review(actor=actor, version=version, environments=list(environments), comment=comment)


def decide(req, actor, decision="approve", comment=""):
    with audit_context(source="cli", actor=actor):
        return services.request_decide(actor=actor, request=req, decision=decision, comment=comment)


def gate(version, environment="production", **kw):
    return selectors.gate_check(version=ModelVersion.objects.get(pk=version.pk), environment=environment, **kw)


# --- policies -----------------------------------------------------------------------------------


def test_every_risk_tier_has_a_valid_default_policy(db):
    for tier in ("minimal", "limited", "high", "unacceptable"):
        policy = Policy.objects.get(team__isnull=True, risk_tier=tier)
        rules = R.parse(selectors.policy_revision_current(policy).rules)
        assert rules == R.parse(R.default_rules(tier)), tier
    high = R.parse(R.default_rules("high"))
    assert [g.item for g in high.checklist()] == [key for key, _ in R.DEFAULT_CHECKLIST]
    assert R.parse(R.default_rules("unacceptable")).environments == {}


@pytest.mark.parametrize(
    ("rules", "code", "field"),
    [
        pytest.param(
            {
                "environments": {
                    "production": {"min_approvals": 1, "roles": [{"role": "approver"}, {"role": "reviewer"}]}
                }
            },
            "impossible_quorum",
            "rules.environments.production",
            id="roles-need-more-than-min",
        ),  # fmt: skip
        pytest.param(
            {"environments": {"production": {"min_approvals": 0}}},
            "invalid_rules",
            "rules.environments.production.min_approvals",
            id="zero-approvals",
        ),  # fmt: skip
        pytest.param(
            {"environments": {"production": {"min_approvals": "2"}}},
            "invalid_rules",
            "rules.environments.production.min_approvals",
            id="string-count",
        ),  # fmt: skip
        pytest.param(
            {
                "environments": {"production": {"min_approvals": 1}},
                "gates": [{"kind": "card_completeness", "min": "80"}],
            },
            "invalid_rules",
            "rules.gates.0.card_completeness.min",
            id="string-threshold",
        ),  # fmt: skip
        pytest.param(
            {
                "environments": {"production": {"min_approvals": 1}},
                "gates": [{"kind": "fairness", "features": ["sex"], "dp_ratio_min": 1.5}],
            },
            "invalid_rules",
            "rules.gates.0.fairness.dp_ratio_min",
            id="ratio-above-one",
        ),  # fmt: skip
        pytest.param(
            {"environments": {"production": {"min_approvals": 1}}, "gates": [{"kind": "vibes"}]},
            "invalid_rules",
            "rules.gates.0",
            id="unknown-gate",
        ),  # fmt: skip
        pytest.param(
            {"environments": {"moon": {"min_approvals": 1}}},
            "unknown_environment",  # no environment of that name exists (issue 13: checked against serving)
            "rules.environments.moon",
            id="unknown-environment",
        ),  # fmt: skip
        pytest.param(
            {"environments": {"production": {"min_approvals": 1, "roles": [{"role": "viewer"}]}}},
            "invalid_rules",
            "rules.environments.production.roles.0.role",
            id="role-that-cannot-decide",
        ),  # fmt: skip
        pytest.param({"environments": {}, "gates": [], "extra": 1}, "invalid_rules", "rules.extra", id="unknown-key"),
    ],
)
def test_bad_policies_are_refused_and_nothing_is_stored(api, users, rules, code, field):
    client = api.as_user(users.superuser)
    before = (governed_state(), Policy.objects.count())
    r = client.post("/api/v1/policies/", {"name": "Strict", "rules": rules}, format="json")
    body = assert_error(r, 400, code)
    assert any(key.startswith(field) for key in body["fields"]), body["fields"]
    assert (governed_state(), Policy.objects.count()) == before


def test_only_site_administrators_write_site_wide_policies_and_team_admins_their_own(api, users, team):
    rules = NO_GATES_ONE_APPROVER
    for role in ("author", "approver", "admin"):
        assert_error(api.as_user(getattr(users, role)).post("/api/v1/policies/", {"name": "x", "rules": rules},
                     format="json"), 403)  # fmt: skip
    r = api.as_user(users.admin).post("/api/v1/policies/", {"name": "Team rules", "team": team.pk, "rules": rules},
                                      format="json")  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    assert_error(api.as_user(users.approver).patch(f"/api/v1/policies/{r.json()['id']}/", {"name": "y"}, format="json"),
                 403)  # fmt: skip
    assert_error(api.as_user(users.outsider).get(f"/api/v1/policies/{r.json()['id']}/"), 404)
    r = api.as_user(users.superuser).post("/api/v1/policies/", {"name": "Site rules", "rules": rules}, format="json")
    assert r.status_code == 201 and r.json()["team"] is None and r.json()["revision"] == 1


def test_a_policy_change_is_a_new_revision_and_never_rewrites_open_requests(users, model, version, use_policy):
    policy = use_policy(model, NO_GATES_ONE_APPROVER)
    req = request(version, users.author)
    stricter = {**NO_GATES_ONE_APPROVER, "gates": [{"kind": "metric", "metric": "accuracy", "min": 0.99}]}
    with audit_context(source="cli", actor=users.superuser):
        services.policy_update(actor=users.superuser, policy=policy, rules=stricter, comment="tighter")
    policy.refresh_from_db()
    assert policy.revision == 2 and list(policy.revisions.values_list("number", flat=True)) == [2, 1]
    decide(req, users.approver)
    req.refresh_from_db()
    assert req.policy_revision.number == 1 and req.status == RequestStatus.APPROVED
    assert gate(version).passed
    assert AuditEvent.objects.filter(action="policy.update", object_id=str(policy.pk)).count() == 1


# --- requests and decisions ------------------------------------------------------------------------


def test_request_freezes_the_artifact_and_evidence_and_moves_the_version_into_review(users, model, version, use_policy):
    use_policy(model, NO_GATES_ONE_APPROVER)
    req = request(version, users.author, ["staging", "production"])
    version.refresh_from_db()
    assert version.stage == Stage.IN_REVIEW
    assert req.artifact_sha256 == version.artifact_sha256 and len(req.evidence_digest) == 64
    assert req.evidence["artifact"]["sha256"] == version.artifact_sha256
    assert req.environments == ["staging", "production"] and req.freeze == 1
    assert AuditEvent.objects.filter(action="review.request", object_id=str(req.pk)).count() == 1
    verdict = gate(version)
    assert verdict.verdict == "pending"
    assert [line.status for line in verdict.quorum][:2] == ["passed", "missing"]


def test_the_author_cannot_approve_their_own_version_nor_can_the_requester(api, users, team, model, make_version,
                                                                            use_policy):  # fmt: skip
    use_policy(model, NO_GATES_ONE_APPROVER)
    # the author also holds the approver role: separation of duties still refuses
    Membership.objects.create(user=users.author, team=team, role=Role.APPROVER)
    version = make_version(model)
    req = request(version, users.admin)  # an admin requested, the author registered
    for actor in (users.author, users.admin):
        r = api.as_user(actor).post(f"/api/v1/approval-requests/{req.pk}/decide/", {"decision": "approve"},
                                    format="json")  # fmt: skip
        assert_error(r, 403, "separation_of_duties")
    assert not Decision.objects.exists()
    refused = AuditEvent.objects.filter(action="review.decide.refused", object_id=str(req.pk))
    assert {json.loads(e.changes)["code"] for e in refused} == {"separation_of_duties"} and refused.count() == 2
    assert {e.actor for e in refused} == {users.author, users.admin}
    version.refresh_from_db()
    assert version.stage == Stage.IN_REVIEW


def test_a_ci_token_requests_a_review_but_never_decides(api, users, model, version, use_policy):
    use_policy(model, NO_GATES_ONE_APPROVER)
    with audit_context(source="cli", actor=users.author):
        _, ci = accounts.token_create(actor=users.author, name="ci", scopes=["read", "write", "transition"])
    r = api.with_token(ci).post("/api/v1/approval-requests/", {"version": version.pk, "environments": ["production"]},
                                format="json")  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    req_id = r.json()["id"]
    with audit_context(source="cli", actor=users.approver):
        _, approver_token = accounts.token_create(
            actor=users.approver, name="bot", scopes=["read", "write", "transition"]
        )
    for secret in (ci, approver_token):
        r = api.with_token(secret).post(f"/api/v1/approval-requests/{req_id}/decide/", {"decision": "approve"},
                                        format="json")  # fmt: skip
        assert_error(r, 403, "decision_requires_person")
    assert not Decision.objects.exists()
    assert AuditEvent.objects.filter(action="review.decide.refused", object_id=str(req_id)).count() == 2


def test_a_token_without_the_transition_scope_cannot_request_a_review(api, users, version):
    with audit_context(source="cli", actor=users.author):
        _, writer = accounts.token_create(actor=users.author, name="w", scopes=["read", "write"])
    before = governed_state()
    r = api.with_token(writer).post("/api/v1/approval-requests/", {"version": version.pk,
                                    "environments": ["staging"]}, format="json")  # fmt: skip
    assert_error(r, 403, "token_scope_missing")
    assert changed_only_by_refusals(before, "review.request.refused", "token_scope_missing")


def test_quorum_needs_each_required_role_from_different_people(users, team, model, version, use_policy):
    use_policy(model, APPROVER_AND_REVIEWER)
    req = request(version, users.author)
    decide(req, users.approver)
    req.refresh_from_db()
    assert req.status == RequestStatus.OPEN and gate(version).verdict == "pending"
    lines = {line.label: line for line in gate(version).quorum}
    assert lines["1 approver"].status == "passed" and lines["1 reviewer"].status == "missing"
    # someone who is both approver and reviewer fills the missing reviewer slot (one person, one slot)
    both = accounts_user("both", team, Role.APPROVER, Role.REVIEWER)
    decide(req, both)
    req.refresh_from_db()
    version.refresh_from_db()
    assert req.status == RequestStatus.APPROVED and version.stage == Stage.APPROVED
    verdict = gate(version)
    assert verdict.passed, verdict.as_dict()
    assert AuditEvent.objects.filter(action="review.approved", object_id=str(req.pk)).count() == 1


def accounts_user(name, team, *roles):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(name, f"{name}@example.com", "pw")
    for role in roles:
        Membership.objects.create(user=user, team=team, role=role)
    return user


def test_two_approvers_from_the_same_role_do_not_make_a_reviewer(users, team, model, version, use_policy):
    use_policy(model, APPROVER_AND_REVIEWER)
    req = request(version, users.author)
    decide(req, users.approver)
    decide(req, accounts_user("approver2", team, Role.APPROVER))
    req.refresh_from_db()
    assert req.status == RequestStatus.OPEN
    assert "1 reviewer" in {line.label for line in gate(version).quorum if line.status == "missing"}


def test_an_independent_reviewer_from_another_team_sees_and_decides(api, users, team, other_team, model, version,
                                                                     use_policy):  # fmt: skip
    use_policy(model, {"environments": {"production": {"min_approvals": 2, "roles": [
        {"role": "approver"}, {"role": "reviewer", "other_team": True}]}}, "gates": []})  # fmt: skip
    req = request(version, users.author)
    independent = accounts_user("risk-office", other_team, Role.REVIEWER)
    # the owning team's own reviewer cannot fill the independent slot
    decide(req, users.reviewer)
    decide(req, users.approver)
    req.refresh_from_db()
    assert req.status == RequestStatus.OPEN
    client = api.as_user(independent)
    queue = client.get("/api/v1/approval-requests/?awaiting_me=true").json()["results"]
    assert [r["id"] for r in queue] == [req.pk]
    assert client.get(f"/api/v1/versions/{version.pk}/gate/?environment=production").status_code == 404
    r = client.post(f"/api/v1/approval-requests/{req.pk}/decide/", {"decision": "approve"}, format="json")
    assert r.status_code == 200, r.content[:300]
    assert r.json()["status"] == "approved"
    # an outsider without a decision role sees nothing
    assert api.as_user(users.outsider).get(f"/api/v1/approval-requests/{req.pk}/").status_code == 404


def test_reject_and_request_changes_need_a_comment_and_close_the_review(api, users, model, version, use_policy):
    use_policy(model, APPROVER_AND_REVIEWER)
    req = request(version, users.author)
    reviewer = api.as_user(users.reviewer)
    url = f"/api/v1/approval-requests/{req.pk}/decide/"
    before = governed_state()
    assert_error(reviewer.post(url, {"decision": "reject"}, format="json"), 400, "comment_required")
    assert_error(reviewer.post(url, {"decision": "maybe", "comment": "hm"}, format="json"), 400, "invalid_decision")
    assert_error(reviewer.post(url, {"decision": "approve", "mood": "good"}, format="json"), 400, "unknown_field")
    assert governed_state()["versions"] == before["versions"] and not Decision.objects.exists()
    r = reviewer.post(url, {"decision": "request_changes", "comment": "The card lacks the evaluation data."},
                      format="json")  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "changes_requested"
    version.refresh_from_db()
    assert version.stage == Stage.CHANGES_REQUESTED
    # decisions are final: nobody decides on a closed review
    assert_error(api.as_user(users.approver).post(url, {"decision": "approve"}, format="json"), 409, "request_closed")
    assert gate(version).verdict == "fail"
    # the author fixes the card and asks again; a rejection ends it
    full_card(version, users.author)
    again = request(version, users.author)
    decide(again, users.reviewer, "reject", "Not fit for credit decisions.")
    version.refresh_from_db()
    assert version.stage == Stage.REJECTED and gate(version).verdict == "fail"
    actions = list(
        AuditEvent.objects.filter(action__startswith="review.").order_by("seq").values_list("action", flat=True)
    )
    assert actions == ["review.request", "review.decide.refused", "review.decide.refused", "review.decide",
                       "review.changes_requested", "review.decide.refused", "review.request", "review.decide",
                       "review.rejected"]  # fmt: skip


def test_withdrawing_sends_the_version_back_to_draft(api, users, model, version, use_policy):
    use_policy(model, NO_GATES_ONE_APPROVER)
    req = request(version, users.author)
    assert_error(
        api.as_user(users.viewer).post(f"/api/v1/approval-requests/{req.pk}/withdraw/", {}, format="json"), 403
    )
    r = api.as_user(users.author).post(f"/api/v1/approval-requests/{req.pk}/withdraw/", {"reason": "wrong data"},
                                       format="json")  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "withdrawn" and r.json()["stage"] == "draft"
    assert gate(version).verdict == "pending"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"environments": ["moon"]}, "unknown_environment"),
        ({"environments": []}, "invalid"),
        ({"environments": "production"}, "invalid"),
        ({"environments": ["production"], "priority": "high"}, "unknown_field"),
    ],
)
def test_bad_review_requests_change_nothing(api, users, version, payload, code):
    client = api.as_user(users.author)
    before = governed_state()
    assert_error(
        client.post("/api/v1/approval-requests/", {"version": version.pk, **payload}, format="json"), 400, code
    )
    assert changed_only_by_refusals(before, "review.request.refused", code) and not ApprovalRequest.objects.exists()


def changed_only_by_refusals(before: dict, action: str, code: str) -> bool:
    """Nothing governed changed but the audit log, and what it gained (if anything) is the service's
    record of this refusal: a refused request is evidence too (``review.request.refused``)."""
    after = governed_state()
    assert {k: v for k, v in after.items() if k != "events"} == {k: v for k, v in before.items() if k != "events"}
    assert after["events"][: len(before["events"])] == before["events"]
    added = AuditEvent.objects.filter(seq__in=[seq for seq, _ in after["events"][len(before["events"]) :]])
    assert [(e.action, json.loads(e.changes)["code"]) for e in added] in ([], [(action, code)]), list(added)
    return True


def test_prohibited_uses_cannot_even_be_put_up_for_review(api, users, make_model, make_version):
    version = make_version(make_model("social-scoring", risk_tier="unacceptable"))
    r = api.as_user(users.author).post("/api/v1/approval-requests/", {"version": version.pk,
                                       "environments": ["staging"]}, format="json")  # fmt: skip
    body = assert_error(r, 400, "environment_not_covered")
    assert "no environment" in body["detail"]


# --- gates -----------------------------------------------------------------------------------------


def test_default_high_risk_policy_gates_report_missing_then_pass(api, users, make_model, make_version):
    version = make_version(make_model("credit-limit", risk_tier="high"), metrics={"accuracy": 0.91})
    client = api.as_user(users.viewer)
    body = client.get(f"/api/v1/versions/{version.pk}/gate/?environment=production").json()
    assert body["verdict"] == "pending" and body["request_id"] is None
    statuses = {line["label"]: line["status"] for line in body["gates"]}
    assert statuses["Model card at least 90% complete"] == "missing"
    assert sum(s == "missing" for s in statuses.values()) == 7  # the card and the six checks
    full_card(version, users.author)
    for key, _ in R.DEFAULT_CHECKLIST:
        r = api.as_user(users.reviewer).post(f"/api/v1/versions/{version.pk}/checklist/", {"item": key,
                                             "note": "checked"}, format="json")  # fmt: skip
        assert r.status_code == 200 and r.json() == {"item": key, "ticked": True}
    req = request(version, users.author, ["production"])
    decide(req, users.reviewer)
    decide(req, users.approver)
    body = client.get(f"/api/v1/versions/{version.pk}/gate/?environment=production").json()
    assert body["verdict"] == "pass", body
    assert all(line["status"] == "passed" for line in body["gates"] + body["quorum"])
    staging = client.get(f"/api/v1/versions/{version.pk}/gate/?environment=staging").json()
    assert staging["verdict"] == "pending" and "No review has been requested for staging" in json.dumps(staging)


def test_gates_fail_on_bad_evidence_and_say_why(users, model, make_version, use_policy):
    use_policy(model, {**NO_GATES_ONE_APPROVER, "gates": [
        {"kind": "metric", "metric": "accuracy", "min": 0.95},
        {"kind": "metric", "metric": "auc", "min": 0.7},
        {"kind": "fairness", "features": ["sex"]},
        {"kind": "rollback_target", "environments": ["production"]},
    ]})  # fmt: skip
    version = make_version(model, metrics={"accuracy": 0.9})
    verdict = gate(version)
    by_kind = [(line.kind, line.status) for line in verdict.gates]
    assert by_kind == [("metric", "failed"), ("metric", "missing"), ("fairness", "missing"),
                       ("rollback_target", "failed")]  # fmt: skip
    assert "accuracy = 0.9 (registered metrics)" in verdict.gates[0].detail and verdict.verdict == "fail"
    assert "nothing to roll back to" in verdict.gates[3].detail


def test_the_gate_endpoint_refuses_bad_input_and_hides_other_teams(api, users, version):
    client = api.as_user(users.viewer)
    # a well-formed name of no environment is not found; a malformed one is bad input
    assert_error(client.get(f"/api/v1/versions/{version.pk}/gate/?environment=moon"), 404, "unknown_environment")
    assert_error(client.get(f"/api/v1/versions/{version.pk}/gate/?environment=Moon!"), 400, "invalid_environment")
    assert_error(client.get(f"/api/v1/versions/{version.pk}/gate/"), 400, "environment_required")
    assert_error(api.as_user(users.outsider).get(f"/api/v1/versions/{version.pk}/gate/?environment=staging"), 404)
    assert_error(client.get("/api/v1/versions/999999/gate/?environment=staging"), 404)
    assert_error(client.post(f"/api/v1/versions/{version.pk}/checklist/", {"item": "x"}, format="json"), 403)
    assert_error(api.as_user(users.reviewer).post(f"/api/v1/versions/{version.pk}/checklist/", {"item": "nope"},
                 format="json"), 400, "unknown_checklist_item")  # fmt: skip


# --- stale evidence and expiry -------------------------------------------------------------------------


def test_new_evidence_after_the_freeze_dismisses_approvals(users, model, version, use_policy):
    use_policy(model, NO_GATES_ONE_APPROVER)
    req = request(version, users.author)
    decide(req, users.approver)
    version.refresh_from_db()
    assert version.stage == Stage.APPROVED and gate(version).passed
    # the artifact inspection reports new findings after the approval: new evidence
    with audit_context(source="task"):
        registry.version_record_inspection(version_id=version.pk, metadata={"sha256": version.artifact_sha256,
                                                                            "format": "joblib", "size": 66})  # fmt: skip
    req.refresh_from_db()
    version.refresh_from_db()
    assert req.status == RequestStatus.OPEN and req.freeze == 2 and "artifact" in req.stale_reason
    assert version.stage == Stage.IN_REVIEW
    verdict = gate(version)
    assert verdict.verdict == "pending" and "0 of 1" in " ".join(line.detail for line in verdict.quorum)
    assert AuditEvent.objects.filter(action="review.stale", object_id=str(req.pk)).count() == 1
    # the approver decides again on the new freeze
    decide(req, users.approver)
    assert gate(version).passed


def test_a_changed_artifact_digest_invalidates_the_approval_even_without_a_signal(users, model, version, use_policy):
    use_policy(model, NO_GATES_ONE_APPROVER)
    decide(request(version, users.author), users.approver)
    assert gate(version).passed
    ModelVersion.objects.filter(pk=version.pk).update(artifact_sha256="0" * 64)  # swapped behind Charter's back
    verdict = gate(version)
    assert verdict.verdict == "pending"
    assert any("changed after the review was frozen" in line.detail for line in verdict.quorum)


def test_an_expired_approval_no_longer_passes_the_gate(users, model, version, use_policy):
    use_policy(model, {"environments": {"production": {"min_approvals": 1, "expiry_days": 30}}, "gates": []})
    decide(request(version, users.author), users.approver)
    approval = Decision.objects.get()
    assert approval.expires_at - approval.decided_at == dt.timedelta(days=30)
    assert gate(version).passed
    later = approval.expires_at + dt.timedelta(seconds=1)
    verdict = gate(version, now=later)
    assert verdict.verdict == "pending" and "1 expired (approver)" in " ".join(line.detail for line in verdict.quorum)


# --- concurrency -----------------------------------------------------------------------------------------


def _race(actors, req_pk, decision="approve"):
    """Every actor decides on the request at the same moment, each on its own connection."""
    barrier = threading.Barrier(len(actors))
    outcomes = {}

    def run(actor):
        try:
            barrier.wait()
            with audit_context(source="cli", actor=actor):
                services.request_decide(actor=actor, request=ApprovalRequest.objects.get(pk=req_pk),
                                        decision=decision, comment="race")  # fmt: skip
            outcomes[actor.username] = "ok"
        except Exception as exc:  # the refusal is the outcome
            outcomes[actor.username] = getattr(exc, "code", type(exc).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(a,)) for a in actors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_concurrent_decisions_count_once_and_close_the_request_once(users, team, model, version, use_policy):
    use_policy(model, NO_GATES_ONE_APPROVER)
    req = request(version, users.author)
    second = accounts_user("approver2", team, Role.APPROVER)
    outcomes = _race([users.approver, second], req.pk)
    # quorum is one: the first decision approves, the second finds the request closed
    assert sorted(outcomes.values()) == ["ok", "request_closed"], outcomes
    req.refresh_from_db()
    assert req.status == RequestStatus.APPROVED and Decision.objects.filter(request=req).count() == 1
    assert AuditEvent.objects.filter(action="review.approved").count() == 1
    assert AuditEvent.objects.filter(action="version.transition", changes__contains='"approved"').count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals_toward_a_quorum_of_two_are_both_counted(users, team, model, version, use_policy):
    use_policy(model, APPROVER_AND_REVIEWER)
    req = request(version, users.author)
    outcomes = _race([users.approver, users.reviewer], req.pk)
    assert outcomes == {"approver": "ok", "reviewer": "ok"}
    req.refresh_from_db()
    assert req.status == RequestStatus.APPROVED
    assert Decision.objects.filter(request=req).count() == 2
    assert AuditEvent.objects.filter(action="review.approved").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_person_deciding_twice_at_once_is_counted_once(users, model, version, use_policy):
    use_policy(model, APPROVER_AND_REVIEWER)
    req = request(version, users.author)
    barrier = threading.Barrier(2)
    codes = []

    def run():
        barrier.wait()
        try:
            with audit_context(source="cli", actor=users.reviewer), transaction.atomic():
                services.request_decide(actor=users.reviewer, request=ApprovalRequest.objects.get(pk=req.pk),
                                        decision="approve")  # fmt: skip
            codes.append("ok")
        except Exception as exc:
            codes.append(getattr(exc, "code", type(exc).__name__))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == ["already_decided", "ok"], codes
    assert Decision.objects.filter(request=req).count() == 1


# --- notifications --------------------------------------------------------------------------------------


def test_reviewers_are_told_about_requests_decisions_and_stale_evidence(users, model, version, use_policy, settings,
                                                                         mailoutbox, django_capture_on_commit_callbacks):  # fmt: skip
    from governance.notifications import services as notifications
    from governance.notifications.models import Notification, WebhookDelivery

    use_policy(model, APPROVER_AND_REVIEWER)
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True  # a receiver on loopback
    with audit_context(source="cli", actor=users.admin):
        hook, _ = notifications.webhook_create(actor=users.admin, team=model.team, url="http://127.0.0.1:9/hook")
    with django_capture_on_commit_callbacks(execute=False):
        req = request(version, users.author)
    asked = Notification.objects.filter(event="review.requested")
    assert {n.recipient.username for n in asked} == {"reviewer", "approver"}  # decision roles, not the author
    assert all(n.url == req.get_absolute_url() for n in asked)
    delivery = WebhookDelivery.objects.get(webhook=hook, event="review.requested")
    assert delivery.payload["data"]["request"]["id"] == req.pk
    assert delivery.payload["data"]["request"]["evidence_digest"] == req.evidence_digest

    with django_capture_on_commit_callbacks(execute=True):
        decide(req, users.reviewer)
    told = Notification.objects.filter(event="review.decided")
    assert [n.recipient.username for n in told] == ["author"]
    assert any("[Charter]" in m.subject and "author@example.com" in m.to for m in mailoutbox)

    with audit_context(source="task"):
        registry.version_record_inspection(version_id=version.pk, metadata={"sha256": version.artifact_sha256})
    stale = Notification.objects.filter(event="review.stale")
    assert {n.recipient.username for n in stale} == {"reviewer", "approver"}
    assert "no longer count" in stale.first().body


def test_approvals_about_to_expire_are_announced_once(users, model, version, use_policy):
    from governance.notifications.models import Notification

    use_policy(model, {"environments": {"production": {"min_approvals": 1, "expiry_days": 10}}, "gates": []})
    decide(request(version, users.author), users.approver)
    with audit_context(source="task"):
        assert services.approvals_expiring_notify(within_days=14) == 1
        assert services.approvals_expiring_notify(within_days=14) == 0
    told = Notification.objects.filter(event="approval.expiring")
    assert {n.recipient.username for n in told} == {"author", "approver"}


def test_policy_reads_revisions_and_assignment_by_role(api, users, team, model, use_policy):
    policy = use_policy(model, NO_GATES_ONE_APPROVER)
    listed = api.as_user(users.viewer).get("/api/v1/policies/").json()["results"]
    assert {p["risk_tier"] for p in listed if p["team"] is None} >= {"minimal", "limited", "high", "unacceptable"}
    revisions = api.as_user(users.viewer).get(f"/api/v1/policies/{policy.pk}/revisions/").json()["results"]
    assert [r["number"] for r in revisions] == [1]
    url = "/api/v1/policies/assign/"
    back_to_default = {"model": model.pk, "policy": None}
    for role in ("author", "approver"):
        assert_error(api.as_user(getattr(users, role)).post(url, back_to_default, format="json"), 403)
    assert_error(api.as_user(users.outsider).post(url, back_to_default, format="json"), 404, "model_not_found")
    # the tier's default lets approvals live 180 days instead of 90: looser, so a second admin approves it
    r = api.as_user(users.admin).post(url, back_to_default, format="json")
    assert r.status_code == 202, r.content[:300]
    body = r.json()
    assert body["policy"] == policy.pk and body["pending_assignment"]["state"] == "proposed"
    assert "production: approvals expire after 180 days instead of after 90 days." in body["pending_assignment"][
        "loosens"]  # fmt: skip
    second_admin = accounts_user("admin2", team, Role.ADMIN)
    approve = f"/api/v1/policies/assignments/{body['pending_assignment']['id']}/approve/"
    r = api.as_user(second_admin).post(approve, {}, format="json")
    assert r.status_code == 200 and r.json()["state"] == "adopted", r.content[:300]
    default = Policy.objects.get(team__isnull=True, risk_tier=model.risk_tier)
    assert selectors.policy_for_model(model) == default
    assert_error(api.as_user(users.admin).post(url, {"model": model.pk, "policy": 10**6}, format="json"), 404)
    assert AuditEvent.objects.filter(action="model.policy", object_id=str(model.pk)).count() == 1  # the site admin's
    assert AuditEvent.objects.filter(action="policy.assign.approved", object_id=str(model.pk)).count() == 1


def test_review_and_policy_lists_run_a_fixed_number_of_queries(api, users, model, make_version, use_policy):
    from django.test.utils import CaptureQueriesContext

    use_policy(model, APPROVER_AND_REVIEWER)

    def add(n):
        for _ in range(n):
            req = request(make_version(model), users.author)
            decide(req, users.reviewer)

    def count(client, url):
        client.get(url)
        with CaptureQueriesContext(connection) as captured:
            r = client.get(url)
        assert r.status_code == 200, r.content[:300]
        return len(captured), len(r.json()["results"])

    client = api.as_user(users.approver)
    add(2)
    small = count(client, "/api/v1/approval-requests/"), count(client, "/api/v1/policies/")
    add(4)
    large = count(client, "/api/v1/approval-requests/"), count(client, "/api/v1/policies/")
    assert (small[0][1], large[0][1]) == (2, 6)
    assert small[0][0] == large[0][0] and small[1][0] == large[1][0], (small, large)
    awaiting = count(client, "/api/v1/approval-requests/?awaiting_me=true")
    assert awaiting[1] == 6


def test_evidence_that_lands_before_any_decision_joins_the_freeze_quietly(users, model, version, use_policy):
    from governance.notifications.models import Notification

    use_policy(model, NO_GATES_ONE_APPROVER)
    req = request(version, users.author)
    with audit_context(source="task"):  # the artifact inspection finishing just after the request
        registry.version_record_inspection(version_id=version.pk, metadata={"sha256": version.artifact_sha256})
    req.refresh_from_db()
    assert req.freeze == 2 and req.evidence["artifact"]["inspection"] == {"sha256": version.artifact_sha256}
    assert not Notification.objects.filter(event="review.stale").exists()
    assert AuditEvent.objects.filter(action="review.stale", object_id=str(req.pk)).count() == 1
    decide(req, users.approver)
    assert gate(version).passed


def test_evaluation_fairness_and_metric_gates_read_charters_own_evaluations(users, model, version, use_policy):
    from governance.evaluations import services as evaluations
    from tests.test_evaluations_api import credit_frame, csv_upload

    use_policy(model, {**NO_GATES_ONE_APPROVER, "gates": [
        {"kind": "evaluation", "evaluation": "performance"},
        {"kind": "metric", "metric": "accuracy", "min": 0.95},
        {"kind": "fairness", "features": ["sex"], "dp_ratio_min": 0.8},
    ]})  # fmt: skip
    assert [line.status for line in gate(version).gates] == ["missing", "failed", "missing"]  # registered 0.9

    def finished(kind, result, sensitive=()):
        with audit_context(source="cli", actor=users.author):
            run = evaluations.run_request(actor=users.author, version=version, kind=kind, data=csv_upload(credit_frame()),
                                          target_column="default", sensitive_features=list(sensitive)).run  # fmt: skip
        with audit_context(source="task"):
            evaluations.run_start(run_id=run.pk, host="h")
            evaluations.run_finish(run_id=run.pk, result=result, figures={}, environment={},
                                   artifact_sha256=version.artifact_sha256)  # fmt: skip
        return run

    perf = finished("performance", {"summary": {}, "metrics": {"accuracy": 0.97}})
    fair = finished("fairness", {"summary": {}, "overall": {"demographic_parity_ratio": 0.62}}, sensitive=["sex"])
    lines = gate(version).gates
    assert [line.status for line in lines] == ["passed", "passed", "failed"]
    assert f"Run #{perf.pk}" in lines[0].detail and "performance evaluation" in lines[1].detail
    assert f"Run #{fair.pk}" in lines[2].detail and "0.620" in lines[2].detail
    assert lines[0].link == perf.get_absolute_url()


def test_the_preprocessing_gate_compares_the_fingerprint_an_evaluation_ran_with(users, model, make_version, use_policy):
    from governance.evaluations import services as evaluations
    from tests.test_evaluations_api import credit_frame, csv_upload

    use_policy(model, {**NO_GATES_ONE_APPROVER, "gates": [{"kind": "preprocessing_fingerprint"}]})
    assert gate(make_version(model)).gates[0].status == "missing"  # nothing registered
    version = make_version(model, preprocessing_fingerprint="sha256:train-pipeline-v7")

    def evaluated(fingerprint):
        with audit_context(source="cli", actor=users.author):
            run = evaluations.run_request(
                actor=users.author, version=version, kind="performance", data=csv_upload(credit_frame()),
                target_column="default", parameters={"preprocessing_fingerprint": fingerprint},
            ).run  # fmt: skip
        with audit_context(source="task"):
            evaluations.run_start(run_id=run.pk, host="h")
            evaluations.run_finish(run_id=run.pk, result={"metrics": {}}, figures={}, environment={},
                                   artifact_sha256=version.artifact_sha256)  # fmt: skip
        return gate(version).gates[0]

    assert gate(version).gates[0].status == "missing"
    assert evaluated("sha256:serving-pipeline-v6").status == "failed"
    line = evaluated("sha256:train-pipeline-v7")
    assert line.status == "passed" and "same preprocessing" in line.detail


def test_an_outsider_counts_only_where_a_requested_quorum_asks_for_one(api, users, other_team, model, version,
                                                                       use_policy):  # fmt: skip
    use_policy(model, {"environments": {
        "staging": {"min_approvals": 1, "roles": []},
        "production": {"min_approvals": 2, "roles": [{"role": "approver"}, {"role": "reviewer", "other_team": True}]},
    }, "gates": []})  # fmt: skip
    req = request(version, users.author, ["staging"])  # staging's quorum wants nobody from outside
    assert not (req.wants_other_team_reviewer or req.wants_other_team_approver)
    outsider = accounts_user("risk-office", other_team, Role.REVIEWER)
    assert api.as_user(outsider).get(f"/api/v1/approval-requests/{req.pk}/").status_code == 404
    with pytest.raises(Exception) as refused:
        decide(req, outsider)
    assert getattr(refused.value, "status", None) in (403, 404)
    req.refresh_from_db()
    assert req.status == RequestStatus.OPEN and gate(version, "staging").verdict == "pending"
    decide(req, users.reviewer)  # a member of the owning team
    assert gate(version, "staging").passed


def test_a_token_ticks_the_checklist_only_with_the_transition_scope(api, users, make_model, make_version):
    from governance.accounts import services as accounts_services

    version = make_version(make_model("limits", risk_tier="high"))
    with audit_context(source="cli", actor=users.reviewer):
        _, writer = accounts_services.token_create(actor=users.reviewer, name="w", scopes=["read", "write"])
    url = f"/api/v1/versions/{version.pk}/checklist/"
    assert_error(api.with_token(writer).post(url, {"item": "rollback-plan"}, format="json"), 403, "token_scope_missing")
