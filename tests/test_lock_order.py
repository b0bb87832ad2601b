"""Issue 10, finding 11: one lock order for every transaction that touches a version and the
audit chain (the version row first, the chain head last), so that requesting an evaluation
while a run of the same version finishes never deadlocks; and a deadlock or serialization
failure that happens anyway is retried once, then answered 503 ``busy_retry``, never 500.

Real PostgreSQL, real concurrent transactions: each thread has its own connection.
"""

from __future__ import annotations

import logging
import threading
import uuid

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection, connections, transaction
from django.test import RequestFactory

from governance.accounts.models import Team
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.core.errors import Busy, api_exception_handler, is_transient_db_error
from governance.core.middleware import TransientDatabaseErrorMiddleware
from governance.core.retry import retry_once
from governance.evaluations import services as evaluations
from governance.evaluations.models import EvaluationRun, RunStatus
from governance.registry import services as registry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

ITERATIONS = 200


def _csv(seed: int) -> SimpleUploadedFile:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"income": rng.normal(50, 10, 60), "sex": rng.choice(["f", "m"], 60)})
    frame["default"] = (frame["income"] + rng.normal(0, 5, 60) > 50).astype(int)
    return SimpleUploadedFile(f"holdout-{seed}.csv", frame.to_csv(index=False).encode(), content_type="text/csv")


def _running_run(version, actor) -> EvaluationRun:
    return EvaluationRun.objects.create(
        version=version, kind="performance", parameters={}, parameters_digest=uuid.uuid4().hex,
        status=RunStatus.RUNNING, target_column="default", requested_by=actor,
    )  # fmt: skip


def _in_thread(target, errors: list, barrier: threading.Barrier, actor):
    def body():
        try:
            with audit_context(source="task", actor=actor):
                for i in range(ITERATIONS):
                    barrier.wait(timeout=60)
                    try:
                        target(i)
                    except Exception as exc:  # a deadlock the service layer let through, or its 503
                        errors.append(exc)
        finally:
            connections.close_all()

    return threading.Thread(target=body)


@pytest.mark.parametrize("other", ["run_finish", "version_update"])
def test_requesting_an_evaluation_while_the_version_changes_never_deadlocks(users, version, caplog, monkeypatch, other):
    """The reported deadlock (a run finishing) and its sibling (the version edited): each of the
    other paths locks the version row, then the chain head."""
    assert connection.vendor == "postgresql"
    # These transactions commit: the runs' tasks are counted rather than left in the broker for
    # the next worker test to chew through (the queuing is not what this test is about).
    queued = []
    monkeypatch.setattr(evaluations, "enqueue_on_commit", lambda name, *args, **kw: queued.append(args))
    runs = [_running_run(version, users.author) for _ in range(ITERATIONS)]
    barrier = threading.Barrier(2)
    errors: list = []

    def request(i):
        evaluations.run_request(
            actor=users.author, version=version, kind="fairness", data=_csv(i), target_column="default",
            sensitive_features=["sex"],
        )  # fmt: skip

    def finish(i):
        evaluations.run_finish(
            run_id=runs[i].pk, result={"accuracy": 0.5}, figures={}, environment={}, artifact_sha256="0" * 64
        )

    def edit(i):
        registry.version_update(actor=users.author, version=version, description=f"Edit {i}.")

    caplog.set_level(logging.WARNING, logger="governance.core.retry")
    change, changer = (finish, None) if other == "run_finish" else (edit, users.author)
    threads = [_in_thread(request, errors, barrier, users.author), _in_thread(change, errors, barrier, changer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)

    deadlocks = [e for e in errors if "deadlock" in str(e).lower()]
    assert not errors, f"{len(deadlocks)} deadlocks, {len(errors)} errors in {ITERATIONS} rounds: {errors[:1]}"
    retried = [r for r in caplog.records if r.name == "governance.core.retry"]
    assert not retried, f"the lock order let {len(retried)} deadlocks happen (the retry hid them)"
    assert EvaluationRun.objects.filter(kind="fairness").count() == ITERATIONS
    assert AuditEvent.objects.filter(action="evaluation.request").count() == ITERATIONS
    assert len(queued) == ITERATIONS
    if other == "run_finish":
        assert EvaluationRun.objects.filter(kind="performance", status=RunStatus.SUCCEEDED).count() == ITERATIONS
        assert AuditEvent.objects.filter(action="evaluation.succeed").count() == ITERATIONS
    else:
        assert AuditEvent.objects.filter(action="version.update").count() == ITERATIONS


# --- the review paths against a finishing run and a model edit ------------------------------------


UNTICKED = {
    "environments": {"production": {"min_approvals": 1, "roles": [{"role": "approver"}]}},
    "gates": [{"kind": "checklist", "item": "never", "text": "Nobody ticks this here."}],
}


@pytest.mark.parametrize("path", ["request_settle", "request_decide", "model_update"])
def test_the_review_paths_never_deadlock_with_a_finishing_run(users, team, model, version, caplog, path):
    """A run finishing locks the version row, then (the approvals re-freeze) its open review request.
    Settling a review and deciding on it locked the request first and the version after it: in 60
    rounds of ``request_settle`` against ``run_finish``, 51 deadlocks. Editing the model (a field a
    reviewer reads) locks the model, its versions under review, their requests, the chain head last."""
    from django.contrib.auth import get_user_model

    from governance.accounts.models import Membership, Role
    from governance.approvals import services as approvals
    from governance.approvals.models import ApprovalRequest, Decision, ModelPolicy

    assert connection.vendor == "postgresql"
    # a checklist item nobody ticks here: no approval ever closes the review
    with audit_context(source="cli", actor=users.superuser):
        policy = approvals.policy_create(actor=users.superuser, name="Never closes", rules=UNTICKED)
    ModelPolicy.objects.create(model=model, policy=policy)  # the state to start from, not what is tested
    with audit_context(source="cli", actor=users.author):
        review = approvals.request_review(actor=users.author, version=version, environments=["production"])
    runs = [_running_run(version, users.author) for _ in range(ITERATIONS)]
    approvers = []
    if path == "request_decide":
        people = get_user_model().objects.bulk_create(
            get_user_model()(username=f"approver-{i}", password="!") for i in range(ITERATIONS)
        )
        Membership.objects.bulk_create(Membership(user=u, team=team, role=Role.APPROVER) for u in people)
        approvers = list(get_user_model().objects.filter(username__startswith="approver-").order_by("id"))
    barrier = threading.Barrier(2)
    errors: list = []

    def settle(i):
        approvals.request_settle(actor=users.approver, request=review)

    def decide(i):
        with audit_context(source="ui", actor=approvers[i]):
            approvals.request_decide(actor=approvers[i], request=review, decision="approve")

    def edit(i):
        registry.model_update(actor=users.author, model=model, description=f"Edit {i}.")

    def finish(i):
        evaluations.run_finish(
            run_id=runs[i].pk, result={"accuracy": 0.5}, figures={}, environment={}, artifact_sha256="0" * 64
        )

    caplog.set_level(logging.WARNING, logger="governance.core.retry")
    review_path, actor = {"request_settle": (settle, users.approver), "request_decide": (decide, None),
                          "model_update": (edit, users.author)}[path]  # fmt: skip
    threads = [_in_thread(review_path, errors, barrier, actor), _in_thread(finish, errors, barrier, None)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)

    deadlocks = [e for e in errors if "deadlock" in str(e).lower()]
    assert not errors, f"{len(deadlocks)} deadlocks, {len(errors)} errors in {ITERATIONS} rounds: {errors[:1]}"
    retried = [r for r in caplog.records if r.name == "governance.core.retry"]
    assert not retried, f"the lock order let {len(retried)} deadlocks happen (the retry hid them)"
    assert EvaluationRun.objects.filter(kind="performance", status=RunStatus.SUCCEEDED).count() == ITERATIONS
    assert AuditEvent.objects.filter(action="evaluation.succeed").count() == ITERATIONS
    review = ApprovalRequest.objects.get(pk=review.pk)
    assert review.status == "open" and review.freeze > 1  # the runs (and edits) re-froze it
    if path == "request_decide":
        assert Decision.objects.filter(request=review).count() == ITERATIONS
        assert AuditEvent.objects.filter(action="review.decide").count() == ITERATIONS
    if path == "model_update":
        assert AuditEvent.objects.filter(action="model.update").count() == ITERATIONS


# --- what the lock order does not foresee: retried once, then 503 -----------------------------


def _conflicting_update(team_pk: int, *, conflict: bool) -> None:
    """Update a team row from a REPEATABLE READ snapshot; with ``conflict`` another connection
    changes the row after the snapshot, so PostgreSQL aborts this update (serialization_failure)."""
    with transaction.atomic():
        if not connection.savepoint_ids:  # the outermost block chooses the isolation level
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        Team.objects.get(pk=team_pk)  # the snapshot
        if conflict:
            other = threading.Thread(target=_bump, args=(team_pk,))
            other.start()
            other.join()
        Team.objects.filter(pk=team_pk).update(description="changed from the snapshot")


def _bump(team_pk: int) -> None:
    try:
        Team.objects.filter(pk=team_pk).update(description=uuid.uuid4().hex)
    finally:
        connections.close_all()


def test_a_serialization_failure_is_retried_once(team, caplog):
    attempts = []

    @retry_once
    def write():
        attempts.append(1)
        _conflicting_update(team.pk, conflict=len(attempts) == 1)

    caplog.set_level(logging.WARNING, logger="governance.core.retry")
    write()
    assert len(attempts) == 2
    team.refresh_from_db()
    assert team.description == "changed from the snapshot"
    [warning] = [r for r in caplog.records if r.name == "governance.core.retry"]
    assert "running it again" in warning.getMessage()


def test_a_second_failure_is_a_503_busy_retry_never_a_500(team):
    @retry_once
    def write():
        _conflicting_update(team.pk, conflict=True)

    with pytest.raises(Busy) as refused:
        write()
    assert (refused.value.status, refused.value.code) == (503, "busy_retry")
    assert is_transient_db_error(refused.value.__cause__)
    # what the API answers for it, and for a transient error that reached it without a retry
    for exc in (refused.value, refused.value.__cause__):
        response = api_exception_handler(exc, {"request": None})
        assert response.status_code == 503 and response.data["code"] == "busy_retry", response.data
        assert "send the request again" in response.data["detail"]
    # and what a browser gets when one reaches a page's view
    request = RequestFactory().post(f"/versions/{team.pk}/lifecycle/")
    request.user = AnonymousUser()
    page = TransientDatabaseErrorMiddleware(lambda r: None).process_exception(request, refused.value.__cause__)
    assert page.status_code == 503 and b"send the request again" in page.content


def test_inside_an_outer_transaction_the_outermost_service_retries(team):
    calls = []

    @retry_once
    def inner():
        calls.append(1)
        _conflicting_update(team.pk, conflict=True)

    with pytest.raises(OperationalError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        inner()  # the outer transaction is aborted: nothing here could run it again
    assert len(calls) == 1
