"""Issue 11, "runs survive a crashed worker": the lease an evaluation run is worked on under, in-process.

One execution at a time (a message delivered twice does nothing while the lease is live), a worker
that lost its lease writes nothing, the sweep re-queues a run whose worker died and fails it with
``worker_lost`` after its last start, and asking again for the evaluation never returns the stuck
run. The same with real, killed workers: ``tests/test_evaluations_crash.py``.
"""

from __future__ import annotations

import json
import time

import pytest
from django.core.files.storage import storages
from sklearn.linear_model import LogisticRegression

from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.evaluations import services
from governance.evaluations.models import EvaluationRun, RunStatus
from tests.test_evaluations_api import credit_frame, csv_upload
from tests.test_evaluations_task import FEATURES, _run, _version
from workers.leases import recover_expired

pytestmark = pytest.mark.usefixtures("fast_passwords")
LEASE_SECONDS = 1


@pytest.fixture
def short_lease(settings):
    settings.TASK_LEASE_SECONDS = LEASE_SECONDS
    settings.TASK_LEASE_MAX_ATTEMPTS = 3


@pytest.fixture
def run(model, users, short_lease) -> EvaluationRun:
    frame = credit_frame(200)
    return _run(_version(model, users, LogisticRegression().fit(frame[FEATURES], frame["default"])), users)


def _as_worker(call):
    with audit_context(source="task"):
        return call()


def _start(run):
    return _as_worker(lambda: services.run_start(run_id=run.pk, host="worker-a"))


def _die():
    """The worker stops renewing (it was killed): its lease runs out."""
    time.sleep(LEASE_SECONDS + 0.2)


def _events(run, action: str) -> int:
    return AuditEvent.objects.filter(action=action, object_id=str(run.pk)).count()


def _sent(callbacks) -> list[tuple[str, str]]:
    """Run the captured on-commit callbacks (the tasks are really sent to Redis) and take the messages
    back off the ``evaluations`` queue: what a worker would receive (task, arguments)."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("evaluations")
    for callback in callbacks:
        callback()
    messages = [json.loads(raw)["headers"] for raw in client.lrange("evaluations", 0, -1)]
    client.delete("evaluations")
    return [(m["task"], m["argsrepr"]) for m in messages]


def test_a_message_delivered_twice_does_not_start_a_run_whose_lease_is_live(run):
    first = _start(run)
    assert first is not None and first.status == RunStatus.RUNNING and first.attempts == 1 and first.lease_token
    assert _start(run) is None  # the same message again, e.g. after the visibility timeout: refused
    run.refresh_from_db()
    assert run.attempts == 1 and run.lease_token == first.lease_token


def test_a_worker_that_lost_its_lease_writes_nothing(run, users):
    stale = _start(run).lease_token
    _die()
    # its message, delivered again after the worker went silent, takes the run over (a second start)
    fresh = _start(run)
    assert fresh is not None and fresh.attempts == 2 and fresh.lease_token != stale
    assert _events(run, "evaluation.requeue") == 1
    # the first worker was only paused: it wakes up, and nothing it does sticks
    assert services.run_progress(run_id=run.pk, percent=50, message="late", lease=stale) is False
    assert services.run_renew(run_id=run.pk, lease=stale) is False
    done = {"result": {"metrics": {}}, "figures": {}, "environment": {}, "artifact_sha256": run.version.artifact_sha256}
    assert _as_worker(lambda: services.run_finish(run_id=run.pk, lease=stale, **done)) is None
    assert _as_worker(lambda: services.run_fail(run_id=run.pk, code="x", message="late", lease=stale)) is None
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.progress == 0
    assert services.run_renew(run_id=run.pk, lease=fresh.lease_token) is True
    assert _as_worker(lambda: services.run_finish(run_id=run.pk, lease=fresh.lease_token, **done)) is not None
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and not run.lease_token and run.lease_expires_at is None
    assert _events(run, "evaluation.succeed") == 1 and _events(run, "evaluation.fail") == 0


def test_the_sweep_requeues_a_run_whose_worker_died_then_fails_it_after_the_last_start(
    run, django_capture_on_commit_callbacks
):
    for attempt in (1, 2):
        assert _start(run).attempts == attempt
        assert recover_expired()["evaluations"] == {"requeued": 0, "failed": 0}  # alive: left alone
        _die()
        with django_capture_on_commit_callbacks() as callbacks:
            assert recover_expired()["evaluations"] == {"requeued": 1, "failed": 0}
        run.refresh_from_db()
        assert (run.status, run.attempts, run.lease_token) == (RunStatus.QUEUED, attempt, "")
        assert storages["evaluation_data"].exists(run.data_path)  # the next attempt needs it
        # the run's task is sent again, to the evaluations queue
        assert _sent(callbacks) == [("workers.evaluations.run_evaluation", f"({run.pk},)")]
    assert _start(run).attempts == 3
    _die()
    assert recover_expired()["evaluations"] == {"requeued": 0, "failed": 1}
    run.refresh_from_db()
    assert (run.status, run.error_code) == (RunStatus.FAILED, services.WORKER_LOST)
    assert "lost" in run.error_message and run.finished_at is not None
    assert run.data_deleted_at is not None
    assert _events(run, "evaluation.requeue") == 2 and _events(run, "evaluation.fail") == 1
    assert recover_expired()["evaluations"] == {"requeued": 0, "failed": 0}  # once


def test_a_run_that_never_had_a_lease_is_swept_too(run):
    """A run left running by a worker from before leases (or a start that never finished writing)."""
    EvaluationRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, attempts=1)
    assert recover_expired()["evaluations"] == {"requeued": 1, "failed": 0}
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_asking_again_never_returns_a_run_whose_worker_died(run, users, api, settings):
    """The same evaluation requested again: the stuck run comes back re-queued, and once it has had its
    last start it is failed and a new run is made."""
    frame = credit_frame(200).drop(columns=["region"])
    body = {"version": run.version_id, "kind": "performance", "target_column": "default",
            "sensitive_features": '["sex"]', "data": None}  # fmt: skip
    author = api.as_user(users.author)

    def ask():
        return author.post("/api/v1/evaluations/", {**body, "data": csv_upload(frame)}, format="multipart")

    _start(run)
    r = ask()
    assert (r.status_code, r.json()["id"], r.json()["status"]) == (200, run.pk, "running")  # alive: the same run
    _die()
    r = ask()
    assert (r.status_code, r.json()["id"], r.json()["status"]) == (200, run.pk, "queued")
    assert _events(run, "evaluation.requeue") == 1
    settings.TASK_LEASE_MAX_ATTEMPTS = 1
    _start(run)
    _die()
    r = ask()
    assert r.status_code == 201 and r.json()["id"] != run.pk and r.json()["status"] == "queued"
    run.refresh_from_db()
    assert (run.status, run.error_code) == (RunStatus.FAILED, services.WORKER_LOST)
    assert run.data_deleted_at is not None
    assert EvaluationRun.objects.filter(version=run.version, status__in=["queued", "running"]).count() == 1
