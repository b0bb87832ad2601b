"""Gate integrity: the policy cannot be chosen by its author, the model fields a review relied on
are evidence, and the gate never passes a version that must not be served (retired, deprecated,
rejected, or whose stored artifact bytes changed), whatever approvals it holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from governance.approvals.models import ApprovalRequest, Policy, RequestStatus
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.notifications.models import Notification
from governance.registry import artifacts
from governance.registry import services as registry
from governance.registry.models import ModelVersion, RegisteredModel, Stage
from tests.conftest import assert_error, governed_state, move, signed_in
from tests.test_approvals import NO_GATES_ONE_APPROVER, decide, full_card, request

pytestmark = pytest.mark.usefixtures("fast_passwords")


@pytest.fixture
def assign_policy(superuser):
    """Give the model a site-wide policy of its own, as the site administrator."""
    from governance.approvals import services as approvals

    def assign(model, rules: dict) -> Policy:
        with audit_context(source="cli", actor=superuser):
            policy = approvals.policy_create(actor=superuser, name=f"Policy of {model.name}", rules=rules)
            approvals.policy_assign(actor=superuser, policy=policy, model=model)
        return policy

    return assign


def gate(client, version, environment="production") -> dict:
    r = client.get(f"/api/v1/versions/{version.pk}/gate/?environment={environment}")
    assert r.status_code == 200, r.content[:300]
    return r.json()


def failed_lines(body: dict, kind: str) -> list[dict]:
    return [line for line in body["gates"] if line["kind"] == kind and line["status"] == "failed"]


def events(action: str, obj) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, object_id=str(obj.pk)).order_by("seq"))


# --- finding 2: an author chose the policy by re-tiering the model ---------------------------------


def test_finding2_an_author_cannot_retier_a_model_to_choose_its_policy(api, users, make_model, make_version):
    model = make_model("social-scoring", risk_tier="unacceptable")
    version = make_version(model)
    full_card(version, users.author)
    author = api.as_user(users.author)
    ask = {"version": version.pk, "environments": ["staging"]}
    assert_error(author.post("/api/v1/approval-requests/", ask, format="json"), 400, "environment_not_covered")

    # the attack: one PATCH of the tier by the author, then the review the policy refused
    before = governed_state()
    body = assert_error(
        author.patch(f"/api/v1/models/{model.pk}/", {"risk_tier": "minimal"}, format="json"),
        400, "risk_tier_is_an_action",
    )  # fmt: skip
    assert f"/api/v1/models/{model.pk}/risk-tier/" in body["detail"] and "risk_tier" in body["fields"]
    assert_error(
        author.post(f"/api/v1/models/{model.pk}/risk-tier/", {"risk_tier": "minimal", "reason": "mine"}, format="json"),
        403,
    )  # fmt: skip
    assert governed_state() == before
    assert RegisteredModel.objects.get(pk=model.pk).risk_tier == "unacceptable"
    assert_error(author.post("/api/v1/approval-requests/", ask, format="json"), 400, "environment_not_covered")
    denied = AuditEvent.objects.filter(action="permission.denied", object_id__endswith="/risk-tier/")
    assert [e.actor for e in denied] == [users.author]
    # sending the current tier back with other fields is no change of tier: allowed
    r = author.patch(f"/api/v1/models/{model.pk}/", {"risk_tier": "unacceptable", "use_case": "x"}, format="json")
    assert r.status_code == 200 and r.json()["risk_tier"] == "unacceptable"

    # the governed action: a team admin, with a reason
    admin = api.as_user(users.admin)
    url = f"/api/v1/models/{model.pk}/risk-tier/"
    assert_error(admin.post(url, {"risk_tier": "minimal", "reason": "  "}, format="json"), 400)
    assert_error(admin.post(url, {"risk_tier": "unacceptable", "reason": "same"}, format="json"), 409,
                 "risk_tier_unchanged")  # fmt: skip
    r = admin.post(url, {"risk_tier": "minimal", "reason": "Reclassified by the risk office (ticket RISK-12)."},
                   format="json", HTTP_X_REQUEST_ID="retier-1")  # fmt: skip
    assert r.status_code == 200, r.content[:300]
    assert r.json()["risk_tier"] == "minimal"
    [event] = events("model.retier", model)
    assert event.actor == users.admin and event.request_id == "retier-1"
    changes = json.loads(event.changes)
    assert changes["before"] == {"risk_tier": "unacceptable"} and changes["after"] == {"risk_tier": "minimal"}
    assert changes["reason"] == "Reclassified by the risk office (ticket RISK-12)."
    assert author.post("/api/v1/approval-requests/", ask, format="json").status_code == 201


def test_finding2_retier_refreezes_approved_reviews_under_the_new_tiers_policy(api, users, make_model, make_version,
                                                                                login):  # fmt: skip
    model = make_model("credit-limit", risk_tier="minimal")
    version = make_version(model)
    full_card(version, users.author)
    req = request(version, users.author, ["staging"])
    decide(req, users.approver)
    version.refresh_from_db()
    viewer = api.as_user(users.viewer)
    assert version.stage == Stage.APPROVED and gate(viewer, version, "staging")["verdict"] == "pass"

    # an approver raises the tier through the model page's form
    page = login(users.approver).get(model.get_absolute_url()).content.decode()
    assert f'action="/models/{model.pk}/risk-tier/"' in page
    assert (
        f'action="/models/{model.pk}/risk-tier/"'
        not in login(users.author).get(model.get_absolute_url()).content.decode()
    )
    r = login(users.approver).post(
        f"/models/{model.pk}/risk-tier/", {"risk_tier": "high", "reason": "Credit decisions."}
    )
    assert r.status_code == 302
    req.refresh_from_db()
    version.refresh_from_db()
    high = Policy.objects.get(team__isnull=True, risk_tier="high")
    assert req.status == RequestStatus.OPEN and req.freeze == 2 and version.stage == Stage.IN_REVIEW
    assert req.policy_revision.policy == high and "risk tier" in req.stale_reason
    [stale] = events("review.stale", req)
    assert (
        stale.actor == users.approver
        and json.loads(stale.changes)["after"]["policy_revision"] == req.policy_revision_id
    )
    body = gate(viewer, version, "staging")
    assert body["verdict"] != "pass" and body["policy"]["name"] == high.name
    assert Notification.objects.filter(event="review.stale", recipient=users.reviewer).exists()

    # and down to a tier whose policy approves nothing: the review can no longer pass anywhere
    with audit_context(source="cli", actor=users.admin):
        registry.model_retier(actor=users.admin, model=model, risk_tier="unacceptable", reason="Prohibited use.")
    body = gate(viewer, version, "staging")
    assert body["verdict"] == "fail"
    assert any(line["kind"] == "policy" and line["status"] == "failed" for line in body["quorum"])


def test_finding2_the_model_pages_retier_form_refuses_authors_and_wants_a_reason(users, model):
    url = f"/models/{model.pk}/risk-tier/"
    author, admin = signed_in(users.author), signed_in(users.admin)
    before = governed_state()
    r = author.post(url, {"risk_tier": "minimal", "reason": "Cheaper reviews."})
    assert r.status_code == 403 and "risk tier: admin, approver." in r.content.decode()
    r = admin.post(url, {"risk_tier": "minimal", "reason": ""})
    assert r.status_code == 400 and "This field is required." in r.content.decode()
    assert governed_state() == before and RegisteredModel.objects.get(pk=model.pk).risk_tier == "limited"
    assert [e.actor for e in AuditEvent.objects.filter(action="permission.denied")] == [users.author]
    r = admin.post(url, {"risk_tier": "minimal", "reason": "A demo of the help desk."}, follow=True)
    assert r.status_code == 200 and "from the limited to the minimal risk tier" in r.content.decode()
    assert len(events("model.retier", model)) == 1


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"use_case": "Marketing offers instead of credit"}, "use case"),
        ({"description": "Now also scores small businesses."}, "description"),
        ({"business_kpis": [{"name": "approval rate", "target": "70", "unit": "%"}]}, "business KPIs"),
        ({"owners": ["reviewer"]}, "owners"),
    ],
    ids=["use-case", "description", "kpis", "owners"],
)
def test_finding2_reviewed_model_fields_changed_after_approval_make_it_stale(api, users, model, version, assign_policy,
                                                                              change, words):  # fmt: skip
    assign_policy(model, NO_GATES_ONE_APPROVER)
    req = request(version, users.author)
    decide(req, users.approver)
    viewer = api.as_user(users.viewer)
    assert gate(viewer, version)["verdict"] == "pass"
    r = api.as_user(users.author).patch(f"/api/v1/models/{model.pk}/", change, format="json")
    assert r.status_code == 200, r.content[:300]
    req.refresh_from_db()
    version.refresh_from_db()
    assert req.status == RequestStatus.OPEN and req.freeze == 2 and version.stage == Stage.IN_REVIEW
    assert f"the model's {words}" in req.stale_reason
    assert len(events("model.update", model)) == 1 and len(events("review.stale", req)) == 1
    assert gate(viewer, version)["verdict"] == "pending"
    assert Notification.objects.filter(event="review.stale", recipient=users.approver).exists()
    decide(req, users.approver)  # the approver looks again, at the new freeze
    assert gate(viewer, version)["verdict"] == "pass"


def test_finding2_the_model_name_is_not_evidence(api, users, model, version, assign_policy):
    assign_policy(model, NO_GATES_ONE_APPROVER)
    decide(request(version, users.author), users.approver)
    assert api.as_user(users.author).patch(f"/api/v1/models/{model.pk}/", {"name": "credit-scoring-eu"},
                                           format="json").status_code == 200  # fmt: skip
    assert ModelVersion.objects.get(pk=version.pk).stage == Stage.APPROVED
    assert not AuditEvent.objects.filter(action="review.stale").exists()


# --- finding 3: the gate passed versions that must never be served -------------------------------


def _approved(users, model, version, assign_policy):
    assign_policy(model, NO_GATES_ONE_APPROVER)
    decide(request(version, users.author), users.approver)
    version.refresh_from_db()
    assert version.stage == Stage.APPROVED
    return version


def _stored(version) -> Path:
    return Path(django_settings.STORAGES["artifacts"]["OPTIONS"]["location"]) / version.artifact_path


@pytest.mark.parametrize(
    ("path", "word"),
    [((Stage.DEPRECATED,), "deprecated"), ((Stage.DEPRECATED, Stage.RETIRED), "retired")],
    ids=["deprecated", "retired"],
)
def test_finding3_deprecated_and_retired_versions_fail_the_gate(api, users, model, version, assign_policy, path, word):
    version = _approved(users, model, version, assign_policy)
    viewer = api.as_user(users.viewer)
    assert gate(viewer, version)["verdict"] == "pass"
    move(version, *path, actor=users.operator)
    body = gate(viewer, version)
    assert body["verdict"] == "fail", body
    [line] = failed_lines(body, "stage")
    assert f"is {word}" in line["detail"] and "never served" in line["detail"]
    # the approvals themselves still count: only the version's own state fails it
    assert all(line["status"] == "passed" for line in body["quorum"])


def test_finding3_a_rejected_version_fails_the_gate(api, users, model, version, assign_policy):
    assign_policy(model, NO_GATES_ONE_APPROVER)
    decide(request(version, users.author), users.approver, "reject", "Not fit for credit decisions.")
    body = gate(api.as_user(users.viewer), version)
    assert body["verdict"] == "fail"
    [line] = failed_lines(body, "stage")
    assert "is rejected" in line["detail"]


def test_finding3_a_swapped_artifact_fails_the_gate_after_the_scrub(api, users, model, version, assign_policy,
                                                                     make_version):  # fmt: skip
    from workers.integrity import scrub_artifacts

    version = _approved(users, model, version, assign_policy)
    other = make_version(model)  # another artifact, intact
    viewer = api.as_user(users.viewer)
    assert gate(viewer, version)["verdict"] == "pass"
    original = _stored(version).read_bytes()
    _stored(version).write_bytes(b"\x80\x04 swapped behind Charter's back")  # same path, other bytes

    report = scrub_artifacts.apply().get()
    assert report["checked"] == 2 and report["failed"] == [version.artifact_sha256]
    body = gate(viewer, version)
    assert body["verdict"] == "fail", body
    [line] = failed_lines(body, "artifact_integrity")
    assert "artifact_digest_mismatch" in line["detail"]
    assert gate(viewer, other)["verdict"] != "fail"  # the intact artifact of another version is not blamed
    [event] = events("version.integrity_failed", version)
    assert (
        event.source == "task" and json.loads(event.changes)["after"]["integrity_problem"] == "artifact_digest_mismatch"
    )
    told = Notification.objects.filter(event="artifact.integrity_failed")
    assert {n.recipient.username for n in told} >= {"author", "admin", "operator", "approver"}
    assert all(n.url == version.get_absolute_url() for n in told)
    page = signed_in(users.viewer).get(version.get_absolute_url()).content.decode()
    assert "Stored artifact matches its sha256" in page and "artifact_digest_mismatch" in page
    # the download refuses it, as before
    assert_error(viewer.get(f"/api/v1/versions/{version.pk}/artifact/"), 409, "artifact_digest_mismatch")

    # checked again while still broken: no second event or notification
    told_before = told.count()
    ModelVersion.objects.update(integrity_checked_at=None)
    assert scrub_artifacts.apply().get()["failed"] == [version.artifact_sha256]
    assert len(events("version.integrity_failed", version)) == 1 and told.count() == told_before

    # the bytes restored from backup: the next check passes the gate again, and says so
    _stored(version).write_bytes(original)
    ModelVersion.objects.update(integrity_checked_at=None)
    scrub_artifacts.apply().get()
    assert gate(viewer, version)["verdict"] == "pass"
    assert len(events("version.integrity_restored", version)) == 1


def test_finding3_the_download_path_records_the_mismatch(api, users, model, version, assign_policy):
    version = _approved(users, model, version, assign_policy)
    viewer = api.as_user(users.viewer)
    _stored(version).write_bytes(b"tampered")
    assert_error(viewer.get(f"/api/v1/versions/{version.pk}/artifact/"), 409, "artifact_digest_mismatch")
    body = gate(viewer, version)
    assert body["verdict"] == "fail" and failed_lines(body, "artifact_integrity")
    [event] = events("version.integrity_failed", version)
    assert event.actor == users.viewer and event.source == "api"
    assert Notification.objects.filter(event="artifact.integrity_failed", recipient=users.admin).exists()
    _stored(version).unlink()
    assert_error(viewer.get(f"/api/v1/versions/{version.pk}/artifact/"), 409, "artifact_missing")
    assert "artifact_missing" in failed_lines(gate(viewer, version), "artifact_integrity")[0]["detail"]


def test_the_scrub_is_throttled_and_checks_the_oldest_first(users, model, make_version):
    from workers.integrity import scrub_artifacts

    versions = [make_version(model, content=bytes([0x80, i]) * 50) for i in range(5)]
    report = scrub_artifacts.apply(kwargs={"max_artifacts": 2}).get()
    assert report["checked"] == 2
    checked = set(ModelVersion.objects.filter(integrity_checked_at__isnull=False).values_list("pk", flat=True))
    assert checked == {versions[0].pk, versions[1].pk}  # never checked first, in registration order
    # a byte budget stops the run after the artifact that reaches it (at least one per run)
    report = scrub_artifacts.apply(kwargs={"max_bytes": 150}).get()
    assert report == {"checked": 1, "bytes": 100, "failed": []}
    report = scrub_artifacts.apply(kwargs={"max_artifacts": 50}).get()
    assert report["checked"] == 5  # the whole store, once: two never checked first, then the oldest checks
    assert ModelVersion.objects.filter(integrity_ok=True).count() == 5


def test_the_scrub_runs_on_a_schedule_on_the_default_queue():
    from governance.celery import app

    entry = app.conf.beat_schedule["artifact-integrity-scrub"]
    assert entry["task"] == "workers.integrity.scrub_artifacts" and entry["schedule"] <= 86400
    assert "workers.integrity" in app.conf.imports
    assert app.amqp.router.route({}, entry["task"])["queue"].name == "default"


def test_a_request_for_a_broken_artifact_stays_unapproved(users, model, version, assign_policy):
    """An artifact found broken while its review is open: the approval that reaches quorum does not approve."""
    assign_policy(model, NO_GATES_ONE_APPROVER)
    req = request(version, users.author)
    with audit_context(source="task"):
        registry.artifact_integrity_record(sha256=version.artifact_sha256, problem=artifacts.DIGEST_MISMATCH)
    decide(req, users.approver)
    req.refresh_from_db()
    assert req.status == RequestStatus.OPEN and ApprovalRequest.objects.get(pk=req.pk).version.stage == Stage.IN_REVIEW


def test_the_artifact_inspection_records_its_own_hash_as_an_integrity_check(api, users, model, make_version):
    from workers.artifacts import inspect_artifact

    intact, swapped = make_version(model), make_version(model)
    _stored(swapped).write_bytes(b"\x80\x04 other bytes")
    inspect_artifact(intact.pk)
    inspect_artifact(swapped.pk)
    assert ModelVersion.objects.get(pk=intact.pk).integrity_ok is True
    assert ModelVersion.objects.get(pk=swapped.pk).integrity_problem == "artifact_digest_mismatch"
    assert failed_lines(gate(api.as_user(users.viewer), swapped, "staging"), "artifact_integrity")
    assert [e.object_id for e in AuditEvent.objects.filter(action="version.integrity_failed")] == [str(swapped.pk)]
