"""A real Celery worker on Redis runs the artifact inspection task enqueued by the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.audit.models import AuditEvent
from governance.registry.models import ModelVersion
from tests.conftest import celery_worker, make_artifact, trained_artifact, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def worker(settings):
    artifacts_dir = Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"])
    assert artifacts_dir.name == "artifacts"
    # The worker stores nothing of its own; it must read the same artifact files as this test.
    with celery_worker(queues="default", media_root=artifacts_dir.parent) as proc:
        yield proc


def test_uploaded_artifact_is_inspected_by_a_real_worker_under_the_requesters_context(api, model, users, worker):
    content = trained_artifact()
    r = api.as_user(users.author).post(
        "/api/v1/versions/",
        {"model": model.pk, "artifact": make_artifact(content, name="iris.joblib")},
        format="multipart",
        HTTP_X_REQUEST_ID="ci-run-42",
    )
    assert r.status_code == 201, r.json()
    version_id = r.json()["id"]

    event = wait_for(
        lambda: AuditEvent.objects.filter(action="version.artifact_inspected", object_id=str(version_id)).first()
    )
    if event is None:
        worker.terminate()
        pytest.fail(
            "The worker never inspected the artifact:\n" + worker.stdout.read().decode(errors="replace")[-3000:]
        )

    version = ModelVersion.objects.get(pk=version_id)
    assert version.artifact_metadata["sha256_verified"] is True
    assert version.artifact_metadata["size"] == len(content)
    assert version.artifact_metadata["detected_format"] == "sklearn-joblib"
    assert version.artifact_metadata["pickle_based"] is True
    # the task ran under the enqueuing request's context
    assert event.source == "task"
    assert event.request_id == "ci-run-42"
    assert event.actor == users.author


def test_context_is_captured_when_the_task_is_scheduled_not_when_the_transaction_commits(model, users, worker):
    from django.db import transaction

    from governance.core.context import audit_context
    from governance.registry import services

    with transaction.atomic():  # like a management command that commits after leaving its context
        with audit_context(source="cli", request_id="seed-1", actor=users.admin):  # a command run by an admin
            version = services.version_create(actor=users.author, model=model, artifact=make_artifact())

    event = wait_for(
        lambda: AuditEvent.objects.filter(action="version.artifact_inspected", object_id=str(version.pk)).first()
    )
    assert event is not None, "the worker never inspected the artifact"
    # the requester is the service's actor, not whoever opened the context
    assert (event.actor, event.request_id, event.source) == (users.author, "seed-1", "task")


@pytest.mark.django_db
def test_the_scheduled_checkpoint_signs_and_exports_the_chain_head(users, model, tmp_path, settings):
    from governance.audit import services
    from governance.audit.models import ChainHead
    from governance.celery import app
    from workers.audit import checkpoint_chain

    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    assert app.conf.beat_schedule["audit-checkpoint"]["task"] == checkpoint_chain.name
    result = checkpoint_chain()
    head = ChainHead.objects.get(id=1)
    assert result == {"seq": head.seq, "hash": head.hash}
    exported = list((tmp_path / "checkpoints").glob("checkpoint-*.json"))
    assert len(exported) == 1 and head.hash in exported[0].read_text()
    assert services.verify().ok


@pytest.mark.django_db
def test_published_messages_carry_the_audit_context_but_do_not_print_it(
    users, settings, django_capture_on_commit_callbacks
):
    """The worker gets the requester's context in the task's arguments; the printable copies
    (argsrepr / kwargsrepr, shown by monitoring tools and worker logs) name arguments only."""
    import base64
    import json as jsonlib

    import redis

    from governance.celery import enqueue_on_commit
    from governance.core.context import audit_context

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    with django_capture_on_commit_callbacks(execute=True), audit_context(source="api", request_id="req-private-7",
                                                                         actor=users.author):  # fmt: skip
        enqueue_on_commit("workers.artifacts.inspect_artifact", 987654, actor=users.author)
    raw = [m for m in client.lrange("default", 0, -1) if b"987654" in m]
    assert len(raw) == 1
    client.lrem("default", 0, raw[0])  # no worker should ever see this test's message
    message = jsonlib.loads(raw[0])
    headers = message["headers"]
    assert headers["argsrepr"] == "(987654,)" and "req-private-7" not in headers["kwargsrepr"]
    body = jsonlib.loads(base64.b64decode(message["body"]))
    assert body[1]["_audit"]["request_id"] == "req-private-7" and body[1]["_audit"]["actor_label"] == "author"


def test_the_redis_broker_publishes_through_one_client_per_channel():
    """governance.broker: kombu's Redis channel, minus a new redis-py client for every message."""
    from governance.broker import Channel
    from governance.celery import app

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        publisher = channel._create_client()
        assert channel._create_client() is publisher
        assert channel._create_client(asynchronous=True) is not publisher
        assert publisher.connection_pool is channel.pool
        publisher.lpush("charter-broker-test", b"x")
        assert publisher.rpop("charter-broker-test") == b"x"
