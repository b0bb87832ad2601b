"""List pages run a fixed number of queries whatever the number of rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from governance.core.context import audit_context
from tests.conftest import move

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_for(users):
    client = Client()
    with audit_context(source="cli", actor=users.author):
        client.force_login(users.author)
    return client


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_model_list_queries_do_not_grow_with_rows(client_for, make_model, make_version, users):
    def add(start, stop):
        for i in range(start, stop):
            model = make_model(f"model-{i:03d}", owners=[users.author])
            make_version(model)

    add(0, 3)
    small = _queries(client_for, reverse("models"))
    filtered_small = _queries(client_for, reverse("models"), {"q": "model", "stage": "draft", "sort": "-updated"})
    add(3, 30)
    response = client_for.get(reverse("models"))
    assert len(response.context["page"].object_list) == 25
    assert _queries(client_for, reverse("models")) == small
    assert (
        _queries(client_for, reverse("models"), {"q": "model", "stage": "draft", "sort": "-updated"}) == filtered_small
    )
    assert _queries(client_for, reverse("home")) == _queries(client_for, reverse("home"))


def test_model_page_queries_do_not_grow_with_versions(client_for, model, make_version, users):
    def add(n):
        for _ in range(n):
            version = make_version(model)
        return version

    last = add(3)
    move(last, "in_review", actor=users.author)
    url = reverse("model-detail", args=[model.pk])
    small = _queries(client_for, url)
    last = add(27)
    move(last, "in_review", actor=users.author)
    response = client_for.get(url)
    assert len(response.context["page"].object_list) == 25 and response.context["page"].paginator.num_pages == 2
    assert _queries(client_for, url) == small
    assert _queries(client_for, url, {"page": 2}) == small + 1  # the latest version, no longer on the page
    assert [v.number for v in client_for.get(url, {"page": 2}).context["page"].object_list] == [5, 4, 3, 2, 1]


def test_version_page_queries_do_not_grow_with_history(client_for, model, make_version, users):
    make_version(model)
    version = make_version(model)
    url = reverse("version-detail", args=[version.pk])
    small = _queries(client_for, url)
    move(version, "in_review", "draft", "in_review", "draft", actor=users.author)
    assert _queries(client_for, url) == small


def test_audit_log_queries_do_not_grow_with_events(client_for, make_model, make_version):
    def add(start, stop):
        for i in range(start, stop):
            make_version(make_model(f"audited-{i:03d}"))

    add(0, 2)
    url = reverse("audit-log")
    small = _queries(client_for, url)
    small_filtered = _queries(client_for, url, {"action": "version.create"})
    add(2, 40)
    response = client_for.get(url)
    assert len(response.context["events"]) == 50
    assert _queries(client_for, url) == small
    assert _queries(client_for, url, {"action": "version.create"}) == small_filtered
    older = response.context["older_seq"]
    assert _queries(client_for, url, {"before": older}) <= small
