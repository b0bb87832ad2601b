"""Registry services and selectors below the API: numbering, content-addressed storage, cards,
diffs, filters, and the integrity check on artifact download."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.storage import storages

from governance.audit.models import AuditEvent
from governance.audit.services import AuditContextMissing
from governance.core.context import audit_context
from governance.core.errors import NotPermitted, ValidationFailed
from governance.registry import artifacts, selectors
from governance.registry import services as registry
from governance.registry.models import CARD_SECTION_KEYS, ModelVersion
from tests.conftest import assert_error, make_artifact, move

pytestmark = pytest.mark.usefixtures("fast_passwords")


def test_versions_are_numbered_per_model_and_counted_on_the_model(model, make_model, make_version):
    other = make_model("second")
    numbers = [make_version(model).number for _ in range(3)] + [make_version(other).number]
    assert numbers == [1, 2, 3, 1]
    model.refresh_from_db()
    assert (model.latest_version_number, model.version_count) == (3, 3)


def test_identical_artifacts_share_one_stored_file(model, make_version):
    content = b"\x80\x04same bytes"
    a, b = make_version(model, content=content), make_version(model, content=content)
    digest = hashlib.sha256(content).hexdigest()
    assert a.artifact_sha256 == b.artifact_sha256 == digest
    assert a.artifact_path == b.artifact_path == f"sha256/{digest[:2]}/{digest}"
    store = storages["artifacts"]
    assert store.exists(a.artifact_path)
    assert store.listdir(f"sha256/{digest[:2]}")[1] == [digest]
    with store.open(a.artifact_path, "rb") as fh:
        assert fh.read() == content


def test_a_governed_write_without_an_audit_context_is_an_error(users, team):
    with pytest.raises(AuditContextMissing):
        registry.model_create(actor=users.author, team=team, name="no-context")
    assert not AuditEvent.objects.filter(action="model.create").exists()
    from governance.registry.models import RegisteredModel

    assert not RegisteredModel.objects.filter(name="no-context").exists()


def test_services_check_roles_even_without_the_api(users, model):
    with audit_context(source="cli", actor=users.viewer), pytest.raises(NotPermitted):
        registry.version_create(actor=users.viewer, model=model, artifact=make_artifact())
    with audit_context(source="cli", actor=users.outsider), pytest.raises(NotPermitted):
        registry.model_update(actor=users.outsider, model=model, description="x")
    assert not ModelVersion.objects.exists()


def test_card_revisions_merge_sections_and_track_completeness(users, version):
    long = "A sentence long enough to count as written."
    with audit_context(source="cli", actor=users.author):
        first = registry.card_save(actor=users.author, version=version, sections={"model_details": long})
        second = registry.card_save(
            actor=users.author, version=version, sections={"intended_use": long, "metrics": "short"}, comment="more"
        )
    assert (first.revision, second.revision) == (1, 2)
    assert set(second.sections) == set(CARD_SECTION_KEYS)
    assert second.sections["model_details"] == long and second.sections["metrics"] == "short"
    assert second.completeness == round(100 * 2 / len(CARD_SECTION_KEYS))
    assert "metrics" in second.missing_sections() and "intended_use" not in second.missing_sections()
    version.refresh_from_db()
    assert version.card_completeness == second.completeness
    assert selectors.card_current(version=version) == second
    assert list(selectors.card_list(user=users.viewer, version=version).order_by("revision")) == [first, second]
    assert list(selectors.card_list(user=users.outsider, version=version)) == []
    with audit_context(source="cli", actor=users.author):
        for i in range(len(CARD_SECTION_KEYS)):
            registry.card_save(actor=users.author, version=version, sections={CARD_SECTION_KEYS[i]: long + str(i)})
    assert selectors.card_current(version=version).completeness == 100


def test_the_diff_names_what_changed(users, model, make_version):
    old = make_version(model, metrics={"auc": 0.8, "f1": 0.7}, hyperparameters={"depth": 4}, tags=["a", "b"])
    new = make_version(
        model, metrics={"auc": 0.85, "recall": 0.6}, hyperparameters={"depth": 6}, tags=["b", "c"], framework="xgboost"
    )
    diff = selectors.version_diff(old=old, new=new)
    fields = {row["field"]: (row["old"], row["new"]) for row in diff["fields"]}
    assert fields["framework"] == ("sklearn", "xgboost")
    assert "artifact_sha256" in fields
    metrics = {row["key"]: row for row in diff["metrics"]}
    assert metrics["auc"]["delta"] == pytest.approx(0.05)
    assert metrics["f1"] == {"key": "f1", "old": 0.7, "new": None}
    assert metrics["recall"] == {"key": "recall", "old": None, "new": 0.6}
    assert diff["hyperparameters"] == [{"key": "depth", "old": 4, "new": 6, "delta": 2}]
    assert diff["tags"] == {"added": ["c"], "removed": ["a"]}
    assert selectors.version_previous(user=users.viewer, version=new) == old
    assert selectors.version_previous(user=users.outsider, version=new) is None


def test_stage_counts_are_scoped_to_the_user(users, model, make_version):
    make_version(model)
    review = make_version(model)
    move(review, "in_review", actor=users.author)
    assert selectors.stage_counts(user=users.viewer)["draft"] == 1
    assert selectors.stage_counts(user=users.viewer)["in_review"] == 1
    assert sum(selectors.stage_counts(user=users.outsider).values()) == 0


def test_api_filters_use_the_shared_filtersets(api, users, model, make_model, make_version):
    high = make_model("fraud", risk_tier="high", use_case="card fraud")
    v1 = make_version(model, framework="sklearn")
    v2 = make_version(high, framework="xgboost", artifact_format="xgboost")
    move(v2, "in_review", actor=users.author)
    client = api.as_user(users.viewer)

    def ids(url):
        r = client.get(url)
        assert r.status_code == 200, r.content[:300]
        return [row["id"] for row in r.json()["results"]]

    assert ids("/api/v1/models/?risk_tier=high") == [high.pk]
    assert ids("/api/v1/models/?q=fraud") == [high.pk]
    assert ids("/api/v1/models/?search=credit") == [model.pk]
    assert ids("/api/v1/models/?stage=in_review") == [high.pk]
    assert ids("/api/v1/models/?ordering=-name") == [high.pk, model.pk]
    assert ids(f"/api/v1/versions/?model={high.pk}") == [v2.pk]
    assert ids("/api/v1/versions/?framework=xgboost&artifact_format=xgboost") == [v2.pk]
    assert ids("/api/v1/versions/?stage=draft") == [v1.pk]
    assert ids(f"/api/v1/versions/?artifact_sha256={v1.artifact_sha256}") == [v1.pk]
    assert ids("/api/v1/versions/") == [v2.pk, v1.pk]
    assert_error(client.get("/api/v1/models/?risk_tier=extreme"), 400, "invalid")
    assert_error(client.get("/api/v1/versions/?stage=launched"), 400, "invalid")


def test_a_tampered_artifact_is_not_served(api, users, version):
    store = storages["artifacts"]
    path = store.path(version.artifact_path)
    with open(path, "r+b") as fh:
        fh.write(b"\x00")
    r = api.as_user(users.viewer).get(f"/api/v1/versions/{version.pk}/artifact/")
    assert_error(r, 409, "artifact_digest_mismatch")


def test_a_missing_artifact_is_a_conflict_not_a_crash(api, users, version):
    storages["artifacts"].delete(version.artifact_path)
    r = api.as_user(users.viewer).get(f"/api/v1/versions/{version.pk}/artifact/")
    assert_error(r, 409, "artifact_missing")


def test_the_artifact_is_streamed_with_its_digest(api, users, model, make_version):
    content = b"\x80\x04" + bytes(range(256)) * 10
    version = make_version(model, content=content)
    r = api.as_user(users.viewer).get(f"/api/v1/versions/{version.pk}/artifact/")
    assert r.status_code == 200
    assert b"".join(r.streaming_content) == content
    assert r["Content-Length"] == str(len(content))
    assert r["X-Artifact-SHA256"] == hashlib.sha256(content).hexdigest()
    assert r["Content-Disposition"] == 'attachment; filename="model.joblib"'
    assert list(artifacts.open_verified(version.artifact_path, sha256=version.artifact_sha256)) == [content]


@pytest.mark.parametrize(
    "field, value",
    [("metrics", {"auc": "high"}), ("hyperparameters", ["C", 1]), ("tags", ["x" * 51])],
)
def test_services_refuse_badly_shaped_metadata_whatever_door_it_came_in_by(model, users, field, value):
    with audit_context(source="cli", actor=users.author), pytest.raises(ValidationFailed) as refused:
        registry.version_create(actor=users.author, model=model, artifact=make_artifact(), **{field: value})
    assert field in refused.value.fields
    assert not ModelVersion.objects.filter(model=model).exists()
