"""Retention (issue 14, point 6): the daily task deletes an old evaluation result nobody froze and a
retained data file past its period, keeps a result an open or approved review froze, and never
touches the audit log."""

from __future__ import annotations

import datetime as dt
import io

import joblib
import pytest
from django.core.files.storage import storages
from django.utils import timezone
from sklearn.linear_model import LogisticRegression

from governance.approvals import evidence as manifest
from governance.audit import services as audit
from governance.audit.models import AuditEvent
from governance.compliance.models import EvaluationPurge
from governance.core.context import audit_context
from governance.evaluations import services as evaluations
from governance.evaluations.models import EvaluationRun, RunStatus
from governance.registry import services as registry
from tests.conftest import make_artifact
from tests.test_approvals import NO_GATES_ONE_APPROVER, request
from tests.test_compliance_mapping import govern
from tests.test_evaluations_api import credit_frame, csv_upload
from workers.evaluations import run_evaluation
from workers.retention import purge_expired

pytestmark = pytest.mark.usefixtures("fast_passwords")
FEATURES = ["income", "debt", "age"]


def _version(model, users):
    frame = credit_frame(200)
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(frame[FEATURES], frame["default"]), buffer)
    with audit_context(source="cli", actor=users.author):
        return registry.version_create(actor=users.author, model=model, artifact=make_artifact(buffer.getvalue()))


def _evaluated(version, users, capture, *, retain: bool, days_ago: int) -> EvaluationRun:
    """A performance evaluation that really ran, ended ``days_ago`` days ago."""
    with audit_context(source="cli", actor=users.author):
        run = evaluations.run_request(
            actor=users.author, version=version, kind="performance", target_column="default",
            data=csv_upload(credit_frame(200)), retain_data=retain,
        ).run  # fmt: skip
    with capture(execute=True):
        run_evaluation(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.result.get("summary"), run.error_message
    EvaluationRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - dt.timedelta(days=days_ago))
    run.refresh_from_db()
    return run


def _chain() -> list[tuple[int, str]]:
    return list(AuditEvent.objects.order_by("seq").values_list("seq", "hash"))


@pytest.fixture
def runs(users, superuser, model, settings, django_capture_on_commit_callbacks):
    govern(model, superuser, NO_GATES_ONE_APPROVER)
    capture = django_capture_on_commit_callbacks
    draft = _version(model, users)
    reviewed = _version(model, users)
    return {
        "old": _evaluated(draft, users, capture, retain=True, days_ago=400),
        "recent": _evaluated(_version(model, users), users, capture, retain=False, days_ago=10),
        "frozen": _evaluated(reviewed, users, capture, retain=False, days_ago=400),
        "review": request(reviewed, users.author),
    }


def test_retention_deletes_an_old_unfrozen_result_keeps_a_frozen_one_and_leaves_the_audit_log(
    api, users, runs, settings, django_capture_on_commit_callbacks
):
    settings.EVALUATION_RESULT_RETENTION_DAYS = 365
    settings.EVALUATION_DATA_RETENTION_DAYS = 30
    old, recent, frozen, review = runs["old"], runs["recent"], runs["frozen"], runs["review"]
    assert frozen.pk in {e["run"] for e in review.evidence["evaluations"]}  # the open review froze it
    assert storages["evaluation_data"].exists(old.data_path)
    frozen_result, frozen_figures = frozen.result, frozen.figures
    before = _chain()

    with django_capture_on_commit_callbacks(execute=True):  # the file goes once the purge commits
        outcome = purge_expired.apply().get()  # the beat's task, through its AuditedTask context
    assert outcome == {"results": 1, "data_files": 1, "result_days": 365, "data_days": 30}

    old.refresh_from_db()
    assert old.figures == {} and "summary" not in old.result
    assert "deleted" in old.result["notes"][0] and old.result_digest in old.result["notes"][0]
    assert old.data_deleted_at is not None and not storages["evaluation_data"].exists(old.data_path)
    purges = EvaluationPurge.objects.filter(run=old)
    assert {p.what for p in purges} == {"result", "data"}
    assert purges.get(what="result").result_digest == old.result_digest != ""
    frozen.refresh_from_db()
    assert (frozen.result, frozen.figures) == (frozen_result, frozen_figures)
    recent.refresh_from_db()
    assert recent.result.get("summary")
    # the review's frozen evidence still matches the version's evidence, digest for digest
    review.refresh_from_db()
    assert manifest.current(review.version)[1] == review.evidence_digest and review.status == "open"

    # the audit log: every event still there, unchanged, the purges added after them, the chain intact
    after = _chain()
    assert after[: len(before)] == before
    added = AuditEvent.objects.filter(seq__gt=before[-1][0]).order_by("seq")
    assert [(e.action, e.object_id, e.source, e.actor_id) for e in added] == [
        ("evaluation.result_purge", str(old.pk), "task", None),
        ("evaluation.data_purge", str(old.pk), "task", None),
    ]
    assert audit.verify().ok

    # the run page and the API say what happened, and a second pass finds nothing left to do
    body = api.as_user(users.viewer).get(f"/api/v1/evaluations/{old.pk}/").json()
    assert body["result_digest"] == old.result_digest and "deleted" in body["result"]["notes"][0]
    settled = _chain()
    assert purge_expired.apply().get()["results"] == 0 and _chain() == settled


def test_retention_off_by_default_keeps_everything(runs, settings):
    assert settings.EVALUATION_RESULT_RETENTION_DAYS == 0 and settings.EVALUATION_DATA_RETENTION_DAYS == 0
    before = _chain()
    assert purge_expired.apply().get() == {"results": 0, "data_files": 0, "result_days": 0, "data_days": 0}
    runs["old"].refresh_from_db()
    assert runs["old"].result.get("summary") and storages["evaluation_data"].exists(runs["old"].data_path)
    assert _chain() == before


def test_an_approved_review_keeps_its_results_after_it_closed(users, runs, settings):
    from tests.test_approvals import decide

    decide(runs["review"], users.approver)
    runs["review"].refresh_from_db()
    assert runs["review"].status == "approved"
    settings.EVALUATION_RESULT_RETENTION_DAYS = 1
    purge_expired.apply().get()
    frozen = EvaluationRun.objects.get(pk=runs["frozen"].pk)
    assert frozen.result.get("summary") and not EvaluationPurge.objects.filter(run=frozen).exists()


def test_the_retention_task_is_scheduled_daily():
    from governance.celery import app

    entry = app.conf.beat_schedule["retention-purge"]
    assert entry["task"] == purge_expired.name and entry["schedule"] == 86400.0
    assert app.conf.task_routes["workers.retention.*"] == {"queue": "default"}
