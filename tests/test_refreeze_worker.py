"""Re-freezing does not depend on import order: a fresh worker process that takes only the
``evaluations`` queue re-freezes the review of an approved version when an evaluation of that
version finishes, and tells the reviewers. The ``evidence_changed`` receiver is connected by
``ApprovalsConfig.ready``.

The worker skips Django's system checks at start (``CELERY_SKIP_CHECKS``, as a deployment may,
to start faster): the URL checks import the URLconf, the approvals API and with it the services,
which would connect the receiver by accident and hide a missing ``ready()`` import."""

from __future__ import annotations

import io
from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from governance.approvals import services as approvals
from governance.approvals.models import ApprovalRequest, RequestStatus
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.evaluations.models import EvaluationRun
from governance.notifications.models import Notification
from governance.registry.models import ModelVersion, Stage
from tests.conftest import celery_worker, wait_for
from tests.test_evaluations_api import credit_frame, csv_upload

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]
FEATURES = ["income", "debt", "age"]
ONE_APPROVER = {"environments": {"production": {"min_approvals": 1, "roles": [{"role": "approver"}]}}, "gates": []}


def test_finding9_a_fresh_evaluations_worker_refreezes_an_approved_review(
    api, users, superuser, model, make_version, settings
):
    frame = credit_frame(200)
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=300).fit(frame[FEATURES], frame["default"]), buffer)
    version = make_version(model, content=buffer.getvalue())
    with audit_context(source="cli", actor=superuser):
        policy = approvals.policy_create(actor=superuser, name="One approver", rules=ONE_APPROVER)
        approvals.policy_assign(actor=superuser, policy=policy, model=model)
    with audit_context(source="cli", actor=users.author):
        review = approvals.request_review(actor=users.author, version=version, environments=["production"])
    with audit_context(source="cli", actor=users.approver):
        approvals.request_decide(actor=users.approver, request=review, decision="approve")
    assert ModelVersion.objects.get(pk=version.pk).stage == Stage.APPROVED

    media_root = Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"]).parent
    with celery_worker(queues="evaluations", media_root=media_root, CELERY_SKIP_CHECKS="1") as worker:
        r = api.as_user(users.author).post(
            "/api/v1/evaluations/",
            {"version": version.pk, "kind": "performance", "target_column": "default",
             "data": csv_upload(frame.drop(columns=["sex", "region"]))},
            format="multipart",
        )  # fmt: skip
        assert r.status_code == 201, r.content[:300]
        run_id = r.json()["id"]
        finished = wait_for(
            lambda: EvaluationRun.objects.filter(pk=run_id, status__in=["succeeded", "failed"]).exists(), timeout=120
        )
        if not finished:
            worker.terminate()
            pytest.fail(worker.stdout.read().decode(errors="replace")[-3000:])
    run = EvaluationRun.objects.get(pk=run_id)
    assert run.status == "succeeded", (run.error_code, run.error_message)

    review = ApprovalRequest.objects.get(pk=review.pk)
    assert review.status == RequestStatus.OPEN and review.freeze == 2, "the worker did not re-freeze the review"
    assert ModelVersion.objects.get(pk=version.pk).stage == Stage.IN_REVIEW
    assert "evaluation" in review.stale_reason
    stale = AuditEvent.objects.get(action="review.stale", object_id=str(review.pk))
    assert stale.source == "task"
    told = Notification.objects.filter(event="review.stale")
    assert users.approver in {n.recipient for n in told} and users.author not in {n.recipient for n in told}
    gate = api.as_user(users.viewer).get(f"/api/v1/versions/{version.pk}/gate/?environment=production").json()
    assert gate["verdict"] == "pending"
