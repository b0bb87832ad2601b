"""Bad input gets a 4xx JSON error with a machine-readable code and changes nothing.

Every case is a row: who sends what to where, and the status and code that come back. The
governed rows (teams, memberships, tokens, models, owners, versions, cards, audit events) and
the artifact store are compared before and after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings

from governance.registry.models import CARD_SECTION_KEYS, ModelVersion, RegisteredModel, Stage
from tests.conftest import assert_error, governed_state, make_artifact, move

pytestmark = pytest.mark.usefixtures("fast_passwords")

ARTIFACT = b"\x80\x04" + b"0123456789" * 20


@dataclass(frozen=True)
class Bad:
    id: str
    method: str
    url: str  # formatted with the api_world namespace
    body: Callable[[SimpleNamespace], object] | None
    status: int
    code: str
    role: str = "author"
    format: str = "json"
    field: str = ""  # the field named in ``fields`` for invalid input


def _version_form(**fields):
    def build(w):
        return {"model": w.model.pk, "artifact": make_artifact(ARTIFACT), **fields}

    return build


BAD = [
    # --- wrong types
    Bad("version-metrics-not-json", "post", "/api/v1/versions/", _version_form(metrics="accuracy=0.9"), 400, "invalid",
        format="multipart", field="metrics"),
    Bad("version-metrics-a-string", "post", "/api/v1/versions/", _version_form(metrics='"high"'), 400, "invalid",
        format="multipart", field="metrics"),
    Bad("version-metrics-a-list", "post", "/api/v1/versions/", _version_form(metrics="[0.9]"), 400, "invalid",
        format="multipart", field="metrics"),
    Bad("version-metrics-non-numeric", "post", "/api/v1/versions/", _version_form(metrics='{"auc": "good"}'), 400,
        "invalid", format="multipart", field="metrics"),
    Bad("version-metrics-boolean", "post", "/api/v1/versions/", _version_form(metrics='{"calibrated": true}'), 400,
        "invalid", format="multipart", field="metrics"),
    Bad("version-tags-not-a-list", "post", "/api/v1/versions/", _version_form(tags='"baseline"'), 400, "invalid",
        format="multipart", field="tags"),
    Bad("version-tags-not-strings", "post", "/api/v1/versions/", _version_form(tags="[1, 2]"), 400, "invalid",
        format="multipart", field="tags"),
    Bad("version-tags-too-long", "post", "/api/v1/versions/", _version_form(tags='["' + "x" * 51 + '"]'), 400,
        "invalid", format="multipart", field="tags"),
    Bad("version-hyperparameters-a-list", "post", "/api/v1/versions/", _version_form(hyperparameters="[1]"), 400,
        "invalid", format="multipart", field="hyperparameters"),
    Bad("version-model-not-an-id", "post", "/api/v1/versions/", _version_form(model="credit-scoring"), 400, "invalid",
        format="multipart", field="model"),
    Bad("version-patch-metrics-a-string", "patch", "/api/v1/versions/{w.v1.pk}/", lambda w: {"metrics": "high"},
        400, "invalid", field="metrics"),
    Bad("version-patch-tags-an-object", "patch", "/api/v1/versions/{w.v1.pk}/", lambda w: {"tags": {"a": 1}}, 400,
        "invalid", field="tags"),
    Bad("model-risk-tier-a-number", "post", "/api/v1/models/", lambda w: {"team": w.team.pk, "name": "m", "risk_tier": 5},
        400, "invalid", field="risk_tier"),
    Bad("model-team-not-an-id", "post", "/api/v1/models/", lambda w: {"team": "credit", "name": "m"}, 400, "invalid",
        field="team"),
    Bad("model-kpis-not-a-list", "post", "/api/v1/models/",
        lambda w: {"team": w.team.pk, "name": "m", "business_kpis": "approval rate"}, 400, "invalid",
        field="business_kpis"),
    Bad("model-kpi-without-name", "post", "/api/v1/models/",
        lambda w: {"team": w.team.pk, "name": "m", "business_kpis": [{"target": "5%"}]}, 400, "invalid",
        field="business_kpis"),
    Bad("model-owners-not-a-list", "post", "/api/v1/models/", lambda w: {"team": w.team.pk, "name": "m", "owners": 3},
        400, "invalid", field="owners"),
    Bad("model-patch-name-too-long", "patch", "/api/v1/models/{w.model.pk}/", lambda w: {"name": "m" * 121}, 400,
        "invalid", field="name"),
    Bad("card-section-not-text", "put", "/api/v1/versions/{w.v2.pk}/card/",
        lambda w: {"sections": {"intended_use": ["a", "list"]}}, 400, "invalid", field="sections"),
    Bad("card-sections-not-an-object", "put", "/api/v1/versions/{w.v2.pk}/card/", lambda w: {"sections": "all good"},
        400, "invalid", field="sections"),
    Bad("token-scopes-not-a-list", "post", "/api/v1/tokens/", lambda w: {"name": "ci", "scopes": "read"}, 400,
        "invalid", field="scopes"),
    Bad("token-expiry-zero", "post", "/api/v1/tokens/", lambda w: {"name": "ci", "scopes": ["read"], "expires_in_days": 0},
        400, "invalid", field="expires_in_days"),
    Bad("token-expiry-beyond-a-year", "post", "/api/v1/tokens/",
        lambda w: {"name": "ci", "scopes": ["read"], "expires_in_days": 366}, 400, "invalid", field="expires_in_days"),
    # --- missing fields
    Bad("version-without-artifact", "post", "/api/v1/versions/", lambda w: {"model": w.model.pk}, 400, "invalid",
        format="multipart", field="artifact"),
    Bad("version-artifact-not-a-file", "post", "/api/v1/versions/", lambda w: {"model": w.model.pk, "artifact": "abc"},
        400, "invalid", format="multipart", field="artifact"),
    Bad("version-without-model", "post", "/api/v1/versions/", lambda w: {"artifact": make_artifact(ARTIFACT)}, 400,
        "invalid", format="multipart", field="model"),
    Bad("model-without-name", "post", "/api/v1/models/", lambda w: {"team": w.team.pk}, 400, "invalid", field="name"),
    Bad("model-blank-name", "post", "/api/v1/models/", lambda w: {"team": w.team.pk, "name": "  "}, 400, "invalid",
        field="name"),
    Bad("model-without-team", "post", "/api/v1/models/", lambda w: {"name": "m"}, 400, "invalid", field="team"),
    Bad("team-without-name", "post", "/api/v1/teams/", lambda w: {}, 400, "invalid", role="superuser", field="name"),
    Bad("membership-without-role", "post", "/api/v1/memberships/", lambda w: {"team": w.team.pk, "username": "newbie"},
        400, "invalid", role="admin", field="role"),
    Bad("card-without-sections", "put", "/api/v1/versions/{w.v2.pk}/card/", lambda w: {"comment": "x"}, 400, "invalid",
        field="sections"),
    Bad("token-without-scopes", "post", "/api/v1/tokens/", lambda w: {"name": "ci", "scopes": []}, 400, "invalid",
        field="scopes"),
    # --- the artifact itself
    Bad("artifact-empty", "post", "/api/v1/versions/",
        lambda w: {"model": w.model.pk, "artifact": make_artifact(b"", "empty.joblib")}, 400, "artifact_empty",
        format="multipart"),
    Bad("artifact-digest-mismatch", "post", "/api/v1/versions/",
        _version_form(artifact_sha256=hashlib.sha256(b"something else").hexdigest()), 400, "digest_mismatch",
        format="multipart"),
    Bad("artifact-digest-malformed", "post", "/api/v1/versions/", _version_form(artifact_sha256="abc123"), 400,
        "invalid", format="multipart", field="artifact_sha256"),
    # --- unknown enum values
    Bad("version-unknown-framework", "post", "/api/v1/versions/", _version_form(framework="caffe"), 400, "invalid",
        format="multipart", field="framework"),
    Bad("version-unknown-artifact-format", "post", "/api/v1/versions/", _version_form(artifact_format="h5"), 400,
        "invalid", format="multipart", field="artifact_format"),
    Bad("version-patch-unknown-framework", "patch", "/api/v1/versions/{w.v1.pk}/", lambda w: {"framework": "caffe"},
        400, "invalid", field="framework"),
    Bad("transition-unknown-stage", "post", "/api/v1/versions/{w.v1.pk}/transition/", lambda w: {"to": "launched"},
        400, "invalid", field="to"),
    Bad("model-unknown-risk-tier", "post", "/api/v1/models/",
        lambda w: {"team": w.team.pk, "name": "m", "risk_tier": "extreme"}, 400, "invalid", field="risk_tier"),
    Bad("model-patch-unknown-risk-tier", "patch", "/api/v1/models/{w.model.pk}/", lambda w: {"risk_tier": "HIGH"}, 400,
        "invalid", field="risk_tier"),
    Bad("model-patch-risk-tier", "patch", "/api/v1/models/{w.model.pk}/", lambda w: {"risk_tier": "minimal"}, 400,
        "risk_tier_is_an_action", role="admin", field="risk_tier"),
    Bad("model-retier-unknown-tier", "post", "/api/v1/models/{w.model.pk}/risk-tier/",
        lambda w: {"risk_tier": "extreme", "reason": "x"}, 400, "invalid", role="admin", field="risk_tier"),
    Bad("model-retier-no-reason", "post", "/api/v1/models/{w.model.pk}/risk-tier/", lambda w: {"risk_tier": "high"},
        400, "invalid", role="admin", field="reason"),
    Bad("model-retier-same-tier", "post", "/api/v1/models/{w.model.pk}/risk-tier/",
        lambda w: {"risk_tier": "limited", "reason": "x"}, 409, "risk_tier_unchanged", role="admin"),
    Bad("model-retier-unknown-field", "post", "/api/v1/models/{w.model.pk}/risk-tier/",
        lambda w: {"risk_tier": "high", "reason": "x", "policy": 1}, 400, "unknown_field", role="admin"),
    Bad("membership-unknown-role", "post", "/api/v1/memberships/",
        lambda w: {"team": w.team.pk, "username": "newbie", "role": "owner"}, 400, "invalid", role="admin",
        field="role"),
    Bad("token-unknown-scope", "post", "/api/v1/tokens/", lambda w: {"name": "ci", "scopes": ["read", "delete"]}, 400,
        "invalid", field="scopes"),
    Bad("card-unknown-section", "put", "/api/v1/versions/{w.v2.pk}/card/",
        lambda w: {"sections": {"intended_use": "Credit decisions for retail customers.", "vibes": "good"}}, 400,
        "invalid", field="sections"),
    # --- duplicates and state conflicts
    Bad("model-duplicate-name", "post", "/api/v1/models/", lambda w: {"team": w.team.pk, "name": "credit-scoring"},
        409, "duplicate_name"),
    Bad("model-duplicate-name-other-case", "post", "/api/v1/models/",
        lambda w: {"team": w.team.pk, "name": "Credit-SCORING"}, 409, "duplicate_name"),
    Bad("model-rename-onto-another", "patch", "/api/v1/models/{w.empty_model.pk}/", lambda w: {"name": "CREDIT-scoring"},
        409, "duplicate_name"),
    Bad("team-duplicate-name", "post", "/api/v1/teams/", lambda w: {"name": "credit risk"}, 409, "duplicate_name",
        role="superuser"),
    Bad("team-rename-onto-another", "patch", "/api/v1/teams/{w.team.pk}/", lambda w: {"name": "MARKETING"}, 409,
        "duplicate_name", role="superuser"),
    Bad("team-name-without-letters", "post", "/api/v1/teams/", lambda w: {"name": "!!!"}, 400, "invalid_name",
        role="superuser"),
    Bad("membership-duplicate", "post", "/api/v1/memberships/",
        lambda w: {"team": w.team.pk, "username": "viewer", "role": "viewer"}, 409, "duplicate_membership",
        role="admin"),
    Bad("model-delete-with-versions", "delete", "/api/v1/models/{w.model.pk}/", None, 409, "model_has_versions",
        role="admin"),
    Bad("card-unchanged", "put", "/api/v1/versions/{w.v2.pk}/card/",
        lambda w: {"sections": {"model_details": w.card.sections["model_details"]}}, 409, "card_unchanged"),
    Bad("transition-draft-to-approved", "post", "/api/v1/versions/{w.v1.pk}/transition/", lambda w: {"to": "approved"},
        409, "transition_not_allowed", role="admin"),
    # --- nonexistent ids
    Bad("model-missing", "get", "/api/v1/models/999999/", None, 404, "not_found"),
    Bad("model-id-not-a-number", "get", "/api/v1/models/credit-scoring/", None, 404, "not_found"),
    Bad("model-patch-missing", "patch", "/api/v1/models/999999/", lambda w: {"description": "x"}, 404, "not_found"),
    Bad("model-delete-missing", "delete", "/api/v1/models/999999/", None, 404, "not_found", role="admin"),
    Bad("version-missing", "get", "/api/v1/versions/999999/", None, 404, "not_found"),
    Bad("version-patch-missing", "patch", "/api/v1/versions/999999/", lambda w: {"description": "x"}, 404, "not_found"),
    Bad("transition-missing", "post", "/api/v1/versions/999999/transition/", lambda w: {"to": "in_review"}, 404,
        "not_found"),
    Bad("artifact-of-missing-version", "get", "/api/v1/versions/999999/artifact/", None, 404, "not_found"),
    Bad("card-of-missing-version", "put", "/api/v1/versions/999999/card/", lambda w: {"sections": {}}, 404,
        "not_found"),
    Bad("card-not-written-yet", "get", "/api/v1/versions/{w.v1.pk}/card/", None, 404, "card_not_found"),
    Bad("diff-against-missing", "get", "/api/v1/versions/{w.v2.pk}/diff/?against=999999", None, 404,
        "diff_base_not_found"),
    Bad("diff-against-not-a-number", "get", "/api/v1/versions/{w.v2.pk}/diff/?against=v1", None, 400, "invalid",
        field="against"),
    Bad("diff-of-first-version", "get", "/api/v1/versions/{w.v1.pk}/diff/", None, 404, "diff_base_not_found"),
    Bad("version-for-missing-model", "post", "/api/v1/versions/",
        lambda w: {"model": 999999, "artifact": make_artifact(ARTIFACT)}, 404, "model_not_found", format="multipart"),
    Bad("model-for-missing-team", "post", "/api/v1/models/", lambda w: {"team": 999999, "name": "m"}, 404,
        "team_not_found"),
    Bad("model-unknown-owner", "post", "/api/v1/models/",
        lambda w: {"team": w.team.pk, "name": "m", "owners": ["nobody"]}, 400, "invalid", field="owners"),
    Bad("model-owner-not-in-team", "post", "/api/v1/models/",
        lambda w: {"team": w.team.pk, "name": "m", "owners": ["outsider"]}, 400, "invalid_owner"),
    Bad("membership-unknown-user", "post", "/api/v1/memberships/",
        lambda w: {"team": w.team.pk, "username": "nobody", "role": "viewer"}, 404, "user_not_found", role="admin"),
    Bad("membership-missing-team", "post", "/api/v1/memberships/",
        lambda w: {"team": 999999, "username": "newbie", "role": "viewer"}, 404, "team_not_found", role="admin"),
    Bad("membership-delete-missing", "delete", "/api/v1/memberships/999999/", None, 404, "not_found", role="admin"),
    Bad("token-for-missing-team", "post", "/api/v1/tokens/", lambda w: {"name": "ci", "scopes": ["read"], "team": 999999},
        404, "team_not_found"),
    Bad("token-revoke-missing", "post", "/api/v1/tokens/999999/revoke/", None, 404, "not_found"),
    Bad("audit-event-missing", "get", "/api/v1/audit-events/999999/", None, 404, "not_found"),
    Bad("team-missing", "get", "/api/v1/teams/999999/", None, 404, "not_found"),
]  # fmt: skip


def _artifact_files() -> list[str]:
    root = Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"])
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_the_cases_have_distinct_names():
    assert len({case.id for case in BAD}) == len(BAD)


@pytest.mark.parametrize("case", BAD, ids=[case.id for case in BAD])
def test_bad_input_is_refused_and_changes_nothing(api, users, api_world, case):
    client = api.as_user(getattr(users, case.role))
    before, files = governed_state(), _artifact_files()
    url = case.url.format(w=api_world)
    body = case.body(api_world) if case.body else None
    call = getattr(client, case.method)
    r = call(url) if case.method == "get" else call(url, body, format=case.format)
    error = assert_error(r, case.status, case.code)
    if case.field:
        assert case.field in error.get("fields", {}), error
    assert governed_state() == before
    assert _artifact_files() == files


def test_malformed_json_bodies_are_refused(api, users, api_world):
    client = api.as_user(users.author)
    before = governed_state()
    for method, url in [
        ("post", "/api/v1/models/"),
        ("patch", f"/api/v1/models/{api_world.model.pk}/"),
        ("patch", f"/api/v1/versions/{api_world.v1.pk}/"),
        ("put", f"/api/v1/versions/{api_world.v2.pk}/card/"),
        ("post", f"/api/v1/versions/{api_world.v1.pk}/transition/"),
        ("post", "/api/v1/tokens/"),
    ]:
        r = getattr(client, method)(url, data='{"name": "x",', content_type="application/json")
        assert_error(r, 400, "malformed_request")
    r = client.post("/api/v1/models/", data="name=x", content_type="text/plain")
    assert_error(r, 415, "unsupported_media_type")
    r = client.post("/api/v1/models/", data="[1, 2]", content_type="application/json")
    assert_error(r, 400)
    assert governed_state() == before


@pytest.mark.parametrize("size", [101, 5000])
def test_an_artifact_over_the_limit_is_refused(api, users, api_world, settings, size):
    settings.ARTIFACT_MAX_BYTES = 100
    client = api.as_user(users.author)
    before, files = governed_state(), _artifact_files()
    r = client.post(
        "/api/v1/versions/",
        {"model": api_world.model.pk, "artifact": make_artifact(b"\x80" * size)},
        format="multipart",
    )
    assert_error(r, 413, "artifact_too_large")
    assert governed_state() == before and _artifact_files() == files
    # At the limit it goes through.
    r = client.post(
        "/api/v1/versions/", {"model": api_world.model.pk, "artifact": make_artifact(b"\x80" * 100)}, format="multipart"
    )
    assert r.status_code == 201, r.content[:300]
    assert r.json()["artifact_size"] == 100


def test_a_matching_digest_is_accepted_in_either_case(api, users, api_world):
    client = api.as_user(users.author)
    digest = hashlib.sha256(ARTIFACT).hexdigest()
    for declared in (digest, digest.upper()):
        r = client.post(
            "/api/v1/versions/",
            {"model": api_world.model.pk, "artifact": make_artifact(ARTIFACT), "artifact_sha256": declared},
            format="multipart",
        )
        assert r.status_code == 201, r.content[:300]
        assert r.json()["artifact_sha256"] == digest


def test_the_same_name_in_another_team_is_fine(api, users, api_world):
    r = api.as_user(users.outsider).post(
        "/api/v1/models/", {"team": api_world.other_team.pk, "name": "Credit-Scoring"}, format="json"
    )
    assert r.status_code == 201, r.content[:300]
    assert RegisteredModel.objects.filter(name__iexact="credit-scoring").count() == 2


def test_metadata_round_trips_through_multipart_and_json(api, users, api_world):
    """Multipart sends JSON fields as strings; a JSON body sends them as objects. Both must work."""
    client = api.as_user(users.author)
    r = client.post(
        "/api/v1/versions/",
        {
            "model": api_world.model.pk,
            "artifact": make_artifact(ARTIFACT),
            "metrics": '{"auc": 0.81, "n": 1000}',
            "hyperparameters": '{"max_depth": 6, "features": ["age", "income"]}',
            "tags": '["candidate", "q4"]',
            "framework": "xgboost",
            "artifact_format": "xgboost",
        },
        format="multipart",
    )
    assert r.status_code == 201, r.content[:300]
    created = r.json()
    assert created["metrics"] == {"auc": 0.81, "n": 1000}
    assert created["hyperparameters"] == {"max_depth": 6, "features": ["age", "income"]}
    assert created["tags"] == ["candidate", "q4"]
    assert (created["framework"], created["artifact_format"], created["stage"]) == ("xgboost", "xgboost", "draft")

    r = client.patch(
        f"/api/v1/versions/{created['id']}/",
        {"metrics": {"auc": 0.83}, "tags": ["candidate"], "hyperparameters": {"max_depth": 4}},
        format="json",
    )
    assert r.status_code == 200, r.content[:300]
    version = ModelVersion.objects.get(pk=created["id"])
    assert version.metrics == {"auc": 0.83}
    assert version.tags == ["candidate"]
    assert version.hyperparameters == {"max_depth": 4}


def test_patching_the_stage_does_not_move_a_version(api, users, api_world):
    client = api.as_user(users.author)
    r = client.patch(f"/api/v1/versions/{api_world.v1.pk}/", {"stage": Stage.APPROVED}, format="json")
    assert r.status_code in (200, 400), r.content[:300]
    api_world.v1.refresh_from_db()
    assert api_world.v1.stage == Stage.DRAFT


@pytest.mark.parametrize("stages", [(Stage.IN_REVIEW,), (Stage.RETIRED,)], ids=["in_review", "retired"])
def test_a_card_is_frozen_once_its_version_leaves_draft(api, users, api_world, stages):
    move(api_world.v2, *stages, actor=users.admin)
    client = api.as_user(users.author)
    before = governed_state()
    r = client.put(
        f"/api/v1/versions/{api_world.v2.pk}/card/",
        {"sections": {"intended_use": "A late edit of the evidence under review, refused."}},
        format="json",
    )
    assert_error(r, 409, "card_frozen")
    assert governed_state() == before


def test_revoking_twice_is_a_conflict(api, users, api_world):
    client = api.as_user(users.author)
    assert client.post(f"/api/v1/tokens/{api_world.token.pk}/revoke/").status_code == 200
    before = governed_state()
    assert_error(client.post(f"/api/v1/tokens/{api_world.token.pk}/revoke/"), 409, "already_revoked")
    assert governed_state() == before


def test_a_card_saves_only_known_sections_and_keeps_the_rest(api, users, api_world):
    client = api.as_user(users.author)
    text = "Scoring retail credit applications in the EU."
    r = client.put(f"/api/v1/versions/{api_world.v2.pk}/card/", {"sections": {"intended_use": text}}, format="json")
    assert r.status_code == 200, r.content[:300]
    card = r.json()
    assert card["revision"] == 2
    assert set(card["sections"]) == set(CARD_SECTION_KEYS)
    assert card["sections"]["intended_use"] == text
    assert card["sections"]["model_details"] == api_world.card.sections["model_details"]
    assert card["completeness"] == round(100 * 2 / len(CARD_SECTION_KEYS))


JUNK_BODIES = [
    "null",
    "[1, 2]",
    '"a string"',
    "12",
    '{"team": null, "name": null, "to": {"x": 1}, "sections": null, "scopes": [null], "model": -1, "username": []}',
    '{"team": 1.5, "name": ["a"], "to": ["approved"], "sections": ["a"], "scopes": {"read": 1}, "role": null}',
]


def _write_endpoints():
    from tests.test_api_permissions import ENDPOINTS

    return [e for e in ENDPOINTS if e.method in ("post", "put", "patch") and not e.multipart]


@pytest.mark.parametrize("endpoint", _write_endpoints(), ids=lambda e: e.id)
def test_junk_json_bodies_never_cause_a_server_error(api, users, api_world, endpoint):
    client = api.as_user(users.superuser if endpoint.id == "teams-create" else users.admin)
    if endpoint.id == "tokens-revoke-the-authors":
        client = api.as_user(users.author)
    url = endpoint.url.format(w=api_world)
    before = governed_state()
    for junk in JUNK_BODIES[:4]:  # not an object at all
        r = getattr(client, endpoint.method)(url, data=junk, content_type="application/json")
        if endpoint.body is None:  # an action that reads no body ignores it
            assert r.status_code < 500
            continue
        assert_error(r, 400)
    if endpoint.body is not None:
        assert governed_state() == before
    for junk in JUNK_BODIES[4:]:  # an object of wrong types: refused, or ignored where no field matches
        r = getattr(client, endpoint.method)(url, data=junk, content_type="application/json")
        assert r.status_code < 500 and r["Content-Type"].startswith("application/json")


def test_multipart_fields_left_empty_count_as_not_given(api, users, api_world):
    client = api.as_user(users.admin)
    before = governed_state()
    assert "model" in assert_error(
        client.post("/api/v1/versions/", {"model": "", "artifact": make_artifact(ARTIFACT)}, format="multipart"), 400
    ).get("fields", {})
    assert governed_state() == before
    r = client.post(
        "/api/v1/versions/",
        {
            "model": api_world.model.pk,
            "artifact": make_artifact(ARTIFACT),
            "framework": "",
            "artifact_sha256": "",
        },
        format="multipart",
    )
    assert r.status_code == 201, r.content[:300]
    assert (r.json()["framework"], r.json()["artifact_format"]) == ("sklearn", "sklearn-joblib")
    r = client.post(
        "/api/v1/versions/",
        {"model": api_world.model.pk, "artifact": make_artifact(ARTIFACT, name="x" * 300)},
        format="multipart",
    )
    assert r.status_code == 201, r.content[:300]
    assert len(r.json()["artifact_name"]) <= 255


def test_a_non_ascii_digit_as_diff_base_is_a_400(api, users, api_world):
    r = api.as_user(users.viewer).get(f"/api/v1/versions/{api_world.v2.pk}/diff/", {"against": "²"})
    assert_error(r, 400, "invalid")
