"""Every browser page: 200 for a member, 404 for another team's user, a sign-in redirect for anonymous."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.conftest import PASSWORD


def _pages(model, version, team):
    return {
        "home": reverse("home"),
        "models": reverse("models"),
        "model": reverse("model-detail", args=[model.pk]),
        "version": reverse("version-detail", args=[version.pk]),
        "card": reverse("card-edit", args=[version.pk]),
        "upload": reverse("version-upload", args=[model.pk]),
        "register": reverse("model-register"),
        "audit": reverse("audit-log"),
        "tokens": reverse("tokens"),
        "teams": reverse("teams"),
        "team": reverse("team-detail", args=[team.slug]),
    }


@pytest.mark.django_db
def test_every_page_renders_for_an_author(login, users, model, version, team):
    client = login(users.author)
    for name, url in _pages(model, version, team).items():
        response = client.get(url)
        assert response.status_code == 200, (name, response.status_code)
        assert b"Charter" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "reviewer", "approver", "operator", "auditor", "admin", "superuser"])
def test_read_pages_render_for_every_role(login, users, model, version, team, role):
    client = login(getattr(users, role))
    pages = _pages(model, version, team)
    for name in ("home", "models", "model", "version", "audit", "tokens", "teams", "team"):
        assert client.get(pages[name]).status_code == 200, name


@pytest.mark.django_db
def test_anonymous_is_sent_to_sign_in(client, users, model, version, team):
    for name, url in _pages(model, version, team).items():
        response = client.get(url)
        assert response.status_code == 302, name
        assert response["Location"].startswith(reverse("login") + "?next="), name
    assert client.get(reverse("login")).status_code == 200


@pytest.mark.django_db
def test_another_teams_objects_are_not_found(login, users, model, version, team):
    client = login(users.outsider)
    pages = _pages(model, version, team)
    for name in ("model", "version", "card", "upload", "team"):
        response = client.get(pages[name])
        assert response.status_code == 404, name
        assert b"Not found" in response.content
    for url, data in (
        (reverse("version-lifecycle", args=[version.pk]), {"to": "in_review"}),
        (reverse("card-edit", args=[version.pk]), {"intended_use": "x" * 30}),
        (reverse("version-upload", args=[model.pk]), {}),
        (reverse("membership-add", args=[team.slug]), {"username": "outsider", "role": "admin"}),
    ):
        assert client.post(url, data).status_code == 404, url
    # Lists do not show the other team's model or its events either.
    assert model.name.encode() not in client.get(pages["models"]).content
    assert model.name.encode() not in client.get(pages["home"]).content
    assert f"{model.name} v".encode() not in client.get(pages["audit"]).content
    version.refresh_from_db()
    assert version.stage == "draft"


@pytest.mark.django_db
def test_roles_without_the_capability_get_a_403_page_not_a_500(login, users, model, version):
    client = login(users.viewer)
    for url in (
        reverse("model-register"),
        reverse("version-upload", args=[model.pk]),
        reverse("card-edit", args=[version.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"Not allowed" in response.content and b"author" in response.content


@pytest.mark.django_db
def test_sign_in_and_sign_out(client, users):
    response = client.post(reverse("login"), {"username": "author", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302
    bad = client.post(reverse("login"), {"username": "author", "password": "wrong"})
    assert bad.status_code == 200 and b"errorlist" in bad.content


@pytest.mark.django_db
def test_unknown_page_uses_the_helpful_error_page(login, users):
    response = login(users.author).get("/no/such/page/")
    assert response.status_code == 404
    assert b"Go to the dashboard" in response.content


@pytest.mark.django_db
def test_home_shows_stage_counts_chart_data_and_awaiting_review(login, users, model, make_version):
    from tests.conftest import move

    first = make_version(model)
    move(first, "in_review", actor=users.author)
    make_version(model)
    response = login(users.viewer).get(reverse("home"))
    assert response.status_code == 200
    chart = response.context["chart"]
    assert dict(zip(chart["labels"], chart["values"], strict=True)) == {
        "Draft": 1, "In review": 1, "Changes requested": 0, "Rejected": 0, "Approved": 0, "Deployed": 0,
        "Deprecated": 0, "Retired": 0,
    }  # fmt: skip
    assert b'id="stage-chart-data"' in response.content and b"plotly-charter.min.js" in response.content
    assert [v.pk for v in response.context["awaiting"]] == [first.pk]
    assert response.context["models_count"] == 1
    assert any(e.action == "version.transition" for e in response.context["recent"])


@pytest.mark.django_db
def test_actions_a_role_cannot_take_are_not_offered(login, users, model, version):
    viewer = login(users.viewer)
    assert reverse("model-register").encode() not in viewer.get(reverse("home")).content
    assert reverse("model-register").encode() not in viewer.get(reverse("models")).content
    page = viewer.get(reverse("version-detail", args=[version.pk])).content.decode()
    assert reverse("card-edit", args=[version.pk]) not in page
    assert reverse("version-lifecycle", args=[version.pk]) not in page
    assert "needs admin or author" in page
    author = login(users.author)
    assert reverse("model-register").encode() in author.get(reverse("home")).content


@pytest.mark.django_db
def test_model_page_timeline_follows_its_versions(login, users, model, version):
    from tests.conftest import move

    move(version, "in_review", actor=users.author)
    response = login(users.viewer).get(reverse("model-detail", args=[model.pk]))
    actions = [e.action for e in response.context["timeline"]]
    assert actions[:3] == ["version.transition", "version.create", "model.create"]
    assert f"{model.name} v{version.number}".encode() in response.content
