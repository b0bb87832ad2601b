import pytest
from rest_framework import serializers

from governance.core.api import FlatInput
from governance.registry.api import VersionIn, VersionOut
from tests.conftest import make_artifact, move


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


def test_the_first_page_of_one_model_equals_the_filtered_list(api, users, model, make_model, make_version):
    """``?model=N`` alone takes a hand-written query; any other filter takes django-filter and the
    ORM. Both must answer the same page with the same cursor, and the cursor must lead on."""
    other = make_model("other")
    made = []
    for i in range(7):
        made.append(make_version(model, content=f"m{i}".encode(), metrics={"auc": i / 10}, tags=[f"t{i}"]))
        make_version(other, content=f"o{i}".encode())
    move(made[2], "in_review", actor=users.author)
    client = api.as_user(users.viewer)
    fast = client.get("/api/v1/versions/", {"model": model.pk, "page_size": 3}).json()
    generic = client.get("/api/v1/versions/", {"model": model.pk, "page_size": 3, "stage": ""}).json()
    assert fast["results"] == generic["results"]
    assert [v["number"] for v in fast["results"]] == [7, 6, 5]
    assert fast["previous"] is None and generic["previous"] is None
    cursor = fast["next"].split("cursor=")[1].split("&")[0]
    assert cursor == generic["next"].split("cursor=")[1].split("&")[0]
    second = client.get(fast["next"]).json()
    third = client.get(second["next"]).json()
    assert [v["number"] for v in second["results"] + third["results"]] == [4, 3, 2, 1]
    assert third["next"] is None

    everything = client.get("/api/v1/versions/", {"model": model.pk}).json()
    assert everything["next"] is None and len(everything["results"]) == 7
    assert everything["results"] == client.get("/api/v1/versions/", {"model": model.pk, "stage": ""}).json()["results"]


def test_the_first_page_of_one_model_hides_what_the_user_cannot_see(api, users, model, make_version):
    make_version(model)
    outsider = api.as_user(users.outsider)
    assert outsider.get("/api/v1/versions/", {"model": model.pk}).json() == {
        "next": None, "previous": None, "results": []
    }  # fmt: skip
    assert api.as_user(users.viewer).get("/api/v1/versions/", {"model": 10**12}).json()["results"] == []
    assert api.as_user(users.viewer).get("/api/v1/versions/", {"model": "abc"}).status_code == 400


def test_flat_input_copies_its_fields_per_instance():
    """FlatInput shares the declared fields' settings, never their binding or their errors."""
    good = VersionIn(data={"model": "3", "artifact": make_artifact(b"x"), "framework": "sklearn"})
    bad = VersionIn(data={"model": "x", "framework": "cobol", "training_data_ref": "r" * 501})
    assert good.is_valid(), good.errors
    assert not bad.is_valid()
    assert set(bad.errors) == {"model", "framework", "artifact", "training_data_ref"}
    for name in ("model", "framework", "training_data_ref"):
        assert good.fields[name] is not bad.fields[name]
        assert good.fields[name].parent is good and bad.fields[name].parent is bad
        assert VersionIn._declared_fields[name].parent is None  # the prototypes stay unbound
    assert good.validated_data["model"] == 3

    class Nested(FlatInput):
        names = serializers.ListField(child=serializers.CharField())

    with pytest.raises(TypeError, match="plain fields only"):
        Nested().get_fields()
