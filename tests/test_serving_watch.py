"""Issue 13 point 6, the watch (beat's ``serving-watch``, ``workers.deploy.watch_live``): the request
figures of what is live, read from the backend's own metrics and shown on the API and the pages, and a
canary's health verdict acted on — rolled back by itself on a breach, promoted by itself once it met the
policy over its window where the environment says so, each through an ordinary action asked for on
behalf of whoever asked for the canary.

Real parts: PostgreSQL, Redis, real MLServer processes and their metrics port, a real worker on the
``deploy`` queue. Canaries need traffic splitting, which MLServer does not do, so the canary tests run
on KServe against a FAKE Kubernetes API server that also answers as the cluster's Prometheus
(``tests/engines/fake_k8s.py``) and say ``fake_k8s_api`` in their names.
"""

from __future__ import annotations

import json

import pytest
import requests

from governance.serving.models import Environment
from governance.serving.services import release_of
from tests.conftest import celery_beat, wait_for
from tests.serving_support import approved_version, data, deploy_worker, oip, predict, worker_log
from tests.test_serving_e2e import act, finished, operator_client, served_model  # noqa: F401 (a fixture)
from workers.deploy import watch_live

pytestmark = [
    pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords"),
]  # fmt: skip


def current(client, environment: str) -> dict[int, dict]:
    env = Environment.objects.get(name=environment)
    r = client.get("/api/v1/deployments/", {"current": "true", "environment": env.pk})
    assert r.status_code == 200, r.content[:300]
    return {d["version_number"]: d for d in r.json()["results"]}


def test_live_figures_from_real_mlserver_metrics(api, users, served_model, serving_settings, mlservers, tmp_path):  # noqa: F811
    staging = mlservers["staging"]
    v1 = approved_version(api, users, served_model, seed=1)
    ci = operator_client(api, users)
    viewer = api.as_user(users.viewer)
    with deploy_worker(serving_settings, mlservers) as proc:
        body = finished(ci, act(ci, "deploy", v1).json()["id"], proc)
        assert body["status"] == "succeeded", (body, worker_log(proc))
    name = release_of(v1).name
    assert current(viewer, "staging")[1]["figures"] is None  # not read yet
    page = viewer.get("/serving/environments/staging/")
    assert b"no figures yet" in page.content

    outcome = watch_live.apply().get()  # the first reading is the baseline: the probe is not counted
    assert outcome["staging"] == {"updated": 1, "asked": []}, outcome
    first = current(viewer, "staging")[1]["figures"]
    assert (first["requests"], first["errors"]) == (0, 0) and first["read_at"], first

    X = data(3, 20)[0]
    for i in range(6):
        predict(staging, name, X[i : i + 1])
    wrong = oip(X[:1, :2])  # two features where the model takes more: the model fails the request
    for _ in range(2):
        r = requests.post(f"{staging.url}/v2/models/{name}/infer", json=wrong, timeout=10)
        assert r.status_code >= 400, r.text[:200]
    watch_live.apply().get()
    figures = current(viewer, "staging")[1]["figures"]
    assert (figures["requests"], figures["errors"]) == (8, 2), figures
    assert figures["error_rate"] == pytest.approx(0.25)
    assert figures["latency_kind"] == "mean" and 0 < figures["latency_ms"] < 5000, figures
    assert figures["read_at"] >= first["read_at"]
    page = viewer.get("/serving/environments/staging/").content.decode()
    assert "<strong>8</strong> req · 25.0% errors · mean" in page, page[page.find("figures") - 200 :][:600]
    overview = viewer.get("/serving/").content.decode()
    assert "<strong>8</strong> req" in overview

    # as deployed: beat sends ``serving-watch`` every SERVING_WATCH_SECONDS to a worker on the deploy queue
    with celery_beat(tmp_path, SERVING_WATCH_SECONDS=1), deploy_worker(serving_settings, mlservers) as proc:
        for i in range(3):
            predict(staging, name, X[i : i + 1])
        served = wait_for(lambda: current(viewer, "staging")[1]["figures"]["requests"] == 11, timeout=30)
        assert served, (current(viewer, "staging")[1]["figures"], worker_log(proc))


# --- canaries on KServe (a fake Kubernetes API server that also answers as Prometheus) ---------------

KS_ENV = "k8s-prod"


def kserve_setup(api, superuser, make_model, fake, tmp_path, *, auto_promote: bool, name: str):
    """A KServe backend whose Prometheus is the fake, an environment judging canaries on 5 requests with
    no observation window, a policy covering it, and a model: made through the API by a site admin."""
    from governance.approvals import services as approvals
    from governance.approvals.models import Policy
    from governance.core.context import audit_context

    admin = api.as_user(superuser)
    r = admin.post("/api/v1/serving-backends/", {
        "name": "kserve-prod", "kind": "kserve", "url": fake.url, "credentials": "k8s-bearer-token",
        "config": {"namespace": KS_NAMESPACE, "storage_uri": "pvc://charter-models/{sha256}",
                   "pvc_mount": str(tmp_path / "pvc"), "prometheus_url": fake.url},
    }, format="json")  # fmt: skip
    assert r.status_code == 201, r.content[:500]
    r = admin.post("/api/v1/environments/", {
        "name": KS_ENV, "backend": r.json()["id"], "canary_percent": 25, "min_requests": 5,
        "max_error_rate": 0.2, "observation_seconds": 0, "canary_auto_promote": auto_promote,
    }, format="json")  # fmt: skip
    assert r.status_code == 201, r.content[:500]
    assert r.json()["canary_auto_promote"] is auto_promote
    rules = {"environments": {KS_ENV: {"min_approvals": 1, "roles": [{"role": "approver"}]}}, "gates": []}
    r = admin.post("/api/v1/policies/", {"name": "KServe watch policy", "rules": rules}, format="json")
    assert r.status_code == 201, r.content[:500]
    model = make_model(name)
    with audit_context(source="cli", actor=superuser):
        approvals.policy_assign(actor=superuser, policy=Policy.objects.get(pk=r.json()["id"]), model=model)
    return model


KS_NAMESPACE = "charter-prod"


def send(fake, model, tag: str, n: int, *, X) -> list[int]:
    """``n`` inference requests through the InferenceService's tag URL (``latest``: the canary, ``prev``:
    the stable release), as clients behind the split would send them; their HTTP statuses."""
    isvc = release_of_endpoint(model)
    url = f"{fake.url}/kserve/{KS_NAMESPACE}/{isvc}/{tag}/v2/models/{isvc}/infer"
    return [requests.post(url, json=oip(X[i : i + 1]), timeout=10).status_code for i in range(n)]


def release_of_endpoint(model) -> str:
    from governance.serving.services import endpoint_name

    return endpoint_name(model)


def canary_on(api, users, model, settings, fake):
    """v1 live and v2 a canary next to it, through the API and a real worker; the operator's client."""
    from tests.test_serving_kserve_e2e import kserve_worker

    envs = (KS_ENV,)
    v1 = approved_version(api, users, model, seed=1, environments=envs)
    v2 = approved_version(api, users, model, seed=2, environments=envs)
    ci = operator_client(api, users)
    with kserve_worker(settings) as proc:
        assert finished(ci, act(ci, "deploy", v1, KS_ENV).json()["id"], proc)["status"] == "succeeded", worker_log(proc)
        body = finished(ci, act(ci, "canary", v2, KS_ENV).json()["id"], proc)
        assert body["status"] == "succeeded", (body, worker_log(proc))
    return v1, v2, ci


def by_version(client) -> dict[int, dict]:
    return current(client, KS_ENV)


def test_a_canary_that_breaches_the_policy_is_rolled_back_by_itself_fake_k8s_api(
    api, users, superuser, make_model, fake_k8s, tmp_path, settings
):
    from governance.audit.models import AuditEvent
    from tests.test_serving_kserve_e2e import kserve_worker, predictor, storage_uri

    model = kserve_setup(api, superuser, make_model, fake_k8s, tmp_path, auto_promote=False, name="fraud-score")
    v1, v2, ci = canary_on(api, users, model, settings, fake_k8s)
    viewer = api.as_user(users.viewer)
    X = data(5, 50)[0]

    assert watch_live.apply().get()[KS_ENV] == {"updated": 2, "asked": []}  # the baseline of both releases
    assert send(fake_k8s, model, "latest", 6, X=X) == [200] * 6
    assert send(fake_k8s, model, "prev", 10, X=X) == [200] * 10
    assert watch_live.apply().get()[KS_ENV] == {"updated": 2, "asked": []}
    now = by_version(viewer)
    assert (now[2]["figures"]["requests"], now[2]["figures"]["errors"]) == (6, 0), now[2]
    assert now[1]["figures"]["requests"] == 10 and now[1]["canary"] is None
    assert now[2]["canary"]["verdict"] == "met" and now[2]["canary"]["decision"] is None  # met, but promoted by hand
    page = viewer.get(f"/serving/environments/{KS_ENV}/").content.decode()
    assert "within the health policy" in page and "<strong>6</strong> req" in page

    fake_k8s.broken.add(storage_uri(v2))  # the canary starts failing its requests
    assert send(fake_k8s, model, "latest", 4, X=X) == [500] * 4
    outcome = watch_live.apply().get()[KS_ENV]
    assert outcome["updated"] == 2 and len(outcome["asked"]) == 1, outcome
    canary = by_version(viewer)[2]
    assert canary["canary"]["verdict"] == "breached", canary
    assert canary["canary"]["decision"]["kind"] == "rollback", canary
    action = ci.get(f"/api/v1/deployment-actions/{outcome['asked'][0]}/").json()
    assert (action["kind"], action["version_number"], action["automatic"]) == ("rollback", 1, True), action
    assert action["requested_by"] == users.operator.username  # on behalf of whoever started the canary
    assert "health policy" in action["reason"] and "Error rate 40.0% over 10 requests" in action["reason"]
    from governance.notifications.models import Notification

    told = Notification.objects.filter(event="serving.canary")
    assert {n.recipient.username for n in told} == {users.operator.username, users.admin.username}
    assert "is being rolled back by its health policy" in told.first().title

    with kserve_worker(settings) as proc:
        body = finished(ci, action["id"], proc)
    assert body["status"] == "succeeded", (body, worker_log(proc))
    assert sorted((v, d["state"], d["traffic_percent"]) for v, d in by_version(viewer).items()) == [(1, "live", 100)]
    assert predictor(fake_k8s, type("K", (), {"isvc": release_of_endpoint(model)}))["canaryTrafficPercent"] == 0
    requested = AuditEvent.objects.filter(action="serving.action", object_id=str(action["id"])).get()
    assert json.loads(requested.changes)["after"]["automatic"] is True
    assert watch_live.apply().get()[KS_ENV]["asked"] == []  # nothing more to decide


def test_a_canary_that_met_the_policy_is_promoted_by_itself_where_the_environment_says_so_fake_k8s_api(
    api, users, superuser, make_model, fake_k8s, tmp_path, settings
):
    from tests.test_serving_kserve_e2e import kserve_worker

    model = kserve_setup(api, superuser, make_model, fake_k8s, tmp_path, auto_promote=True, name="churn")
    v1, v2, ci = canary_on(api, users, model, settings, fake_k8s)
    viewer = api.as_user(users.viewer)
    X = data(6, 50)[0]
    watch_live.apply().get()
    assert send(fake_k8s, model, "latest", 3, X=X) == [200] * 3
    assert watch_live.apply().get()[KS_ENV]["asked"] == []  # 3 of 5 requests: still watching
    assert "3 of 5 requests" in by_version(viewer)[2]["canary"]["sentence"]
    send(fake_k8s, model, "latest", 3, X=X)
    asked = watch_live.apply().get()[KS_ENV]["asked"]
    assert len(asked) == 1
    assert watch_live.apply().get()[KS_ENV]["asked"] == []  # asked once, not at every reading
    with kserve_worker(settings) as proc:
        body = finished(ci, asked[0], proc)
    assert (body["kind"], body["status"], body["automatic"]) == ("promote", "succeeded", True), (body, worker_log(proc))
    assert sorted((v, d["state"], d["traffic_percent"]) for v, d in by_version(viewer).items()) == [(2, "live", 100)]


def test_the_watch_can_do_nothing_the_canarys_requester_could_not_fake_k8s_api(
    api, users, superuser, make_model, fake_k8s, tmp_path, settings
):
    """The operator who started the canary loses their role: the automatic rollback the breach asks for
    is refused as theirs would be, recorded once (not at every reading), and shown on the canary."""
    from governance.accounts import services as accounts
    from governance.accounts.models import Membership
    from governance.audit.models import AuditEvent
    from governance.core.context import audit_context
    from tests.test_serving_kserve_e2e import storage_uri

    model = kserve_setup(api, superuser, make_model, fake_k8s, tmp_path, auto_promote=True, name="credit")
    v1, v2, ci = canary_on(api, users, model, settings, fake_k8s)
    viewer = api.as_user(users.viewer)
    with audit_context(source="cli", actor=superuser):
        accounts.membership_remove(actor=superuser, membership=Membership.objects.get(user=users.operator))
    watch_live.apply().get()
    fake_k8s.broken.add(storage_uri(v2))
    send(fake_k8s, model, "latest", 5, X=data(7, 10)[0])
    refusals = AuditEvent.objects.filter(action="serving.action.refused")
    assert watch_live.apply().get()[KS_ENV]["asked"] == []
    assert refusals.count() == 1
    refusal = refusals.get()
    assert refusal.actor == users.operator and json.loads(refusal.changes)["automatic"] is True
    decision = by_version(viewer)[2]["canary"]["decision"]
    assert (decision["kind"], decision["refused"]) == ("rollback", "permission_denied"), decision
    assert watch_live.apply().get()[KS_ENV]["asked"] == [] and refusals.count() == 1  # recorded once
    page = viewer.get(f"/serving/environments/{KS_ENV}/").content.decode()
    assert "Automatic rollback refused" in page
    from governance.notifications.models import Notification

    told = Notification.objects.filter(event="serving.canary")  # the team's admins: the operator is gone
    assert [(n.recipient.username, "automatic rollback refused" in n.title) for n in told] == [
        (users.admin.username, True)
    ]
    assert sorted((v, d["state"]) for v, d in by_version(viewer).items()) == [(1, "live"), (2, "canary")]
