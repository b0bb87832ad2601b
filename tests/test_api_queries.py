"""List endpoints run a fixed number of queries, whatever the number of rows on the page."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import move

pytestmark = pytest.mark.usefixtures("fast_passwords")


def _models(make_model, users, start: int, stop: int) -> None:
    for i in range(start, stop):
        make_model(f"model-{i:03d}", owners=[users.author, users.approver], business_kpis=[{"name": "kpi"}])


def _versions(make_version, model, users, start: int, stop: int) -> None:
    for i in range(start, stop):
        version = make_version(model, content=b"\x80\x04" + str(i).encode(), metrics={"auc": i / 100}, tags=["t"])
        if i % 3 == 0:
            move(version, "in_review", actor=users.author)


def _count(client, url: str, expected_rows: int) -> int:
    client.get(url)  # warm anything cached per process (content types, the session's first touch)
    with CaptureQueriesContext(connection) as captured:
        r = client.get(url)
    assert r.status_code == 200, r.content[:300]
    body = r.json()
    assert len(body["results"]) == expected_rows, (url, len(body["results"]))
    return len(captured.captured_queries)


def _assert_flat(small: int, large: int, what: str) -> None:
    assert small == large, f"{what}: {small} queries for 3 rows but {large} for 30"


@pytest.mark.parametrize("who", ["author", "superuser"])
def test_the_model_list_does_not_grow_with_its_rows(api, users, make_model, who):
    client = api.as_user(getattr(users, who))
    _models(make_model, users, 0, 3)
    small = _count(client, "/api/v1/models/", 3)
    _models(make_model, users, 3, 30)
    large = _count(client, "/api/v1/models/", 30)
    _assert_flat(small, large, "models")
    _assert_flat(_count(client, "/api/v1/models/?risk_tier=limited&q=model", 30), large, "filtered models")


@pytest.mark.parametrize("who", ["viewer", "superuser"])
def test_the_version_list_does_not_grow_with_its_rows(api, users, model, make_model, make_version, who):
    client = api.as_user(getattr(users, who))
    _versions(make_version, model, users, 0, 3)
    small = _count(client, "/api/v1/versions/", 3)
    one_model = f"/api/v1/versions/?model={model.pk}"  # the hand-written first page
    small_one = _count(client, one_model, 3)
    other = make_model("second")
    _versions(make_version, model, users, 3, 20)
    _versions(make_version, other, users, 20, 30)
    large = _count(client, "/api/v1/versions/", 30)
    _assert_flat(small, large, "versions")
    assert _count(client, f"/api/v1/versions/?model={model.pk}&stage=in_review", 7) == large
    _assert_flat(small_one, _count(client, one_model, 20), "one model's versions")


@pytest.mark.parametrize("who", ["auditor", "superuser"])
def test_the_audit_event_list_does_not_grow_with_its_rows(api, users, make_model, who):
    client = api.as_user(getattr(users, who))
    base = "/api/v1/audit-events/?action=model.create"
    _models(make_model, users, 0, 3)
    small = _count(client, base, 3)
    _models(make_model, users, 3, 30)
    large = _count(client, base, 30)
    _assert_flat(small, large, "audit events")


def test_a_models_audit_trail_does_not_grow_with_its_rows(api, users, model):
    client = api.as_user(users.author)
    url = f"/api/v1/models/{model.pk}/audit/"
    for i in range(2):
        client.patch(f"/api/v1/models/{model.pk}/", {"description": f"edit {i}"}, format="json")
    small = _count(client, url, 3)
    for i in range(2, 29):
        client.patch(f"/api/v1/models/{model.pk}/", {"description": f"edit {i}"}, format="json")
    _assert_flat(small, _count(client, url, 30), "model audit trail")
