"""The serving pages: what is live where (now and at an instant), each environment, each action with
its live progress, the version page's "Serving" card with its confirm-first action buttons and its
probe request, the "Live" column of the models list and the home page's "Live now" panel; who may see
and do what; bad input is a 4xx page, never a 500.

Deployments are made here with the ORM (a succeeded ``DeploymentAction`` and its ``Deployment``) as
the worker would have recorded them: the worker path, against real MLServer processes, is tested by
the serving suite; these tests are about what the pages show and what their forms ask the services.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.registry.models import Stage
from governance.serving import services
from governance.serving.models import (
    ActionStatus,
    Deployment,
    DeploymentAction,
    DeploymentState,
    Environment,
    ServingBackend,
    VersionProbe,
)
from tests.test_approvals import NO_GATES_ONE_APPROVER, decide, request

pytestmark = pytest.mark.usefixtures("fast_passwords")

PROBE = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}
T0 = dt.datetime(2026, 1, 10, 9, 0, tzinfo=dt.UTC)


def env(name: str) -> Environment:
    return Environment.objects.get(name=name)  # staging and production exist from the start (migration 0002)


def went_live(version, environment, *, since, until=None, state=DeploymentState.LIVE, actor=None, approval=None):
    """What the worker records when an action succeeds: the action, and the deployment it made."""
    action = DeploymentAction.objects.create(
        kind="canary" if state == DeploymentState.CANARY else "deploy", environment=environment, model=version.model,
        version=version, status=ActionStatus.SUCCEEDED, requested_by=actor, started_at=since, finished_at=since,
        artifact_sha256=version.artifact_sha256,
        steps=[{"at": since.isoformat(), "step": "done", "status": "ok", "message": "Deploy done."}],
    )  # fmt: skip
    DeploymentAction.objects.filter(pk=action.pk).update(requested_at=since)
    return Deployment.objects.create(
        environment=environment, model=version.model, version=version, state=state, since=since, until=until,
        traffic_percent=10 if state == DeploymentState.CANARY else 100, action=action, approval_request=approval,
        policy_revision=approval.policy_revision if approval is not None else None,
    )  # fmt: skip


@pytest.fixture
def approved(users, superuser, model, version):
    """``version`` approved for staging and production under a policy with no gates, with a probe."""
    from governance.approvals import services as approvals

    with audit_context(source="cli", actor=superuser):
        policy = approvals.policy_create(actor=superuser, name="Test policy", rules=NO_GATES_ONE_APPROVER)
        approvals.policy_assign(actor=superuser, policy=policy, model=model)
    review = request(version, users.author, ["staging", "production"])
    decide(review, users.approver)
    version.refresh_from_db()
    assert version.stage == Stage.APPROVED
    with audit_context(source="cli", actor=users.operator):
        services.probe_set(actor=users.operator, version=version, payload=PROBE)
    version.review = review
    return version


@pytest.fixture
def history(users, model, make_version, approved):
    """v1 live in staging from T0 to T0+2d, then v2 live from T0+2d until now; v1 live in production."""
    v1 = approved
    v2 = make_version(model)
    staging, production = env("staging"), env("production")
    first = went_live(v1, staging, since=T0, until=T0 + dt.timedelta(days=2), actor=users.operator,
                      approval=v1.review)  # fmt: skip
    second = went_live(v2, staging, since=T0 + dt.timedelta(days=2), actor=users.operator)
    Deployment.objects.filter(pk=first.pk).update(ended_by_action=second.action)
    prod = went_live(v1, production, since=T0 + dt.timedelta(days=1), actor=users.operator, approval=v1.review)
    return {"v1": v1, "v2": v2, "staging": first, "staging_now": second, "production": prod}


def _html(response) -> str:
    return response.content.decode()


def _section(body: str, environment: str) -> str:
    """The card of one environment on the live or timeline page, up to its chart."""
    part = body.split(f'id="env-{environment}"', 1)[1]
    part = re.split(r'id="env-|data-figure=', part, maxsplit=1)[0]
    return part


# --- pages render, and show only what a user may see and do ---------------------------------------


def test_every_serving_page_renders_for_an_operator_and_a_viewer(login, users, history):
    v1 = history["v1"]
    action = history["staging_now"].action
    pages = [
        reverse("serving"), reverse("environment-detail", args=["staging"]), reverse("serving-timeline"),
        reverse("deployment-action-detail", args=[action.pk]), v1.get_absolute_url(), reverse("models"),
        reverse("home"),
    ]  # fmt: skip
    for user in (users.operator, users.viewer):
        client = login(user)
        for path in pages:
            response = client.get(path)
            assert response.status_code == 200, (user, path, response.status_code)
    body = _html(login(users.viewer).get(reverse("serving")))
    staging = _section(body, "staging")
    assert f"v{history['v2'].number}" in staging and "credit-scoring" in staging and "operator" in staging
    assert f"v{v1.number}</a>" not in staging  # v1 left staging
    production = _section(body, "production")
    assert f"review #{v1.review.pk}" in production and "Test policy" in production and " r1" in production
    assert reverse("environment-detail", args=["production"]) in body


def test_the_viewer_sees_no_action_buttons_and_the_operator_sees_those_that_fit(login, users, history):
    v1, v2 = history["v1"], history["v2"]
    viewer = _html(login(users.viewer).get(v1.get_absolute_url()))
    assert 'id="serving"' in viewer and 'data-testid="serving-action-' not in viewer
    assert "Save probe" not in viewer  # viewers see the probe, they do not set it
    operator = _html(login(users.operator).get(v1.get_absolute_url()))
    # v1: live in production (retire), served in staging before and v2 live there now (rollback, canary...)
    assert reverse("serving-action", args=[v1.pk, "production", "retire"]) in operator
    assert reverse("serving-action", args=[v1.pk, "staging", "rollback"]) in operator
    assert reverse("serving-action", args=[v1.pk, "production", "deploy"]) not in operator  # already live there
    assert "Save probe" in operator and "input-0" in operator
    # v2 never served in production before, nor in staging before now: no rollback offered to it
    v2_page = _html(login(users.operator).get(v2.get_absolute_url()))
    assert reverse("serving-action", args=[v2.pk, "staging", "retire"]) in v2_page
    assert "/rollback/" not in v2_page
    # a canary only where the backend can split traffic: not on MLServer (and the confirm page says why)
    assert reverse("serving-action", args=[v2.pk, "production", "deploy"]) in v2_page
    assert "/canary/" not in v2_page
    confirm = _html(login(users.operator).get(reverse("serving-action", args=[v2.pk, "production", "canary"])))
    assert "capability_missing" in confirm and "cannot split traffic" in confirm


def test_a_canary_is_offered_where_the_backend_splits_traffic(login, users, superuser, history):
    with audit_context(source="cli", actor=superuser):
        backend = services.backend_create(actor=superuser, name="kserve", kind="kserve", url="https://k8s.example.com")
        services.environment_create(actor=superuser, name="eu-prod", backend=backend, position=30)
    went_live(history["v1"], env("eu-prod"), since=T0, actor=users.operator)
    v2 = history["v2"]
    page = _html(login(users.operator).get(v2.get_absolute_url()))
    assert reverse("serving-action", args=[v2.pk, "eu-prod", "canary"]) in page
    went_live(v2, env("eu-prod"), since=T0 + dt.timedelta(hours=1), state=DeploymentState.CANARY, actor=users.operator)
    page = _html(login(users.operator).get(v2.get_absolute_url()))
    assert reverse("serving-action", args=[v2.pk, "eu-prod", "promote"]) in page
    assert reverse("serving-action", args=[v2.pk, "eu-prod", "retire"]) in page
    assert "Canary · 10%" in page.split('data-environment="eu-prod"', 1)[1].split("</tr>", 1)[0]


def test_the_version_page_shows_where_it_is_live_and_its_history(login, users, history):
    v1 = history["v1"]
    body = _html(login(users.viewer).get(v1.get_absolute_url()))
    card = body.split('id="serving"', 1)[1]
    assert "live in production" in card
    rows = card.split('data-testid="serving-history"', 1)[1].split("</table>", 1)[0]
    assert rows.count("<tr>") == 3  # the header, staging (ended) and production (live)
    assert "2026-01-10 09:00 UTC" in rows and "2026-01-12 09:00 UTC" in rows and "still live" in rows


def test_another_teams_user_gets_404_on_an_action_page_and_sees_none_of_its_deployments(login, users, history):
    action = history["staging_now"].action
    outsider = login(users.outsider)
    assert outsider.get(reverse("deployment-action-detail", args=[action.pk])).status_code == 404
    assert outsider.get(reverse("deployment-action-progress", args=[action.pk])).status_code == 404
    body = _html(outsider.get(reverse("serving")))
    assert "credit-scoring" not in body and "Nothing of yours is live in staging" in body
    assert "credit-scoring" not in _html(outsider.get(reverse("serving-timeline"), {"at": "2026-01-11T00:00"}))
    assert outsider.get(reverse("serving-action", args=[history["v1"].pk, "staging", "deploy"])).status_code == 404
    # environments are site-wide: their page renders, with nothing of another team's on it
    page = outsider.get(reverse("environment-detail", args=["staging"]))
    assert page.status_code == 200 and "credit-scoring" not in _html(page)


def test_the_environment_page_shows_the_backend_without_credentials_and_pages_its_actions(login, users, superuser,
                                                                                          model, make_version):  # fmt: skip
    with audit_context(source="cli", actor=superuser):
        backend = services.backend_create(
            actor=superuser, name="kserve-eu", kind="kserve", url="https://deployer:hunter2@k8s.example.com:6443/?token=s3cret",
            credentials="kubeconfig-secret-text",
        )  # fmt: skip
        services.environment_create(actor=superuser, name="eu-prod", backend=backend, position=30, max_p95_ms=250)
    environment = env("eu-prod")
    versions = [make_version(model) for _ in range(3)]
    for i in range(30):
        went_live(versions[i % 3], environment, since=T0 + dt.timedelta(hours=i), until=T0 + dt.timedelta(hours=i + 1),
                  actor=users.operator)  # fmt: skip
    client = login(users.viewer)
    body = _html(client.get(reverse("environment-detail", args=["eu-prod"])))
    assert "https://k8s.example.com:6443/" in body and "KServe" in body and "250 ms" in body
    for secret in ("hunter2", "deployer", "s3cret", "kubeconfig-secret-text"):
        assert secret not in body
    assert "stored, encrypted" in body
    assert "1–25 of 30" in body
    second = client.get(reverse("environment-detail", args=["eu-prod"]), {"page": 2})
    assert second.status_code == 200 and len(second.context["page"].object_list) == 5
    assert client.get(reverse("environment-detail", args=["no-such-env"])).status_code == 404


# --- the action page follows the action live ---------------------------------------------------------


def test_an_action_page_polls_while_in_flight_and_stops_once_it_ended(login, users, approved, monkeypatch):
    monkeypatch.setattr("governance.celery.app.send_task", lambda *a, **k: None)  # nobody runs it but this test
    with audit_context(source="cli", actor=users.operator):
        action = services.action_request(actor=users.operator, environment=env("staging"), version=approved,
                                         kind="deploy").action  # fmt: skip
    client = login(users.viewer)
    page = _html(client.get(action.get_absolute_url()))
    assert 'hx-trigger="every 1s"' in page and reverse("deployment-action-progress", args=[action.pk]) in page
    assert "Queued" in page and page.count('id="action-status"') == 1 and "hx-swap-oob" not in page
    # the gate the request saw, drawn as the version page draws it
    assert "gate-env gate-pass" in page and "may be served in staging" in page
    with audit_context(source="task"):
        started = services.action_start(action_id=action.pk, host="test-host")
        services.action_log(action_id=action.pk, lease=started.lease_token, step="load", message="Loaded credit-v1")
    partial = client.get(reverse("deployment-action-progress", args=[action.pk]))
    text = _html(partial)
    assert "Loaded credit-v1" in text and "Started on test-host" in text and "HX-Refresh" not in partial
    badge = text.split('id="action-status"', 1)[1].split("</span>", 1)[0]
    assert 'hx-swap-oob="true"' in badge and "Running" in badge and "run-running" in badge
    with audit_context(source="task"):
        services.action_fail(action_id=action.pk, lease=started.lease_token, code="backend_unreachable",
                             message="The backend did not answer at http://127.0.0.1:8181.")  # fmt: skip
    done = client.get(reverse("deployment-action-progress", args=[action.pk]))
    assert done["HX-Refresh"] == "true" and "every 1s" not in _html(done)
    final = _html(client.get(action.get_absolute_url()))
    assert "backend_unreachable" in final and "The backend did not answer" in final and "every 1s" not in final


def test_an_action_page_shows_the_digest_handed_over_and_the_steps(login, users, history):
    action = history["staging_now"].action
    body = _html(login(users.viewer).get(action.get_absolute_url()))
    assert history["v2"].artifact_sha256 in body and "Deploy done." in body and "Succeeded" in body


# --- confirm first: the gate and any refusal, before anything is queued ---------------------------------


def test_the_confirm_page_shows_the_gate_verdict_and_the_refusal(login, users, version):
    """A version without approval: the gate's lines and the sentence the service would refuse with."""
    url = reverse("serving-action", args=[version.pk, "staging", "deploy"])
    response = login(users.operator).get(url)
    assert response.status_code == 200
    body = _html(response)
    assert "gate-env gate-" in body and 'class="gate-line is-' in body  # the verdict, line by line
    assert 'data-testid="refusal"' in body and "gate_failed" in body
    assert "The deployment gate refuses it:" in body and "is not yet approved for staging" in body
    assert 'type="submit" class="btn btn-primary">Deploy</button>' not in body  # nothing to confirm
    assert login(users.viewer).get(url).status_code == 403  # the page is for those who may deploy
    assert login(users.operator).get(url.replace("/deploy/", "/explode/")).status_code == 404
    assert (
        login(users.operator).get(reverse("serving-action", args=[version.pk, "nowhere", "deploy"])).status_code == 404
    )


def test_a_refused_post_shows_the_sentence_stays_on_the_page_and_records_no_action(login, users, version):
    url = reverse("serving-action", args=[version.pk, "staging", "deploy"])
    response = login(users.operator).post(url, {"reason": "Ship it"})
    assert response.status_code == 409
    body = _html(response)
    assert "The deployment gate refuses it:" in body and "Ship it" in body  # the form keeps what was typed
    assert not DeploymentAction.objects.exists()
    refused = AuditEvent.objects.get(action="serving.action.refused")
    changes = json.loads(refused.changes)
    assert refused.actor == users.operator and changes["code"] == "gate_failed" and changes["kind"] == "deploy"
    # a viewer's POST: a 403 page that says why, and no action
    denied = login(users.viewer).post(url, {"reason": ""})
    assert denied.status_code == 403 and "operator or admin role" in _html(denied)
    assert not DeploymentAction.objects.exists()


def test_a_refusal_other_than_the_gate_is_shown_too(login, users, history):
    """v1 is live in production: deploying it there again is refused as already live."""
    url = reverse("serving-action", args=[history["v1"].pk, "production", "deploy"])
    client = login(users.operator)
    assert "already_live" in _html(client.get(url))
    before = DeploymentAction.objects.count()
    response = client.post(url, {"reason": ""})
    assert response.status_code == 409 and "is already live in production" in _html(response)
    assert DeploymentAction.objects.count() == before


def test_a_confirmed_action_is_queued_and_the_browser_goes_to_its_page(login, users, approved, monkeypatch):
    monkeypatch.setattr("governance.celery.app.send_task", lambda *a, **k: None)
    url = reverse("serving-action", args=[approved.pk, "staging", "deploy"])
    client = login(users.operator)
    page = _html(client.get(url))
    assert "gate-env gate-pass" in page and 'data-testid="refusal"' not in page and ">Deploy</button>" in page
    response = client.post(url, {"reason": "First release to staging."})
    action = DeploymentAction.objects.get()
    assert response.status_code == 302 and response["Location"] == action.get_absolute_url()
    assert (action.kind, action.status, action.requested_by) == ("deploy", ActionStatus.QUEUED, users.operator)
    assert action.reason == "First release to staging." and action.gate["verdict"] == "pass"
    # a second one for the same model and environment while the first is in flight: refused, on the page
    again = client.post(url, {"reason": ""})
    assert again.status_code == 409 and f"Action #{action.pk}" in _html(again)
    assert DeploymentAction.objects.count() == 1


def test_a_reason_too_long_is_a_form_error(login, users, approved):
    url = reverse("serving-action", args=[approved.pk, "staging", "deploy"])
    response = login(users.operator).post(url, {"reason": "x" * 501})
    assert response.status_code == 400 and "at most 500 characters" in _html(response)
    assert not DeploymentAction.objects.exists()


# --- the probe request, from the version page ------------------------------------------------------------


def test_the_probe_request_is_set_from_the_version_page(login, users, version):
    url = reverse("version-probe-edit", args=[version.pk])
    client = login(users.operator)
    ok = client.post(url, {"payload": json.dumps(PROBE)})
    assert ok.status_code == 302 and ok["Location"].endswith(f"/versions/{version.pk}/#serving")
    assert VersionProbe.objects.get(version=version).payload == PROBE
    assert AuditEvent.objects.filter(action="serving.probe.set", object_id=str(version.pk)).count() == 1
    assert "input-0" in _html(client.get(version.get_absolute_url()))

    not_json = client.post(url, {"payload": "{inputs: nope"})
    assert not_json.status_code == 400 and "Enter a valid JSON" in _html(not_json)
    wrong_shape = client.post(url, {"payload": '{"inputs": [{"name": "x"}]}'})
    assert wrong_shape.status_code == 400 and "Each input has a name, a shape" in _html(wrong_shape)
    assert VersionProbe.objects.get(version=version).payload == PROBE  # unchanged by the refused ones
    viewer = login(users.viewer)
    assert viewer.get(url).status_code == 403
    refused = viewer.post(url, {"payload": json.dumps(PROBE)})
    assert refused.status_code == 403 and "to set a probe request" in _html(refused)
    assert login(users.outsider).get(url).status_code == 404


# --- the timeline: what was live at an instant --------------------------------------------------------


def test_the_timeline_shows_what_was_live_at_that_instant_and_not_what_came_later(login, users, history):
    v1, v2 = history["v1"], history["v2"]
    client = login(users.viewer)
    then = client.get(reverse("serving-timeline"), {"at": "2026-01-11T09:00"})
    assert then.status_code == 200
    body = _html(then)
    assert "2026-01-11 09:00:00 UTC" in body
    staging = _section(body, "staging")
    assert f">v{v1.number}</a>" in staging and f">v{v2.number}</a>" not in staging
    production = _section(body, "production")
    assert f">v{v1.number}</a>" in production
    live_then = {(s["environment"].name, d.version_id) for s in then.context["sections"] for d in s["deployments"]}
    assert live_then == {("staging", v1.pk), ("production", v1.pk)}

    # before anything went live in production, and at the instant v2 replaced v1 in staging
    early = client.get(reverse("serving-timeline"), {"at": "2026-01-10T12:00"})
    assert {(s["environment"].name, d.version_id) for s in early.context["sections"] for d in s["deployments"]} == {
        ("staging", v1.pk)
    }
    switch = client.get(reverse("serving-timeline"), {"at": "2026-01-12T09:00:00"})
    assert {d.version_id for s in switch.context["sections"] for d in s["deployments"] if s["environment"].name
            == "staging"} == {v2.pk}  # fmt: skip
    now = client.get(reverse("serving-timeline"))
    assert {(s["environment"].name, d.version_id) for s in now.context["sections"] for d in s["deployments"]} == {
        ("staging", v2.pk),
        ("production", v1.pk),
    }
    # the charts: horizontal bars on a date axis, a bar per deployment around the instant
    spec = json.loads(body.split('id="timeline-staging" type="application/json">', 1)[1].split("</script>", 1)[0])
    bars = [b for trace in spec["data"] for b in trace["base"]]
    assert spec["layout"]["xaxis"]["type"] == "date" and spec["data"][0]["orientation"] == "h"
    assert sorted(bars) == ["2026-01-10 09:00:00", "2026-01-12 09:00:00"]


@pytest.mark.parametrize(
    "value",
    [
        "yesterday", "2026-13-01T00:00", "2026-02-30T10:00", "99999-01-01T00:00", "0001-01-01T00:00:00+21:01",
        "0001-01-01T00:00:00+01:00", "2026-01-01T25:00", "\x00", "1" * 500,
    ],
)  # fmt: skip
def test_a_bad_instant_is_a_400_form_error_never_a_500(login, users, history, value):
    response = login(users.viewer).get(reverse("serving-timeline"), {"at": value})
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["at"], form.errors
    assert form.errors["at"][0] in _html(response)


@pytest.mark.parametrize("value", ["0001-01-01T00:00", "9999-12-31T23:59:59", "2026-01-11"])
def test_instants_at_the_edges_of_the_calendar_are_answered(login, users, history, value):
    """The chart's window (30 days either side) stops at years 1 and 9999 instead of overflowing."""
    response = login(users.viewer).get(reverse("serving-timeline"), {"at": value})
    assert response.status_code == 200
    live_then = {d.version_id for s in response.context["sections"] for d in s["deployments"]}
    assert live_then == ({history["v1"].pk} if value == "2026-01-11" else set() if value.startswith("0001") else
                         {history["v1"].pk, history["v2"].pk})  # fmt: skip


def test_an_instant_with_an_offset_is_read_in_utc(login, users, history):
    """10:00 at +01:00 is 09:00 UTC: the instant v2 replaced v1 in staging."""
    response = login(users.viewer).get(reverse("serving-timeline"), {"at": "2026-01-12T10:00:00+01:00"})
    assert response.status_code == 200
    staging = next(s for s in response.context["sections"] if s["environment"].name == "staging")
    assert [d.version_id for d in staging["deployments"]] == [history["v2"].pk]


# --- the models list and the home page -------------------------------------------------------------------


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_the_models_list_shows_what_is_live_in_one_query_for_the_page(login, users, make_model, make_version):
    staging, production = env("staging"), env("production")

    def add(start, stop):
        for i in range(start, stop):
            version = make_version(make_model(f"model-{i:03d}"))
            went_live(version, staging, since=T0, actor=users.operator)
            went_live(version, production, since=T0, actor=users.operator)

    client = login(users.viewer)
    add(0, 2)
    small = _queries(client, reverse("models"))
    home_small = _queries(client, reverse("home"))
    add(2, 12)
    assert _queries(client, reverse("models")) == small
    assert _queries(client, reverse("home")) == home_small
    body = _html(client.get(reverse("models")))
    assert body.count('data-testid="live-cell"') == 12
    assert "staging v1" in body and "production v1" in body
    home = _html(client.get(reverse("home")))
    panel = home.split('id="live-now"', 1)[1]
    assert "model-000 v1" in panel and "More are live" in panel  # 24 live, 12 shown


def test_a_model_live_nowhere_says_so_and_the_home_panel_says_how_things_go_live(login, users, model, version):
    client = login(users.viewer)
    row = _html(client.get(reverse("models"))).split(model.name, 1)[1].split("</tr>", 1)[0]
    assert 'data-testid="live-cell"' not in row
    assert "Nothing live yet" in _html(client.get(reverse("home")))
    body = _html(client.get(reverse("serving")))
    assert "Nothing of yours is live in staging" in body and "POST /api/v1/deployment-actions/" in body


def test_the_overview_orders_environments_by_position(login, users, superuser, history):
    with audit_context(source="cli", actor=superuser):
        backend = ServingBackend.objects.get(name="local-staging")
        services.environment_create(actor=superuser, name="dev", backend=backend, position=1)
    body = _html(login(users.viewer).get(reverse("serving")))
    assert body.index('id="env-dev"') < body.index('id="env-staging"') < body.index('id="env-production"')


# --- in Chromium: the charts draw -------------------------------------------------------------------------

SCREENSHOTS = Path("/tmp")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_timeline_chart_draws_bars_and_the_serving_card_shows_in_chromium(live_server, users, history):
    from playwright.sync_api import sync_playwright

    from tests.browser import assert_charts_drew, watch_csp
    from tests.test_accessibility_browser import _RUN_AXE, AXE, BLOCKING, WCAG_TAGS, axe_violations
    from tests.test_approvals_browser import _sign_in
    from tests.test_run_command import CHROMIUM, CHROMIUM_FLAGS

    base = live_server.url
    blocking = []

    def accessible(name: str, within: str = "") -> None:  # no WCAG 2.1 A/AA violation of serious or critical impact
        if within:  # only this part of another app's page is ours
            page.wait_for_load_state("networkidle")
            page.evaluate(AXE.read_text())
            found = page.evaluate(_RUN_AXE.replace("axe.run(document,", f"axe.run({json.dumps(within)},"), WCAG_TAGS)
        else:
            found = axe_violations(page)
        blocking.extend(f"{name}: {v['id']} {v['help']} {v['nodes']}" for v in found if v["impact"] in BLOCKING)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = _sign_in(browser, base, "operator")
        csp_violations = watch_csp(page)
        page.goto(f"{base}/serving/timeline/?at=2026-01-11T09:00")
        states = assert_charts_drew(page, at_least=2)  # staging and production
        assert all(s["axes"] == {"x": "date", "y": "category"} for s in states), states
        bars = page.locator("[data-figure='timeline-staging'] .bars path").count()
        assert bars == 2, f"staging should draw a bar per deployment (v1, then v2), drew {bars}"
        page.screenshot(path=str(SCREENSHOTS / "serving-timeline.png"), full_page=True)
        accessible("timeline")

        page.goto(f"{base}/versions/{history['v1'].pk}/")
        card = page.locator("#serving")
        assert card.is_visible() and "live in production" in card.inner_text()
        card.scroll_into_view_if_needed()
        card.screenshot(path=str(SCREENSHOTS / "serving-version-card.png"))
        accessible("version page", within="#serving")
        page.click("[data-testid='serving-action-rollback']")
        assert "/serving/staging/rollback/" in page.url
        page.screenshot(path=str(SCREENSHOTS / "serving-confirm.png"), full_page=True)
        accessible("confirm page")
        for name, path in [
            ("live", "/serving/"), ("action", f"/serving/actions/{history['staging_now'].action.pk}/"),
            ("models", "/models/"), ("home", "/"), ("environment", "/serving/environments/staging/"),
        ]:  # fmt: skip
            page.goto(base + path)
            page.screenshot(path=str(SCREENSHOTS / f"serving-{name}.png"), full_page=True)
            accessible(name)
            if name == "models":
                assert "production v1" in page.locator("[data-testid='live-cell']").first.inner_text()
        browser.close()
    assert not blocking, "\n".join(blocking)
    assert not csp_violations, "\n".join(csp_violations)
