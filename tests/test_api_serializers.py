from rest_framework import serializers

from governance.registry.api import VersionOut
from tests.conftest import move


def _generic(instance) -> dict:
    """What DRF renders from VersionOut's declared fields, bypassing its hand-written fast path."""
    return serializers.Serializer.to_representation(VersionOut(), instance)


def test_the_fast_version_rendering_equals_the_declared_fields(version, users, make_version, model):
    version = move(version, "in_review", actor=users.author)
    version.refresh_from_db()
    assert VersionOut(version).data == _generic(version)
    assert VersionOut(version).data["allowed_transitions"] == ["approved", "changes_requested", "rejected", "draft"]

    orphan = make_version(model, tags=["x"], metrics={"auc": 0.7})
    orphan.created_by = None
    assert VersionOut(orphan).data == _generic(orphan)
    assert VersionOut(orphan).data["created_by"] is None


def test_the_api_list_and_detail_render_through_the_same_path(api, users, version):
    client = api.as_user(users.viewer)
    listed = client.get("/api/v1/versions/", {"model": version.model_id}).json()["results"][0]
    detail = client.get(f"/api/v1/versions/{version.pk}/").json()
    assert listed == detail
    version.refresh_from_db()
    assert detail == _generic(version)
