"""The demo tells the truth: once ``seed_demo`` has loaded it and a real worker has run everything it
queued, every deployed version's gate passes for the environments it was approved for, and the
version still in review waits for people who are asked to act (no stale notice sent to anyone)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from governance.approvals.models import ApprovalRequest, RequestStatus
from governance.approvals.selectors import request_awaiting
from governance.evaluations.models import ACTIVE, EvaluationRun, RunStatus
from governance.notifications.models import Notification
from governance.registry.models import ModelVersion, Stage
from tests.conftest import celery_worker, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_passwords"),
]
User = get_user_model()


def _worker_idle(settings) -> bool:
    """Nothing left in the demo's queues and nothing in the worker's hands."""
    import redis

    from governance.celery import app

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    if client.llen("default") or client.llen("evaluations"):
        return False
    inspect = app.control.inspect(timeout=1.0)
    busy = [*((inspect.active() or {}).values()), *((inspect.reserved() or {}).values())]
    return bool(inspect.ping()) and not any(busy)


def test_after_the_demo_and_its_evaluations_every_deployed_version_passes_its_gate(
    api, settings, tmp_path, serving_settings
):
    settings.VAR_DIR = tmp_path  # the demo writes its credit table there
    media_root = Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"]).parent
    with celery_worker(queues="default,evaluations", media_root=media_root):  # starts while the demo trains
        call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
        assert wait_for(lambda: not EvaluationRun.objects.filter(status__in=ACTIVE).exists(), timeout=180), list(
            EvaluationRun.objects.values_list("kind", "status", "progress_message")
        )
        assert wait_for(lambda: _worker_idle(settings), timeout=60, interval=0.5)

    runs = EvaluationRun.objects.all()
    assert runs.exists() and set(runs.values_list("status", flat=True)) == {RunStatus.SUCCEEDED}, list(
        runs.values_list("kind", "status", "error_message")
    )
    viewer = api.as_user(User.objects.get(username="viewer"))
    deployed = list(ModelVersion.objects.filter(stage=Stage.DEPLOYED).select_related("model"))
    assert {str(v) for v in deployed} >= {"credit-scoring v2"}, deployed
    # the serving pages show real figures at once: the demo's predictions, as the watch counted them
    from governance.registry.management.commands.seed_demo import DEMO_REQUESTS

    live = viewer.get("/api/v1/deployments/", {"current": "true"}).json()["results"]
    assert {(d["environment_name"], d["model_name"]) for d in live} >= {("staging", "credit-scoring")}, live
    for d in live:
        assert d["figures"] is not None and d["figures"]["errors"] == 0, d
        assert d["figures"]["requests"] == DEMO_REQUESTS[d["environment_name"]], d
    for version in deployed:
        approved = ApprovalRequest.objects.filter(version=version, status=RequestStatus.APPROVED)
        environments = sorted({e for r in approved for e in r.environments})
        assert "production" in environments, (str(version), environments)
        for environment in environments:
            r = viewer.get(f"/api/v1/versions/{version.pk}/gate/", {"environment": environment})
            assert r.status_code == 200, r.content[:300]
            body = r.json()
            not_passed = [(g["label"], g["detail"]) for g in body["gates"] + body["quorum"] if g["status"] != "passed"]
            assert body["verdict"] == "pass", (str(version), environment, not_passed)

    # what is live is what the serving record says, each live version's gate passes where it is live, and
    # the staging deployment answers a real prediction on its MLServer
    import requests

    from governance.serving.models import Deployment
    from governance.serving.services import release_of

    live = list(Deployment.objects.filter(until__isnull=True).select_related("version__model__team", "environment"))
    assert sorted((str(d.version), d.environment.name) for d in live) == [
        ("churn-predictor v1", "production"), ("credit-scoring v2", "production"), ("credit-scoring v2", "staging"),
    ]  # fmt: skip
    for deployment in live:
        body = viewer.get(f"/api/v1/versions/{deployment.version_id}/gate/",
                          {"environment": deployment.environment.name}).json()  # fmt: skip
        assert body["verdict"] == "pass", (str(deployment), body["summary"])
    credit = next(d for d in live if d.environment.name == "staging")
    port = serving_settings.SERVING_LOCAL_PORTS["staging"]
    answer = requests.post(f"http://127.0.0.1:{port}/v2/models/{release_of(credit.version).name}/infer",
                           json=credit.version.probe.payload, timeout=10)  # fmt: skip
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"][0] in (0, 1), answer.text[:300]

    # the candidate in review asks someone to act, and its evidence joined the freeze without alarming anyone
    in_review = ApprovalRequest.objects.get(version__model__name="credit-scoring", status=RequestStatus.OPEN)
    assert not in_review.decisions.exists()
    assert in_review.evidence["evaluations"], "the queued evaluations did not join the review's evidence"
    assert in_review in request_awaiting(user=User.objects.get(username="reviewer"))
    assert not Notification.objects.filter(event="review.stale").exists()
    unread = Notification.objects.filter(read_at__isnull=True)
    assert {n.url for n in unread} == {in_review.get_absolute_url()}, list(unread.values_list("title", flat=True))
