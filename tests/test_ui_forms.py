"""The browser forms end to end: they call the services, show domain errors, and audit as source "ui"."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from governance.accounts.models import ApiToken, Membership
from governance.audit.models import AuditEvent
from governance.registry.models import ModelCard, ModelVersion, RegisteredModel
from tests.conftest import make_artifact, move

pytestmark = pytest.mark.django_db


# --- models ---------------------------------------------------------------------------------


def test_author_registers_a_model(login, users, team):
    client = login(users.author)
    response = client.post(
        reverse("model-register"),
        {
            "team": team.pk, "name": "churn", "use_case": "Retention offers", "risk_tier": "high",
            "description": "Predicts churn.", "owners": "author, approver",
            "business_kpis": "Retention uplift | 2 | %\nOffer cost",
        },
    )  # fmt: skip
    model = RegisteredModel.objects.get(name="churn")
    assert response.status_code == 302 and response["Location"] == reverse("model-detail", args=[model.pk])
    assert model.risk_tier == "high" and model.team == team
    assert sorted(model.owners.values_list("username", flat=True)) == ["approver", "author"]
    assert model.business_kpis == [{"name": "Retention uplift", "target": "2", "unit": "%"}, {"name": "Offer cost"}]
    event = AuditEvent.objects.get(action="model.create", object_id=str(model.pk))
    assert event.source == "ui" and event.actor == users.author
    page = client.get(response["Location"])
    assert b"Retention uplift" in page.content and b"High risk" in page.content


def test_duplicate_model_name_is_a_form_error(login, users, team, model):
    response = login(users.author).post(
        reverse("model-register"), {"team": team.pk, "name": model.name, "risk_tier": "limited"}
    )
    assert response.status_code == 409
    assert "already has a model named" in response.content.decode()
    assert RegisteredModel.objects.filter(name=model.name).count() == 1


def test_owner_outside_the_team_is_a_form_error(login, users, team):
    response = login(users.author).post(
        reverse("model-register"), {"team": team.pk, "name": "x-model", "risk_tier": "limited", "owners": "outsider"}
    )
    assert response.status_code == 400 and "must be members" in response.content.decode()
    assert not RegisteredModel.objects.filter(name="x-model").exists()


def test_team_choices_are_the_users_teams_only(login, users, team, other_team):
    response = login(users.author).post(
        reverse("model-register"), {"team": other_team.pk, "name": "sneaky", "risk_tier": "limited"}
    )
    assert response.status_code == 400
    assert not RegisteredModel.objects.filter(name="sneaky").exists()


def test_viewer_cannot_register(login, users, team):
    response = login(users.viewer).post(
        reverse("model-register"), {"team": team.pk, "name": "nope", "risk_tier": "limited"}
    )
    assert response.status_code == 403
    assert not RegisteredModel.objects.filter(name="nope").exists()


def test_model_list_filters_search_and_sorts(login, users, make_model, make_version):
    a = make_model("alpha-scoring", risk_tier="high", use_case="Loans")
    b = make_model("beta-fraud", risk_tier="minimal")
    make_version(a)
    v = make_version(b)
    move(v, "in_review", actor=users.author)
    client = login(users.viewer)

    def names(**params):
        return [m.name for m in client.get(reverse("models"), params).context["page"].object_list]

    assert names() == ["alpha-scoring", "beta-fraud"]
    assert names(sort="-name") == ["beta-fraud", "alpha-scoring"]
    assert names(q="loans") == ["alpha-scoring"]
    assert names(risk_tier="minimal") == ["beta-fraud"]
    assert names(stage="in_review") == ["beta-fraud"]
    assert names(team=a.team_id, sort="risk") == ["alpha-scoring", "beta-fraud"]
    partial = client.get(reverse("models"), {"q": "beta"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="model-results")
    assert (
        b"<html" not in partial.content and b"beta-fraud" in partial.content and b"alpha-scoring" not in partial.content
    )
    empty = client.get(reverse("models"), {"q": "zzz"})
    assert b"No model matches these filters" in empty.content


# --- versions -------------------------------------------------------------------------------


def test_author_uploads_a_version(login, users, model):
    client = login(users.author)
    response = client.post(
        reverse("version-upload", args=[model.pk]),
        {
            "artifact": make_artifact(b"\x80\x04fake-model-bytes"), "framework": "sklearn",
            "artifact_format": "sklearn-joblib", "description": "First cut", "metrics": '{"accuracy": 0.91, "auc": 0.8}',
            "hyperparameters": '{"C": 0.5}', "tags": "baseline, q3", "training_data_ref": "dvc://repo@abc#train.csv",
        },
    )  # fmt: skip
    version = ModelVersion.objects.get(model=model)
    assert response.status_code == 302 and response["Location"] == reverse("version-detail", args=[version.pk])
    assert version.metrics == {"accuracy": 0.91, "auc": 0.8} and version.hyperparameters == {"C": 0.5}
    assert version.tags == ["baseline", "q3"] and version.training_data_ref == "dvc://repo@abc#train.csv"
    assert AuditEvent.objects.get(action="version.create", object_id=str(version.pk)).source == "ui"
    page = client.get(response["Location"])
    assert version.artifact_sha256.encode() in page.content
    assert f"/api/v1/versions/{version.pk}/artifact/".encode() in page.content
    assert b"Pickle-based format" in page.content


def test_bad_json_and_digest_mismatch_are_form_errors(login, users, model):
    client = login(users.author)
    url = reverse("version-upload", args=[model.pk])
    response = client.post(
        url,
        {
            "artifact": make_artifact(),
            "framework": "sklearn",
            "artifact_format": "sklearn-joblib",
            "metrics": '{"accuracy": "high"}',
        },
    )
    assert response.status_code == 400 and "names to numbers" in response.content.decode()
    response = client.post(
        url,
        {
            "artifact": make_artifact(),
            "framework": "sklearn",
            "artifact_format": "sklearn-joblib",
            "hyperparameters": "{oops",
        },
    )
    assert response.status_code == 400 and "valid JSON" in response.content.decode()
    response = client.post(
        url,
        {
            "artifact": make_artifact(),
            "framework": "sklearn",
            "artifact_format": "sklearn-joblib",
            "artifact_sha256": "0" * 64,
        },
    )
    assert response.status_code == 400 and "not the" in response.content.decode()
    assert not ModelVersion.objects.filter(model=model).exists()


def test_viewer_upload_is_refused_with_the_services_message(login, users, model):
    response = login(users.viewer).post(
        reverse("version-upload", args=[model.pk]),
        {"artifact": make_artifact(), "framework": "sklearn", "artifact_format": "sklearn-joblib"},
    )
    assert response.status_code == 403 and "You need one of these roles" in response.content.decode()
    assert not ModelVersion.objects.filter(model=model).exists()
    assert AuditEvent.objects.filter(action="permission.denied", actor=users.viewer, source="ui").exists()


# --- model card -----------------------------------------------------------------------------


def test_card_editor_saves_revisions(login, users, version):
    client = login(users.author)
    url = reverse("card-edit", args=[version.pk])
    text = "Scores loan applications for the credit committee."
    response = client.post(url, {"intended_use": text, "comment": "first draft"})
    assert response.status_code == 302
    card = ModelCard.objects.get(version=version)
    assert card.revision == 1 and card.sections["intended_use"] == text and card.comment == "first draft"
    # Browsers send CRLF; an unchanged card is refused, not saved again.
    same = client.post(url, {"intended_use": text + "\r\n", "comment": ""})
    assert same.status_code == 409 and "Nothing changed" in same.content.decode()
    response = client.post(
        url, {"intended_use": text, "training_data": "Applications 2019-2023, line 1\r\nline 2 of the data"}
    )
    assert response.status_code == 302
    latest = ModelCard.objects.filter(version=version).order_by("-revision").first()
    assert (
        latest.revision == 2
        and latest.sections["training_data"] == "Applications 2019-2023, line 1\nline 2 of the data"
    )
    assert latest.sections["intended_use"] == text
    editor = client.get(url)
    assert editor.status_code == 200
    assert [r.revision for r in editor.context["revisions"]] == [2, 1]
    assert editor.context["form"]["intended_use"].value() == text
    page = client.get(reverse("version-detail", args=[version.pk]))
    assert b"line 2 of the data" in page.content and b"Missing sections" in page.content
    assert AuditEvent.objects.filter(action="card.save", source="ui").count() == 2


def test_viewer_card_save_is_refused(login, users, version):
    response = login(users.viewer).post(reverse("card-edit", args=[version.pk]), {"intended_use": "x" * 40})
    assert response.status_code == 403
    assert not ModelCard.objects.filter(version=version).exists()


# --- lifecycle ------------------------------------------------------------------------------


def test_transition_with_a_permitted_role(login, users, version):
    move(version, "in_review", "approved", actor=users.admin)
    url = reverse("version-lifecycle", args=[version.pk])
    operator = login(users.operator)
    page = operator.get(reverse("version-detail", args=[version.pk])).content.decode()
    # review steps belong to approvals, going live to serving (the Serving card's buttons)
    assert 'value="deprecated"' in page and 'value="in_review"' not in page and 'value="deployed"' not in page
    response = operator.post(url, {"to": "deployed"})  # by hand: refused, it follows what is live
    assert response.status_code == 409 and "only through serving" in response.content.decode()
    response = operator.post(url, {"to": "deprecated", "reason": "Superseded before it went live"})
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.stage == "deprecated"
    event = AuditEvent.objects.filter(action="version.transition", object_id=str(version.pk)).latest("seq")
    assert (
        event.source == "ui"
        and event.actor == users.operator
        and json.loads(event.changes)["reason"] == "Superseded before it went live"
    )


def test_refused_transition_shows_an_error_and_changes_nothing(login, users, version):
    url = reverse("version-lifecycle", args=[version.pk])
    before = AuditEvent.objects.filter(action="version.transition").count()
    response = login(users.viewer).post(url, {"to": "retired", "reason": "tidy up"})
    assert response.status_code == 403
    body = response.content.decode()
    assert "You need one of these roles in the owning team to retire" in body and "errorlist" in body
    version.refresh_from_db()
    assert version.stage == "draft"
    assert AuditEvent.objects.filter(action="version.transition").count() == before
    assert AuditEvent.objects.filter(action="permission.denied", actor=users.viewer).exists()
    # A review step by hand is refused whoever asks: approval requests take it.
    response = login(users.admin).post(url, {"to": "in_review"})
    assert response.status_code == 409 and "approval request" in response.content.decode()
    # A step the lifecycle does not allow is a 409 with the allowed steps named.
    response = login(users.admin).post(url, {"to": "deployed"})
    assert response.status_code == 409 and "cannot move to deployed" in response.content.decode()
    version.refresh_from_db()
    assert version.stage == "draft"
    # Garbage input is a 400, never a 500.
    assert login(users.admin).post(url, {"to": "nonsense"}).status_code == 400


def test_version_page_shows_the_diff_with_the_previous_version(login, users, model, make_version):
    make_version(model, metrics={"accuracy": 0.80}, hyperparameters={"C": 1.0}, tags=["a"])
    second = make_version(model, metrics={"accuracy": 0.85}, hyperparameters={"C": 0.5}, tags=["b"])
    response = login(users.viewer).get(reverse("version-detail", args=[second.pk]))
    diff = response.context["diff"]
    assert diff["metrics"][0]["key"] == "accuracy" and round(diff["metrics"][0]["delta"], 2) == 0.05
    assert b"+0.05" in response.content and b"Changes since" in response.content


# --- audit log ------------------------------------------------------------------------------


def test_audit_log_filters_and_pages(login, users, version, make_version, model):
    move(version, "in_review", actor=users.author)
    client = login(users.auditor)
    url = reverse("audit-log")
    events = client.get(url, {"action": "version.transition"}).context["events"]
    assert [e.action for e in events] == ["version.transition"] and events[0].to_stage == "in_review"
    by_actor = client.get(url, {"actor_label": "author"}).context["events"]
    assert by_actor and all(e.actor_label == "author" for e in by_actor)
    request_id = events[0].request_id
    assert {e.request_id for e in client.get(url, {"request_id": request_id}).context["events"]} == {request_id}
    trail = client.get(url, {"object_type": "registry.modelversion", "object_id": str(version.pk)}).context["events"]
    assert {e.action for e in trail} == {"version.create", "version.transition"}
    assert client.get(url, {"since": "2999-01-01T00:00"}).context["events"] == []
    bad = client.get(url, {"since": "not-a-date"})
    assert bad.status_code == 200 and b"Some filters were ignored" in bad.content
    # Keyset pages: 50 newest, then older ones by sequence number.
    for _ in range(3):
        make_version(model)
    all_seqs = list(AuditEvent.objects.order_by("-seq").values_list("seq", flat=True))
    visible = [e.seq for e in client.get(url).context["events"]]
    assert visible == [s for s in all_seqs if s in set(visible)] and len(visible) <= 50
    older = client.get(url, {"before": visible[1]}).context["events"]
    assert older[0].seq < visible[1]
    newer = client.get(url, {"after": older[0].seq}).context["events"]
    assert newer[-1].seq == older[0].seq + 1 or newer[-1].seq > older[0].seq


def test_audit_event_details_show_before_after_and_hashes(login, users, version):
    move(version, "in_review", actor=users.author)
    response = login(users.viewer).get(reverse("audit-log"), {"action": "version.transition"})
    event = AuditEvent.objects.get(action="version.transition")
    body = response.content.decode()
    assert event.hash in body and event.prev_hash in body and "&quot;stage&quot;: &quot;draft&quot;" in body


def test_verify_chain_for_auditors_only(login, users, version):
    url = reverse("audit-verify")
    auditor = login(users.auditor)
    page = auditor.get(reverse("audit-log"))
    assert b"Verify chain" in page.content
    partial = auditor.post(url, HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and b"Chain intact" in partial.content and b"<html" not in partial.content
    full = auditor.post(url, follow=True)
    assert b"Audit chain verified" in full.content
    viewer = login(users.viewer)
    assert b"Verify chain" not in viewer.get(reverse("audit-log")).content
    assert viewer.post(url).status_code == 403


# --- tokens and teams -----------------------------------------------------------------------


def test_token_secret_is_shown_once_and_can_be_revoked(login, users, team):
    client = login(users.author)
    response = client.post(
        reverse("tokens"), {"name": "ci", "scopes": ["read", "write"], "team": team.pk, "expires_in_days": 30}
    )
    assert response.status_code == 201
    token = ApiToken.objects.get(user=users.author, name="ci")
    secret = response.context["secret"]
    assert secret.startswith("chr_") and token.prefix in secret
    assert secret.encode() in response.content
    assert secret.encode() not in client.get(reverse("tokens")).content
    assert token.scopes == ["read", "write"] and token.team == team
    assert login(users.viewer).post(reverse("api-token-revoke", args=[token.pk])).status_code == 404
    assert client.post(reverse("api-token-revoke", args=[token.pk])).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    again = client.post(reverse("api-token-revoke", args=[token.pk]), follow=True)
    assert b"already revoked" in again.content


def test_token_form_errors(login, users, other_team):
    client = login(users.author)
    assert client.post(reverse("tokens"), {"name": "ci", "expires_in_days": 30}).status_code == 400
    response = client.post(
        reverse("tokens"), {"name": "ci", "scopes": ["read"], "team": other_team.pk, "expires_in_days": 30}
    )
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_team_admin_manages_memberships(login, users, team):
    url = reverse("membership-add", args=[team.slug])
    admin = login(users.admin)
    response = admin.post(url, {"username": "outsider", "role": "viewer"})
    assert response.status_code == 302
    membership = Membership.objects.get(user=users.outsider, team=team)
    duplicate = admin.post(url, {"username": "outsider", "role": "viewer"})
    assert duplicate.status_code == 409 and "already has the viewer role" in duplicate.content.decode()
    assert admin.post(url, {"username": "nobody", "role": "viewer"}).status_code == 400
    refused = login(users.author).post(url, {"username": "outsider", "role": "admin"})
    assert refused.status_code == 403 and "manage members" in refused.content.decode()
    assert not Membership.objects.filter(user=users.outsider, team=team, role="admin").exists()
    assert login(users.author).post(reverse("membership-remove", args=[team.slug, membership.pk])).status_code == 403
    assert admin.post(reverse("membership-remove", args=[team.slug, membership.pk])).status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(action="membership.remove", source="ui", actor=users.admin).exists()
