"""Issue 13, point 5, the periodic reconcile, with a real MLServer: Celery beat sends
``workers.deploy.reconcile_backends`` every SERVING_RECONCILE_SECONDS to a real worker on the deploy
queue, which compares each environment's backend (its repository index) with what Charter says is live.
A model loaded behind Charter's back through MLServer's own repository API, and a live release unloaded
the same way, are each reported once (a ``serving.drift`` audit event and a notification to the people
who can act on it) however many runs see them, and recorded again when they are gone
(``serving.drift.resolved``). A backend that does not answer is reported once too, and the run goes on
with the other environments.
"""

from __future__ import annotations

import json
import re

import joblib
import pytest
import requests

from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.notifications.models import Notification
from governance.serving.models import Environment
from governance.serving.services import endpoint_name
from tests.conftest import wait_for
from tests.serving_support import NO_GATES, approved_version, deploy_worker, loaded, trained, worker_log
from tests.test_serving_crash import _beat
from tests.test_serving_e2e import act, finished, operator_client
from workers.deploy import reconcile_backends

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("fast_passwords")]

DRIFT = ("serving.drift", "serving.drift.resolved")


@pytest.fixture
def served_model(make_model, superuser):
    from governance.approvals import services as approvals

    model = make_model("fraud-score")
    with audit_context(source="cli", actor=superuser):
        policy = approvals.policy_create(actor=superuser, name="Reconcile test policy", rules=NO_GATES)
        approvals.policy_assign(actor=superuser, policy=policy, model=model)
    return model


@pytest.fixture
def clean_staging(mlservers):
    """The module's staging MLServer with nothing loaded, before and after the test (the database is
    emptied after each test; a release left loaded would be a stranger to the next one)."""

    def unload_all():
        server = mlservers["staging"]
        for name in loaded(server):
            requests.post(f"{server.url}/v2/repository/models/{name}/unload", timeout=10)
        for settings_file in server.directory.glob("*/model-settings.json"):
            settings_file.unlink()

    unload_all()
    yield mlservers["staging"]
    unload_all()


def load_behind_charters_back(server, name: str, seed: int = 9) -> None:
    """What someone with access to the MLServer could do: a model folder in its repository, then its
    repository API's load."""
    folder = server.directory / name
    folder.mkdir()
    joblib.dump(trained(seed)[0], folder / "model.joblib")
    settings = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (folder / "model-settings.json").write_text(json.dumps(settings))
    r = requests.post(f"{server.url}/v2/repository/models/{name}/load", timeout=60)
    assert r.status_code == 200, r.text[:300]


def repository(server, verb: str, name: str) -> None:
    r = requests.post(f"{server.url}/v2/repository/models/{name}/{verb}", timeout=60)
    assert r.status_code == 200, r.text[:300]


def drift_events(environment: Environment) -> list[tuple[str, str]]:
    """(action, key) of the environment's drift events, oldest first."""
    return [
        (e.action, json.loads(e.changes)["after"]["key"])
        for e in AuditEvent.objects.filter(object_id=str(environment.pk), action__in=DRIFT).order_by("seq")
    ]


def runs(proc) -> int:
    """Reconcile runs the worker finished."""
    return len(re.findall(rb"reconcile_backends\[[^\]]+\] succeeded", b"".join(proc.log)))


def wait_runs(proc, more: int, timeout: float = 30) -> None:
    target = runs(proc) + more
    assert wait_for(lambda: runs(proc) >= target, timeout=timeout, interval=0.1), worker_log(proc)


def drift_notifications(user) -> list[str]:
    return list(Notification.objects.filter(recipient=user, event="serving.drift").values_list("title", flat=True))


@pytest.mark.django_db(transaction=True)
def test_drift_on_a_real_mlserver_is_reported_once_and_recorded_when_gone(
    api, users, served_model, serving_settings, mlservers, clean_staging, tmp_path
):
    staging = clean_staging
    environment = Environment.objects.get(name="staging")
    # watched for a while after the deploy: a reconcile runs while the new release is loaded and not yet
    # recorded, and must not take an action in flight for drift
    environment.observation_seconds, environment.min_requests = 4, 1_000_000
    environment.save(update_fields=["observation_seconds", "min_requests"])
    v1 = approved_version(api, users, served_model, seed=1)
    live = f"{endpoint_name(served_model)}-v1"
    ci = operator_client(api, users)
    with _beat(tmp_path, SERVING_RECONCILE_SECONDS=1), deploy_worker(serving_settings, mlservers) as proc:
        action_id = act(ci, "deploy", v1).json()["id"]

        def probed() -> bool:
            body = ci.get(f"/api/v1/deployment-actions/{action_id}/").json()
            return any(step["step"] == "probe" for step in body["steps"])

        # the worker (solo pool) is busy with the deploy: this reconcile runs here, while the new release is
        # loaded, probed and watched, and not yet recorded as live
        assert wait_for(probed, timeout=60, interval=0.05), worker_log(proc)
        assert reconcile_backends.apply().get()["staging"] == {"found": 0, "resolved": 0, "open": 0}
        assert ci.get(f"/api/v1/deployment-actions/{action_id}/").json()["status"] == "running"
        deployed = finished(ci, action_id, proc)
        assert deployed["status"] == "succeeded", deployed
        wait_runs(proc, 2)  # and beat's, after it
        assert drift_events(environment) == [], "a deploy in flight, or done, was taken for drift"

        # a model loaded behind Charter's back: reported to the site administrators (no team owns it)
        load_behind_charters_back(staging, "shadow-model")
        assert wait_for(lambda: drift_events(environment), timeout=30), worker_log(proc)
        assert drift_events(environment) == [("serving.drift", "foreign:shadow-model")]
        event = AuditEvent.objects.get(action="serving.drift")
        after = json.loads(event.changes)["after"]
        assert after["kind"] == "foreign" and "Charter did not deploy it" in after["detail"]
        assert event.team_id is None and event.actor_id is None
        assert drift_notifications(users.superuser) == ["Drift in staging: shadow-model"]
        assert drift_notifications(users.operator) == []

        # the live release unloaded behind Charter's back: reported to the owning team's operators and admins
        repository(staging, "unload", live)
        assert wait_for(lambda: len(drift_events(environment)) == 2, timeout=30), worker_log(proc)
        assert drift_events(environment)[-1] == ("serving.drift", f"missing:{live}")
        event = AuditEvent.objects.filter(action="serving.drift").order_by("-seq").first()
        assert event.team_id == served_model.team_id
        for who in (users.operator, users.admin):
            assert drift_notifications(who) == [f"Drift in staging: {live}"]
        for who in (users.viewer, users.author, users.approver):
            assert drift_notifications(who) == []

        # more runs see the same two differences: nothing is reported again
        wait_runs(proc, 3)
        assert drift_events(environment) == [
            ("serving.drift", "foreign:shadow-model"),
            ("serving.drift", f"missing:{live}"),
        ]
        assert len(drift_notifications(users.superuser)) == 1 and len(drift_notifications(users.operator)) == 1

        # put right: each difference recorded as gone, once
        repository(staging, "unload", "shadow-model")
        repository(staging, "load", live)
        assert wait_for(lambda: len(drift_events(environment)) == 4, timeout=30), worker_log(proc)
        wait_runs(proc, 2)
    assert drift_events(environment)[2:] == [
        ("serving.drift.resolved", "foreign:shadow-model"), ("serving.drift.resolved", f"missing:{live}"),
    ] or drift_events(environment)[2:] == [
        ("serving.drift.resolved", f"missing:{live}"), ("serving.drift.resolved", "foreign:shadow-model"),
    ]  # fmt: skip
    last = AuditEvent.objects.filter(action="serving.drift.resolved").order_by("-seq").first()
    assert json.loads(last.changes)["after"]["open"] == {}
    assert {name: state for name, state in loaded(staging).items() if state != "UNAVAILABLE"} == {live: "READY"}


@pytest.mark.django_db
def test_an_unreachable_backend_is_reported_once_and_the_other_environments_are_still_compared(
    superuser, users, serving_settings, mlservers, clean_staging
):
    from governance.serving import services
    from workers.serving.mlserver_process import free_port

    with audit_context(source="cli", actor=superuser):
        gone = services.backend_create(
            actor=superuser, name="gone", kind="mlserver", url=f"http://127.0.0.1:{free_port()}",
            config={"repository_dir": "/nonexistent"},
        )  # fmt: skip
        edge = services.environment_create(actor=superuser, name="edge", backend=gone)
    staging = Environment.objects.get(name="staging")
    load_behind_charters_back(clean_staging, "stray-model")

    first = reconcile_backends.apply().get()  # in this process: it must return, not raise
    assert first["edge"] == {"found": 1, "resolved": 0, "open": 1}
    assert first["staging"] == {"found": 1, "resolved": 0, "open": 1}
    assert first["production"] == {"found": 0, "resolved": 0, "open": 0}
    assert drift_events(edge) == [("serving.drift", "unreachable")]
    event = AuditEvent.objects.get(action="serving.drift", object_id=str(edge.pk))
    assert "did not answer" in json.loads(event.changes)["after"]["detail"]
    assert drift_events(staging) == [("serving.drift", "foreign:stray-model")]
    assert sorted(drift_notifications(superuser)) == ["Drift in edge: the backend", "Drift in staging: stray-model"]

    again = reconcile_backends.apply().get()
    assert again["edge"] == {"found": 0, "resolved": 0, "open": 1}
    assert again["staging"] == {"found": 0, "resolved": 0, "open": 1}
    assert drift_events(edge) == [("serving.drift", "unreachable")]
    assert len(drift_notifications(superuser)) == 2
